"""Deep SVDD baseline: networks, convolution, centre, schedule, vmapped jobs, AUC."""

import os
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsplit_jax import configs, data, metrics
from dsplit_jax import validation
from dsplit_jax.baselines import dsvdd


def _tiny_cfg(**kw):
  cfg = configs.get_preset("test").dsvdd
  for k, v in kw.items():
    cfg[k] = v
  return cfg


@pytest.mark.parametrize("net,shape,encoder_params", [
    ("mnist_lenet", (2, 28, 28, 1), 5 * 5 * 8 + 5 * 5 * 8 * 4 + 196 * 32),
    ("cifar10_lenet", (2, 32, 32, 3),
     25 * (3 * 32 + 32 * 64 + 64 * 128) + 2048 * 128),
])
def test_networks_have_no_bias_and_torch_sizes(net, shape, encoder_params):
  ae = dsvdd.Autoencoder(net=net)
  x = jnp.zeros(shape)
  variables = jax.eval_shape(lambda: ae.init(jax.random.key(0), x))
  paths = [jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_leaves_with_path(variables["params"])]
  assert all(p.endswith("['kernel']") for p in paths), paths
  enc = variables["params"]["encoder"]
  assert sum(v.size for v in jax.tree.leaves(enc)) == encoder_params
  out = jax.eval_shape(lambda: ae.apply(ae.init(jax.random.key(0), x), x))
  assert out.shape == shape
  z = jax.eval_shape(lambda v: dsvdd.Encoder(net=net).apply(v, x),
                     {"params": enc,
                      "batch_stats": variables["batch_stats"]["encoder"]})
  assert z.shape == (2, 32 if net == "mnist_lenet" else 128)


@pytest.mark.parametrize("net,shape", [("mnist_lenet", (16, 28, 28, 1)),
                                       ("cifar10_lenet", (16, 32, 32, 3))])
@pytest.mark.long
def test_both_conv_impls_are_the_same_network(net, shape):
  # model.conv_impl switches every network's convolutions (layers.conv_modules) between
  # im2col matrix products, lax.conv and broadcast multiply-adds (taps): the same
  # parameters and the same function,
  # including the decoder's stride-1 transposed convolutions and their gradients.
  x = jnp.asarray(np.random.default_rng(0).uniform(size=shape), jnp.float32)
  # taps only where "auto" uses it: unrolled over 25 * C_in taps, a wide layer would
  # take minutes to compile.
  impls = ("patches", "xla", "taps") if net == "mnist_lenet" else ("patches", "xla")
  nets = {impl: dsvdd.Autoencoder(net=net, conv_impl=impl) for impl in impls}
  variables = nets["xla"].init(jax.random.key(0), x)
  assert jax.tree.structure(variables) == jax.tree.structure(
      nets["patches"].init(jax.random.key(0), x))
  got = {}
  for impl, ae in nets.items():
    def loss(params, ae=ae):
      out, _ = ae.apply({**variables, "params": params}, x, train=True,
                        mutable=["batch_stats"])
      return jnp.mean((out - x) ** 2), out
    (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    got[impl] = (out, grads)
  for impl in impls[:1] + impls[2:]:
    np.testing.assert_allclose(got[impl][0], got["xla"][0], rtol=1e-5, atol=1e-5)
    # Relative to each gradient's norm (measured: < 1e-5). A batch of 16, since CIFAR's
    # BatchNorm of the code over a batch of 3 leaves the encoder's gradients to rounding.
    for a, b in zip(jax.tree.leaves(got[impl][1]), jax.tree.leaves(got["xla"][1])):
      assert float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b)) < 1e-4, impl


class _Flat(nn.Module):
  """phi(x) = x flattened; enough to test the centre."""

  @nn.compact
  def __call__(self, x, train=False):
    return x.reshape(x.shape[0], -1)


