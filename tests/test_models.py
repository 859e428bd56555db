"""Shapes and ranges of the paper's networks on both input sizes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsplit_jax import configs
from dsplit_jax import models
from dsplit_jax import train


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_shapes(shape):
  config = configs.get_preset("test")
  x = jax.random.uniform(jax.random.PRNGKey(0), (3,) + shape)
  net = train.make_classifier(config)
  params = net.init(jax.random.PRNGKey(1), x, method=net.init_all)
  logits, z = net.apply(params, x)
  assert logits.shape == (3,)
  assert z.shape == (3, config.model.dense_features[-1])
  ae = train.make_autoencoder(config, shape)
  ae_params = ae.init(jax.random.PRNGKey(2), x)
  recon = ae.apply(ae_params, x)
  assert recon.shape == x.shape
  assert float(recon.min()) >= 0.0 and float(recon.max()) <= 1.0


def test_distance_is_in_unit_interval_even_for_huge_latents():
  config = configs.get_preset("test")
  net = train.make_classifier(config)
  x = jnp.zeros((2, 28, 28, 1))
  params = net.init(jax.random.PRNGKey(0), x, method=net.init_all)
  z = jax.random.normal(jax.random.PRNGKey(1), (50, config.model.dense_features[-1])) * 1e4
  d = jax.nn.sigmoid(net.apply(params, z, z[::-1], method=net.distance_logit))
  assert d.shape == (50,)
  assert bool(jnp.all((d >= 0) & (d <= 1)))
  # Identical latents: dz = 0, so the distance is sigmoid(bias) for every pair.
  same = net.apply(params, z, z, method=net.distance_logit)
  np.testing.assert_allclose(same, same[0])


def test_l2_penalty_covers_conv_kernels_only():
  config = configs.get_preset("test")
  net = train.make_classifier(config)
  params = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)), method=net.init_all)
  p = params["params"]
  expected = sum(float(jnp.sum(p["features"][f"conv{i}"]["kernel"] ** 2)) for i in range(1, 6))
  assert float(models.conv_kernel_l2(params)) == pytest.approx(expected, rel=1e-5)
  ae = train.make_autoencoder(config, (28, 28, 1))
  ae_params = ae.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  kernels = [v["kernel"] for v in ae_params["params"].values()]
  assert float(models.conv_kernel_l2(ae_params)) == pytest.approx(
      sum(float(jnp.sum(k ** 2)) for k in kernels), rel=1e-5)


def test_he_init_is_flax_kaiming_normal_to_the_bit():
  # models._he draws on the kernel's [fan_in, out] view (it compiles faster); the
  # numbers must be kaiming_normal's on the kernel's own shape, or every result changes.
  key = jax.random.PRNGKey(7)
  for shape in [(5, 5, 3, 4), (3, 3, 4, 2), (7, 7, 2, 3), (6, 5)]:
    want = jax.nn.initializers.kaiming_normal()(key, shape)
    got = models._he(key, shape)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
  assert not np.array_equal(models._he(key, (5, 5, 3, 4)), models._he(key, (5, 5, 4, 3)))


def test_cpu_and_paper_widths_are_alexnet_order():
  paper = configs.get_preset("paper").model
  assert tuple(paper.conv_features) == (96, 256, 384, 384, 256)
  assert tuple(paper.dense_features) == (4096, 4096)
  net = train.make_classifier(configs.get_preset("cpu"))
  params = jax.eval_shape(functools.partial(net.init, method=net.init_all),
                          jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)))
  # Pinned so that a change of the cpu network is a deliberate one (BUILD_NOTES layer table).
  assert sum(x.size for x in jax.tree.leaves(params)) == 95_042  # dense distance head


def _head(kind, seed=0):
  config = configs.get_preset("test")
  config.model.distance_head = kind
  net = train.make_classifier(config)
  params = net.init(jax.random.PRNGKey(seed), jnp.zeros((2, 28, 28, 1)), method=net.init_all)
  if kind not in ("metric", "metric_normalized"):
    # A random bias too, so that no symmetry below holds by a zero bias alone.
    params = jax.tree_util.tree_map_with_path(
        lambda path, p: p + 0.3 if "bias" in str(path[-1]) and "distance" in str(path) else p,
        params)
  return net, params, config.model.dense_features[-1]


@pytest.mark.parametrize("kind", [k for k in models.DISTANCE_HEADS if k != "paper_literal"])
def test_symmetric_heads_are_distances_in_the_unit_interval(kind):
  net, params, width = _head(kind)
  a = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(1), (64, width)))
  b = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(2), (64, width)))

  def dist(x, y):
    return jax.nn.sigmoid(net.apply(params, x, y, method=net.distance_logit))
  np.testing.assert_array_equal(dist(a, b), dist(b, a))
  assert not np.allclose(dist(a, b), dist(a, b)[0])  # it does depend on the pair
  for scale in (1.0, 1e4):
    d = dist(scale * a, scale * b)
    assert bool(jnp.all((d >= 0) & (d <= 1)))
  # Identical latents: every pair gets the same distance, the head's minimum for the
  # metric heads (a > 0).
  same = dist(a, a)
  np.testing.assert_allclose(same, same[0])
  if kind.startswith("metric"):
    assert bool(jnp.all(dist(a, b) >= same[0]))


def test_paper_literal_logit_is_antisymmetric_about_its_bias():
  net, params, width = _head("paper_literal")
  a = jax.random.normal(jax.random.PRNGKey(1), (16, width))
  b = jax.random.normal(jax.random.PRNGKey(2), (16, width))
  bias = float(params["params"]["distance"]["dense"]["bias"][0])
  ab = net.apply(params, a, b, method=net.distance_logit) - bias
  ba = net.apply(params, b, a, method=net.distance_logit) - bias
  np.testing.assert_allclose(ab, -ba, rtol=1e-5, atol=1e-6)
  assert float(jnp.max(jnp.abs(ab))) > 1e-3


def test_metric_head_grows_with_the_euclidean_distance():
  net, params, width = _head("metric")
  z = jnp.zeros((5, width))
  far = z + jnp.arange(5.0)[:, None]
  logits = net.apply(params, z, far, method=net.distance_logit)
  assert bool(jnp.all(jnp.diff(logits) > 0))


def test_unknown_head_is_an_error():
  with pytest.raises(ValueError, match="distance head must be one of"):
    _head("cosine")


@pytest.mark.parametrize("kind", models.DISTANCE_HEADS)
def test_every_head_initialises_inside_jit_and_vmap(kind):
  # The grid initialises a stack of jobs in one jitted, vmapped program.
  config = configs.get_preset("test")
  config.model.distance_head = kind
  net = train.make_classifier(config)
  init = jax.jit(jax.vmap(lambda k: net.init(k, jnp.zeros((2, 28, 28, 1)),
                                             method=net.init_all)))
  params = init(jax.random.split(jax.random.PRNGKey(0), 3))
  assert jax.tree.leaves(params)[0].shape[0] == 3


def test_latent_moves_only_the_distance_heads_input():
  # model.latent="conv" reads z after the convolutions (AlexNet's own features /
  # classifier split); the network, its parameters and its output are unchanged.
  x = jax.random.uniform(jax.random.PRNGKey(3), (5, 28, 28, 1))
  config = configs.get_preset("test")
  dense = train.make_classifier(config)
  config.model.latent = "conv"
  conv = train.make_classifier(config)
  params = dense.init(jax.random.PRNGKey(0), x, method=dense.init_all)
  logit_d, z_d = dense.apply(params, x)
  logit_c, z_c = conv.apply(params, x)
  np.testing.assert_array_equal(logit_d, logit_c)
  assert z_d.shape == (5, config.model.dense_features[-1])
  assert z_c.shape == (5, 2 * 2 * config.model.conv_features[-1])  # 28 -> 13 -> 6 -> 2
  # Its own initialisation differs only in the distance head, sized to the conv latent.
  own = conv.init(jax.random.PRNGKey(0), x, method=conv.init_all)
  assert own["params"]["distance"]["dense"]["kernel"].shape == (z_c.shape[1], 1)
  np.testing.assert_array_equal(own["params"]["classifier"]["kernel"],
                                params["params"]["classifier"]["kernel"])
  # The gradient of a pair loss on conv latents reaches the convolutions only.
  def pair_logit(p):
    _, z = conv.apply(p, x)
    return jnp.sum(conv.apply(p, z[:-1], z[1:], method=conv.distance_logit))
  grads = jax.grad(pair_logit)(own)["params"]["features"]
  assert float(jnp.abs(grads["conv5"]["kernel"]).sum()) > 0
  assert float(jnp.abs(grads["dense1"]["kernel"]).sum()) == 0


def test_unknown_latent_is_an_error():
  config = configs.get_preset("test")
  config.model.latent = "pool"
  with pytest.raises(ValueError, match="latent must be one of"):
    net = train.make_classifier(config)
    net.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)), method=net.init_all)


def test_dropout_acts_in_training_only():
  # model.dropout: AlexNet's dropout after each dense layer. Scoring (train=False) is the
  # network without it, on the same parameters; training drops a share of z's units.
  x = jax.random.uniform(jax.random.PRNGKey(3), (8, 28, 28, 1))
  config = configs.get_preset("test")
  plain = train.make_classifier(config)
  config.model.dropout = 0.5
  dropping = train.make_classifier(config)
  params = plain.init(jax.random.PRNGKey(0), x, method=plain.init_all)
  assert jax.tree.structure(params) == jax.tree.structure(
      dropping.init(jax.random.PRNGKey(0), x, method=dropping.init_all))
  logit, z = plain.apply(params, x)
  logit_eval, z_eval = dropping.apply(params, x)
  np.testing.assert_array_equal(logit, logit_eval)
  np.testing.assert_array_equal(z, z_eval)
  rngs = {"dropout": jax.random.PRNGKey(4)}
  logit_a, z_a = dropping.apply(params, x, train=True, rngs=rngs)
  logit_b, z_b = dropping.apply(params, x, train=True, rngs=rngs)
  np.testing.assert_array_equal(z_a, z_b)  # the same key, the same mask
  assert float(jnp.max(jnp.abs(logit_a - logit))) > 1e-3
  share = float(jnp.sum((z_a == 0) & (z != 0)) / jnp.sum(z != 0))
  assert 0.4 < share < 0.8  # half by the last dropout, a few more by the first
  with pytest.raises(Exception, match="dropout"):
    dropping.apply(params, x, train=True)  # training without a key is an error


def test_glorot_init_is_keras_default_on_every_classifier_kernel():
  # model.init="glorot_uniform": U(-l, l), l = sqrt(6 / (fan_in + fan_out)), on the
  # convolutions, dense layers, output and distance head; He (the default) elsewhere.
  def params(init):
    net = models.OneClassNet((8, 16, 16, 16, 8), (64, 64), weight_init=init)
    return net.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)), method=net.init_all)
  glorot, he = params("glorot_uniform"), params("he_normal")
  kernels = {"/".join(str(getattr(p, "key", p)) for p in path): np.asarray(leaf)
             for path, leaf in jax.tree_util.tree_leaves_with_path(glorot)
             if getattr(path[-1], "key", "") == "kernel"}
  assert len(kernels) == 5 + 2 + 2  # conv1-5, dense1-2, output, distance head
  for name, k in kernels.items():
    receptive = int(np.prod(k.shape[:-2])) if k.ndim > 2 else 1
    fan_in, fan_out = receptive * k.shape[-2], receptive * k.shape[-1]
    limit = np.sqrt(6 / (fan_in + fan_out))
    assert np.abs(k).max() <= limit, name
    if k.size >= 1000:
      np.testing.assert_allclose(k.std(), limit / np.sqrt(3), rtol=0.1, err_msg=name)
  conv2 = lambda p: p["params"]["features"]["conv2"]["kernel"]
  assert np.asarray(conv2(he)).std() > 1.2 * np.asarray(conv2(glorot)).std()  # He: 2/fan_in
  with pytest.raises(ValueError, match="init must be one of"):
    params("orthogonal")


@pytest.mark.parametrize("conv_impl", ["patches", "xla"])
def test_bfloat16_computes_in_bf16_keeps_float32_params_and_outputs(conv_impl):
  """model.dtype=bfloat16: the same parameters (float32), float32 outputs, and logits
  within bf16 rounding of the float32 network's (8 mantissa bits: ~1 % per layer)."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (8, 28, 28, 1))
  nets = {d: models.OneClassNet((8, 16, 16, 16, 8), (32, 32), conv_impl=conv_impl,
                                dtype=None if d == "float32" else jnp.bfloat16)
          for d in ("float32", "bfloat16")}
  params = nets["float32"].init(jax.random.PRNGKey(0), x, method=models.OneClassNet.init_all)
  params_bf = nets["bfloat16"].init(jax.random.PRNGKey(0), x,
                                    method=models.OneClassNet.init_all)
  assert all(a.dtype == jnp.float32 and np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(params), jax.tree.leaves(params_bf)))
  (logit32, z32), (logit16, z16) = (nets[d].apply(params, x) for d in ("float32", "bfloat16"))
  assert logit16.dtype == z16.dtype == jnp.float32
  assert not np.array_equal(logit16, logit32)  # it really computed in bf16
  scale = float(np.abs(logit32).max()) + 1e-6
  np.testing.assert_allclose(logit16, logit32, atol=0.05 * scale)
  ae = models.Autoencoder((4, 8, 8, 8, 8), 8, channels=1, image_size=28, conv_impl=conv_impl,
                          dtype=jnp.bfloat16)
  out = ae.apply(ae.init(jax.random.PRNGKey(0), x), x)
  assert out.dtype == jnp.float32 and out.shape == x.shape