def test_center_is_masked_mean_with_eps_guard():
  # Four valid images with feature means 0.05, -0.05, 0.5, 0 (after the
  # affine (x - 1) / 2), then two padded entries that must not count.
  valid = np.array([[0.1, -0.1, 0.5, 0.0], [0.0, 0.0, 0.5, 0.0],
                    [0.1, -0.1, 0.5, 0.0], [0.0, 0.0, 0.5, 0.0]])
  pool = np.concatenate([2 * valid + 1, np.full((2, 4), 99.0)])
  pool = jnp.asarray(pool.reshape(6, 1, 1, 4), jnp.float32)
  c = dsvdd.init_center(_Flat(), {}, pool, jnp.arange(6), 4,
                        jnp.array([1.0, 3.0]), eps=0.1, chunk=4)
  np.testing.assert_allclose(c, [0.1, -0.1, 0.5, 0.0], atol=1e-6)


def test_lr_drops_where_the_authors_scheduler_drops():
  # scheduler.step() at the start of each epoch: epoch index 49 already runs
  # at lr / 10 for milestone 50.
  assert dsvdd.lr_at(1e-4, (50,), 48) == pytest.approx(1e-4)
  assert dsvdd.lr_at(1e-4, (50,), 49) == pytest.approx(1e-5)
  assert dsvdd.lr_at(1e-4, (50,), 149) == pytest.approx(1e-5)
  assert dsvdd.lr_at(1e-4, (20, 40), 45) == pytest.approx(1e-6)


def test_epoch_order_ignores_padding():
  key = jax.random.key(3)
  short = dsvdd._epoch_order(key, 2, 5, 5, 2, 3).ravel()
  padded = dsvdd._epoch_order(key, 2, 5, 9, 3, 3).ravel()
  np.testing.assert_array_equal(short[:5], padded[:5])
  assert sorted(short[:5].tolist()) == list(range(5))
  assert not np.array_equal(short[:5], dsvdd._epoch_order(
      key, 3, 5, 5, 2, 3).ravel()[:5])


# The vmapped and the MNIST test share every compiled program (pool, job
# shapes, batch size, weight decays), which keeps this file fast.
_BATCH = 64


def _cfg(**kw):
  return _tiny_cfg(batch_size=_BATCH, ae_batch_size=_BATCH, **kw)


def _random_jobs():
  rng = np.random.default_rng(0)
  pool = rng.uniform(size=(300, 28, 28, 1)).astype(np.float32)
  pool[150:, 10:18, 10:18] = 1.0  # two kinds of images
  test = pool[::10]
  idx = np.zeros((2, 150), np.int32)
  idx[0] = np.arange(150)
  idx[1, :110] = np.arange(150, 260)  # rest: padding (index 0)
  counts = np.array([150, 110], np.int32)
  keys = jax.random.split(jax.random.key(1), 2)
  affine = np.array([[0.0, 1.0], [-0.5, 1.5]], np.float32)
  return pool, idx, counts, keys, test, affine


@pytest.mark.long
def test_vmapped_jobs_equal_single_jobs():
  # Batch 64 leaves partial batches (150 = 2*64 + 22, 110 = 64 + 46) and
  # the second job one empty step, so masking and skipping are exercised.
  cfg = _cfg(ae_epochs=2, epochs=2)
  pool, idx, counts, keys, test, affine = _random_jobs()
  both = dsvdd.train_and_score(cfg, pool, idx, counts, keys, test,
                               job_affine=affine)
  assert both.shape == (2, len(test)) and np.all(np.isfinite(both))
  for j in range(2):
    alone = dsvdd.train_and_score(cfg, pool, idx[j:j + 1], counts[j:j + 1],
                                  keys[j:j + 1], test,
                                  job_affine=affine[j:j + 1])
    np.testing.assert_allclose(alone[0], both[j], rtol=1e-3, atol=1e-5)
  assert not np.allclose(both[0], both[1])


def test_runner_entry_point_gcn_and_raw_keys():
  cfg = _cfg(ae_epochs=1, epochs=1)
  pool, idx, counts, keys, test, _ = _random_jobs()
  raw = jax.random.key_data(keys)  # what data.Jobs.keys holds
  jobs = types.SimpleNamespace(pool=pool, train_idx=idx, train_count=counts,
                               keys=raw, test_images=test)
  config = configs.get_preset("test")
  config.dsvdd = cfg
  got = dsvdd.run(config, jobs)
  g_pool, g_test, affine = dsvdd.prepare("gcn_minmax", pool, idx, counts, test)
  np.testing.assert_allclose(affine[0], data.preprocessing.minmax_bounds(
      data.preprocessing.global_contrast_normalization(pool[:150])), rtol=1e-6)
  want = dsvdd.train_and_score(cfg, g_pool, idx, counts, keys, g_test,
                               job_affine=affine)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_mnist_bounds_option_takes_the_bounds_of_the_class_index():
  pool, idx, counts, _, test, _ = _random_jobs()
  own = dsvdd.prepare("gcn_minmax", pool, idx, counts, test)
  got = dsvdd.prepare("gcn_minmax_mnist", pool, idx, counts, test, job_classes=[3, 7])
  np.testing.assert_array_equal(got[0], own[0])  # the same GCN'd images
  np.testing.assert_array_equal(got[1], own[1])
  np.testing.assert_array_equal(
      got[2], np.array([dsvdd.MNIST_GCN_MINMAX[3], dsvdd.MNIST_GCN_MINMAX[7]], np.float32))
  assert not np.allclose(got[2], own[2])  # not the jobs' own bounds
  for bad in (None, [3, 12]):
    with pytest.raises(ValueError, match="needs each job's class index"):
      dsvdd.prepare("gcn_minmax_mnist", pool, idx, counts, test, job_classes=bad)
  with pytest.raises(ValueError, match="preprocessing must be one of"):
    dsvdd.prepare("gcn", pool, idx, counts, test)
  config = configs.get_preset("test")
  config.dsvdd.preprocessing = "gcn_minmax_mnist"
  validation.validate(config)
  config.dsvdd.preprocessing = "gcn_minmax_fmnist"
  with pytest.raises(configs.ConfigError, match="dsvdd.preprocessing"):
    validation.validate(config)


def test_mnist_bounds_table_is_the_gcn_of_the_mnist_digits():
  root = os.environ.get("DSPLIT_DATA_DIR")
  if not root or not os.path.isdir(os.path.join(root, "mnist")):
    pytest.skip("no MNIST under DSPLIT_DATA_DIR (set it to a folder holding mnist/)")
  images, labels = data.load("mnist", "train", root)
  for digit, bounds in enumerate(dsvdd.MNIST_GCN_MINMAX):
    gcn = data.preprocessing.global_contrast_normalization(images[labels == digit], "l1")
    np.testing.assert_allclose(data.preprocessing.minmax_bounds(gcn), bounds, rtol=1e-6)


def test_rejects_bad_jobs():
  cfg = _cfg()
  pool, idx, counts, keys, test, _ = _random_jobs()
  with pytest.raises(ValueError, match="job_counts"):
    dsvdd.train_and_score(cfg, pool, idx, np.array([0, 5]), keys, test)
  with pytest.raises(ValueError, match="index into pool"):
    dsvdd.train_and_score(cfg, pool, idx + 1000, counts, keys, test)


def test_separates_mnist_digit_one():
  root = os.environ.get("DSPLIT_DATA_DIR")
  if not root or not os.path.isdir(root):
    pytest.skip("DSPLIT_DATA_DIR is unset (CI sets it to the shared datasets folder)")
  images, labels = data.load("mnist", "train", root)
  test, test_labels = data.load("mnist", "test", root)
  # 150 ones to train on (the other 150 pool images are not used), 2000 test
  # images; 10 + 10 epochs at lr 1e-3: AUC 0.979, 0.993, 0.992, 0.997 for
  # keys 0-3 (notes/baselines.md); the paper's budget reaches 99.7.
  pool = np.concatenate([images[labels == 1][:150], images[labels != 1][:150]])
  pool = pool.astype(np.float32) / 255.0
  test = test[:2000].astype(np.float32) / 255.0
  idx = np.arange(150, dtype=np.int32)[None]
  counts = np.array([150], np.int32)
  cfg = _cfg(ae_epochs=10, epochs=10, ae_lr=1e-3, lr=1e-3,
             ae_lr_milestones=(100,), lr_milestones=(100,))
  pool, test, affine = dsvdd.prepare(cfg.preprocessing, pool, idx, counts, test)
  scores = dsvdd.train_and_score(cfg, pool, idx, counts,
                                 jax.random.key(0)[None], test,
                                 job_affine=affine)
  auc = metrics.auc((test_labels[:2000] != 1).astype(np.int32), scores[0])
  assert auc > 0.95, auc