def test_float32_is_the_default_and_unchanged():
  """dtype None (model.dtype=float32) is the network every record was trained with."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 28, 28, 1))
  net = models.OneClassNet((8, 16, 16, 16, 8), (32, 32), conv_impl="patches")
  same = models.OneClassNet((8, 16, 16, 16, 8), (32, 32), conv_impl="patches",
                            dtype=jnp.float32)
  params = net.init(jax.random.PRNGKey(0), x, method=models.OneClassNet.init_all)
  np.testing.assert_array_equal(net.apply(params, x)[0], same.apply(params, x)[0])
  assert train.compute_dtype(configs.load("cpu")) is None
  assert train.compute_dtype(configs.load("cpu", ["model.dtype=bfloat16"])) == jnp.bfloat16


# The authors' networks (models/build.py of their public program), counted from its
# Keras layers by hand: ICSNET on 32x32x3: convolutions 432 + 2,304 + 2 x 9,216 +
# 2 x 36,864 + 2 x 147,456 + 2 x 65,536 = 520,880; BatchNorm scale and offset
# 2 x (32 + 64 + 128 + 256 + 512) = 1,984 (and as many running statistics); dense
# 2048 x 256 + 256, 256 x 128 + 128, 128 + 1 and the distance head 128 + 1: 557,698.
def _authors_config():
  return configs.load("authors")


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def test_authors_classifier_has_the_authors_layer_shapes_and_parameter_count():
  net = train.make_classifier(_authors_config())
  init = functools.partial(net.init, method=net.init_all)  # shapes only: nothing runs
  v = jax.eval_shape(init, jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)))
  assert _count(v["params"]) == 520_880 + 1_984 + 557_698
  assert _count(v["batch_stats"]) == 1_984
  f = v["params"]["features"]
  assert f["conv1a"]["kernel"].shape == (3, 3, 3, 16)
  assert f["conv1b"]["kernel"].shape == (3, 3, 16, 16)
  assert f["conv2a"]["kernel"].shape == (3, 3, 32, 32)  # the concatenated 16 + 16
  assert f["conv5a"]["kernel"].shape == f["conv5b"]["kernel"].shape == (1, 1, 256, 256)
  assert "bias" not in f["conv1a"]
  assert f["dense1"]["kernel"].shape == (2048, 256)   # 2 x 2 x 512
  assert f["dense2"]["kernel"].shape == (256, 128)    # z
  assert v["params"]["distance"]["dense"]["kernel"].shape == (128, 1)
  # 28 x 28 inputs are padded by one after the second pooling (7 -> 9): 2 x 2 again.
  v28 = jax.eval_shape(init, jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)))
  assert v28["params"]["features"]["dense1"]["kernel"].shape == (2048, 256)
  assert _count(v28["params"]) == _count(v["params"]) - 9 * 2 * 16


def test_authors_kernels_start_truncated_at_two_standard_deviations():
  net = train.make_classifier(_authors_config())
  v = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)), method=net.init_all)
  k = np.asarray(v["params"]["features"]["dense1"]["kernel"])
  assert np.abs(k).max() <= 0.02 + 1e-7
  assert 0.007 < k.std() < 0.0095  # std of N(0, 0.01) cut at 2 sigma: 0.0088


def test_authors_classifier_scores_with_running_statistics_and_no_dropout():
  net = train.make_classifier(_authors_config())
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 32, 32, 3))
  v = net.init(jax.random.PRNGKey(0), x[:2], method=net.init_all)
  a, _ = net.apply(v, x)
  b, _ = net.apply(v, x[:1])  # one image alone: no batch statistics are used
  np.testing.assert_allclose(np.asarray(a[:1]), np.asarray(b), rtol=1e-5, atol=1e-6)
  (_, _), new = net.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)},
                          mutable=["batch_stats"])
  before, after = jax.tree.leaves(v["batch_stats"]), jax.tree.leaves(new["batch_stats"])
  assert any(not np.allclose(p, q) for p, q in zip(before, after))


def test_authors_autoencoder_shapes_and_parameter_count():
  # build_ae on 32x32x3: encoder 97,560, code 16,512, decoder 88,128, output 435 and
  # BatchNorm scale and offset on 16+32+64+128+128+64+64+32+16 channels: 1,088.
  # Shapes only (jax.eval_shape): nothing is compiled or run.
  config = _authors_config()
  ae = train.make_autoencoder(config, (32, 32, 3))
  v = jax.eval_shape(ae.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  assert _count(v["params"]) == 97_560 + 16_512 + 88_128 + 435 + 1_088
  assert _count(v["batch_stats"]) == 1_088
  assert v["params"]["conv_code"]["kernel"].shape == (1, 1, 128, 128)
  ae28 = train.make_autoencoder(config, (28, 28, 1))
  v28 = jax.eval_shape(ae28.init, jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  out = jax.eval_shape(ae28.apply, v28, jnp.full((2, 28, 28, 1), 0.5))
  assert out.shape == (2, 28, 28, 1)
  with pytest.raises(ValueError, match="28 or a multiple of 16"):
    jax.eval_shape(train.make_autoencoder(config, (36, 36, 3)).init,
                   jax.random.PRNGKey(0), jnp.zeros((1, 36, 36, 3)))


def test_kernel_l2_covers_every_kernel_but_the_skipped_modules():
  net = train.make_classifier(_authors_config())
  v = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)), method=net.init_all)
  p = {"params": v["params"]}
  sq = lambda t: float(sum(jnp.sum(jnp.square(k)) for path, k in
                           jax.tree_util.tree_leaves_with_path(t)
                           if str(path[-1].key) == "kernel"))
  total = float(models.kernel_l2(p))
  np.testing.assert_allclose(total, sq(p), rtol=1e-6)
  no_head = float(models.kernel_l2(p, skip=("distance",)))
  np.testing.assert_allclose(total - no_head, sq(v["params"]["distance"]), rtol=1e-5)
