"""Splitting, batch sampling and the training mechanics (vmap, resume, determinism)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import loop
from dsplit_jax import methods
from dsplit_jax import pipeline
from dsplit_jax import split
from dsplit_jax import train
from experiments import check_job_map

PAD = -1.0  # Lower than any SSIM: padded entries must still never be picked.


def test_split_size_order_and_ties():
  ssim = jnp.array([0.5, 0.1, 0.9, 0.1, 0.3, 0.8, 0.7, 0.2, 0.6, 0.4, PAD, PAD])
  idx = jnp.arange(100, 112, dtype=jnp.int32)
  s = split.split_by_ssim(ssim, idx, jnp.int32(10), rho=20.0)
  assert int(s.atypical_count) == 2 and int(s.typical_count) == 8
  # The two lowest SSIM are tied at 0.1: the lower position (1) comes first.
  np.testing.assert_array_equal(s.atypical_idx[:2], [101, 103])
  assert sorted(np.asarray(s.typical_idx[:8]).tolist()) == [100, 102, 104, 105, 106, 107, 108, 109]
  # 25% of 10 = 2.5 rounds half up to 3.
  s = split.split_by_ssim(ssim, idx, jnp.int32(10), rho=25.0)
  np.testing.assert_array_equal(s.atypical_idx[:3], [101, 103, 107])
  assert int(s.typical_count) == 7


def test_split_keeps_two_of_each_for_pairs():
  ssim = jnp.linspace(0, 1, 8)
  s = split.split_by_ssim(ssim, jnp.arange(8, dtype=jnp.int32), jnp.int32(8), rho=1.0)
  assert int(s.atypical_count) == 2
  s = split.split_by_ssim(ssim, jnp.arange(8, dtype=jnp.int32), jnp.int32(8), rho=99.0)
  assert int(s.typical_count) == 2


def test_sample_positions_without_replacement_and_distinct_pairs():
  key = jax.random.PRNGKey(0)
  pos = np.asarray(train.sample_positions(key, jnp.int32(10), 20, 8))
  assert len(set(pos.tolist())) == 8 and pos.max() < 10
  pos = np.asarray(train.sample_positions(key, jnp.int32(5), 20, 17))
  assert pos.max() < 5 and set(pos.tolist()) == set(range(5))
  assert np.all(pos[:-1] != pos[1:])  # Every pair (i, i+1) joins two different images.


class _Echo:
  """Stands in for the autoencoder: returns `params` (an image or None = the input)."""

  @staticmethod
  def apply(params, images):
    return images if params is None else jnp.broadcast_to(params, images.shape)


def test_plateau_ratio_one_on_the_mean_image_zero_on_a_copy():
  images = jax.random.uniform(jax.random.PRNGKey(0), (6, 4, 4, 1))
  garbage = images.at[4:].set(100.0)  # past `count`: must not count
  mean_image = jnp.mean(images[:4], axis=0)
  assert float(split.plateau_ratio(None, garbage, 4, model=_Echo)) == 0.0
  np.testing.assert_allclose(split.plateau_ratio(mean_image, garbage, 4, model=_Echo), 1.0,
                             rtol=1e-6)
  # Half-way between the mean and each image: a quarter of the mean image's error.
  class Half(_Echo):
    @staticmethod
    def apply(params, x):
      return (x + params) / 2
  np.testing.assert_allclose(split.plateau_ratio(mean_image, garbage, 4, model=Half), 0.25,
                             rtol=1e-5)


# ------------------------------------------------------------------ mechanics

def _config():
  c = configs.get_preset("test")
  c.loop = "host"
  return c


@pytest.fixture(scope="module")
def pool(mnist_dir):
  """40 real digits 0 and 30 digits 1.

  Real images, not noise: on noise every SSIM is about equal, so rounding alone
  reorders the split and no two runs can be compared.
  """
  from dsplit_jax import data
  x, y = data.load("mnist", "train", str(mnist_dir))
  images = np.concatenate([x[y == 0][:40], x[y == 1][:30]]).astype(np.float32) / 255
  idx = np.zeros((2, 40), np.int32)
  idx[0, :40] = np.arange(40)
  idx[1, :30] = np.arange(40, 70)
  return images, idx, np.array([40, 30], np.int32)


@pytest.fixture(scope="module")
def programs():
  """`_config()`'s compiled programs, held by the module as a run holds its own."""
  return pipeline.make_programs(_config(), (28, 28, 1))


def _jobs(pool, rows, classes):
  """Jobs of seed 0 and `classes` on the rows `rows` of `pool` (images, idx, count)."""
  images, idx, count = pool
  return check_job_map.stacked_jobs(images, idx[rows], count[rows], classes,
                                    [0] * len(rows))


def _fit(programs, pool, rows, classes, ckpt_dir=None, progress=None, method="dsplit"):
  jobs = _jobs(pool, rows, classes)
  ae = pipeline.fit_autoencoders(programs, jobs)
  ssim = pipeline.ssim_of(programs, ae, jobs)
  splits = pipeline.split(programs.config, ssim, jobs)
  params = pipeline.fit_classifiers(programs, jobs, method, splits, ckpt_dir=ckpt_dir,
                                    progress=progress)
  return params, pipeline.classifier_scores(programs, params, jobs.pool)


@pytest.fixture(scope="module")
def reference(programs, pool):
  return _fit(programs, pool, [0, 1], [0, 1])


def test_same_seed_same_scores(programs, pool, reference):
  # The held programs were compiled for `reference`: running again lowers nothing (a
  # Programs built anew would trace and lower every phase again).
  lowered = []

  def listen(event, duration, **kwargs):
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":  # jax._src.dispatch
      lowered.append(kwargs.get("fun_name", "?"))
  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    _, again = _fit(programs, pool, [0, 1], [0, 1])
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
  np.testing.assert_array_equal(again, reference[1])
  assert lowered == []


def test_vmapped_jobs_equal_single_runs(programs, pool, reference):
  # Batched and unbatched convolutions round differently; 1e-4 relative is ~1000 ulp.
  for row in (0, 1):
    _, single = _fit(programs, pool, [row], [row])
    np.testing.assert_allclose(single[0], reference[1][row], rtol=1e-4, atol=1e-5)


def test_resumed_run_equals_uninterrupted(programs, pool, reference, tmp_path):
  class Killed(Exception):
    pass

  def die_after_first_chunk(phase, step, total, metrics):
    if phase == "dsplit":
      raise Killed

  class KillingProgress(loop.Progress):
    def __call__(self, phase, step, total, metrics):
      super().__call__(phase, step, total, metrics)
      die_after_first_chunk(phase, step, total, metrics)
  with pytest.raises(Killed):
    _fit(programs, pool, [0, 1], [0, 1], ckpt_dir=str(tmp_path),
         progress=KillingProgress(printer=lambda _: None))
  assert not loop.phase_done("dsplit", str(tmp_path), _config().train.steps)
  resumed = loop.Progress(printer=lambda _: None)
  params, scores = _fit(programs, pool, [0, 1], [0, 1], ckpt_dir=str(tmp_path),
                        progress=resumed)
  steps = [h["step"] for h in resumed.history if h["phase"] == "dsplit"]
  assert steps == [_config().train.steps]  # Only the second chunk ran again.
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference[0])):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(scores, reference[1])


def test_every_method_trains_and_reports_its_losses(programs, pool):
  progress = loop.Progress(printer=lambda _: None)
  for method, names in [("nnwds", {"intra_class"}), ("naive_nn", {"intra_class"}),
                        ("dsplit", {"closeness", "intra_class", "dispersion"})]:
    _fit(programs, pool, [0], [0], progress=progress, method=method)
    last = [h for h in progress.history if h["phase"] == method][-1]
    assert set(last) - {"phase", "step", "total"} == names


def test_non_finite_loss_stops_training():
  def chunk(state, start):
    return state, {"loss": np.array([np.nan])}
  with pytest.raises(loop.NonFiniteLossError):
    loop.run_phase("x", {"a": np.zeros(1)}, chunk, total_steps=2, chunk_steps=1, ckpt_dir=None)


def test_padded_indices_never_change_a_result(programs, pool, reference):
  images, idx, count = pool
  idx = idx.copy()
  idx[1, 30:] = 5  # Job 1 has 30 images; its padding now points at a real image of job 0.
  _, scores = _fit(programs, (images, idx, count), [0, 1], [0, 1])
  np.testing.assert_array_equal(scores, reference[1])


def test_stuck_autoencoders_are_trained_again_and_the_others_untouched(programs, pool,
                                                                       monkeypatch):
  images = pool[0]
  jobs = _jobs(pool, [0, 1], [0, 1])
  first = pipeline.fit_autoencoders(programs, jobs)
  config = _config()
  config.ae.restarts = 2
  lines = []
  progress = loop.Progress(printer=lines.append)
  # Job 0 looks stuck after the first try, no job after the second.
  answers = iter([np.array([2.1, 0.2]), np.array([0.2, 0.2])])
  monkeypatch.setattr(pipeline, "plateau_ratios", lambda *a: next(answers))
  again = pipeline.fit_autoencoders(pipeline.make_programs(config, images.shape[1:]), jobs,
                                    progress=progress)
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a[1], b[1])   # a job that trained is not touched
    assert a[0].shape == b[0].shape
  assert any(not np.array_equal(a[0], b[0]) for a, b in
             zip(jax.tree.leaves(first), jax.tree.leaves(again)))
  restarts = [l for l in lines if "plateau" in l]
  assert restarts == ["[autoencoder] stuck on a plateau (reconstruction MSE / mean "
                      "image's MSE > 1): class 0 seed 0 (2.10); training them again from a "
                      "new start (1 of 2)"]
  with pytest.raises(StopIteration):
    next(answers)  # checked once after each try, and no third try was needed

  # Still stuck when the restarts are used up: one warning, the last try's params kept.
  config.ae.restarts = 1
  lines.clear()
  monkeypatch.setattr(pipeline, "plateau_ratios", lambda *a: np.array([0.2, 2.3]))
  pipeline.fit_autoencoders(pipeline.make_programs(config, images.shape[1:]), jobs,
                            progress=progress)
  assert [l for l in lines if "stuck" in l] == [
      "[autoencoder] stuck on a plateau (reconstruction MSE / mean image's MSE > 1): "
      "class 1 seed 0 (2.30); training them again from a new start (1 of 1)",
      "[autoencoder] WARNING: still stuck after 1 restart(s): class 1 seed 0 (2.30); "
      "their split ranks images by SSIM against a near-constant output"]


def test_a_restart_starts_at_the_mean_pixels_logit(pool, monkeypatch):
  # New keys alone left MNIST digit 1 seed 1 black on three tries; the restart also
  # moves the start of the decoder's output bias (BUILD_NOTES.md, "The method").
  images, idx, count = pool
  config = _config()
  config.ae.steps, config.ae.restarts = 0, 1  # params = the start of each try
  answers = iter([np.array([2.1, 0.2]), np.array([0.2, 0.2])])
  monkeypatch.setattr(pipeline, "plateau_ratios", lambda *a: next(answers))
  params = pipeline.fit_autoencoders(pipeline.make_programs(config, images.shape[1:]),
                                     _jobs(pool, [0, 1], [0, 1]))
  bias = np.asarray(params["params"]["deconv1"]["bias"])
  p = np.asarray(train.mean_pixel(images, idx[0], count[0]))
  np.testing.assert_allclose(bias[0], np.log(p) - np.log1p(-p), rtol=1e-5)
  np.testing.assert_array_equal(bias[1], 0.0)  # the first try's zero start, untouched
  assert config.ae.output_bias == "zero"  # the caller's config is not changed
  # With `ae.output_bias="mean_logit"` the first try starts there too (one job: the
  # restart's program above, so nothing new to compile).
  config.ae.output_bias, config.ae.restarts = "mean_logit", 0
  monkeypatch.setattr(pipeline, "plateau_ratios", lambda *a: np.array([0.2]))
  params = pipeline.fit_autoencoders(pipeline.make_programs(config, images.shape[1:]),
                                     _jobs(pool, [1], [1]))
  p = np.asarray(train.mean_pixel(images, idx[1], count[1]))
  np.testing.assert_allclose(params["params"]["deconv1"]["bias"][0], np.log(p) - np.log1p(-p),
                             rtol=1e-5)


def test_an_untrained_autoencoder_counts_as_stuck(pool):
  # At initialisation the output is noise around 0.5, further from the digits than their
  # mean image. (Trained `cpu`-preset autoencoders: 0.13-0.22; BUILD_NOTES.md,
  # "The method".)
  images, idx, count = pool
  config = _config()
  config.ae.steps = 0
  programs = pipeline.make_programs(config, images.shape[1:])
  jobs = _jobs(pool, [0, 1], [0, 1])
  untrained = pipeline.fit_autoencoders(programs, jobs)
  ratios = pipeline.plateau_ratios(programs, untrained, jobs)
  assert ratios.shape == (2,) and np.all(ratios > config.ae.plateau_ratio), ratios


# ------------------------------------------------------------------ pair losses

@pytest.mark.parametrize("batch", [2, 5, 65])
def test_pair_indices_neighbours_and_all(batch):
  i, j = train.pair_indices(batch, "neighbours")
  assert len(i) == batch - 1 and np.all(j == i + 1)
  i, j = train.pair_indices(batch, "all")
  assert len(i) == batch * (batch - 1) // 2
  assert np.all(i < j)  # never a sample with itself, each unordered pair once
  assert len(set(zip(i.tolist(), j.tolist()))) == len(i)
  assert train.pair_batch_size(64, "neighbours") == 65  # 64 pairs
  assert train.pair_batch_size(64, "all") == 64         # 2016 pairs
  with pytest.raises(ValueError, match="train.pairs"):
    train.pair_indices(batch, "random")


@pytest.mark.parametrize("pairs", ["neighbours", "all"])
def test_pair_losses_average_over_exactly_the_chosen_pairs(pairs):
  config = configs.get_preset("test")
  model = train.make_classifier(config)
  tx = train.optimizer(config.train)
  x = jax.random.uniform(jax.random.PRNGKey(0), (6, 28, 28, 1))
  state = train.init_classifier_state(jax.random.PRNGKey(1), model=model, tx=tx,
                                      image_shape=(28, 28, 1))
  _, z = model.apply(state.params, x)
  logits = {(a, b): float(model.apply(state.params, z[a], z[b], method=model.distance_logit))
            for a in range(6) for b in range(6)}
  chosen = list(zip(*train.pair_indices(6, pairs)))
  softplus = lambda v: float(jax.nn.softplus(v))
  kw = dict(model=model, tx=tx, weight_decay=0.0, pairs=pairs)
  step = jax.jit(functools.partial(train.pair_step, **kw), static_argnames=("name", "target"))
  _, m = step(state, x, name="closeness", target=0.0)
  np.testing.assert_allclose(m["closeness"], np.mean([softplus(logits[p]) for p in chosen]),
                             rtol=1e-5)
  _, m = step(state, x, name="dispersion", target=1.0)
  np.testing.assert_allclose(m["dispersion"], np.mean([softplus(-logits[p]) for p in chosen]),
                             rtol=1e-5)


def test_dropout_reaches_every_loss_and_only_with_a_rate():
  # model.dropout > 0: each of the three losses trains through the dropped units; at 0
  # the step draws no dropout key (the streams every record was trained with).
  pool = jax.random.uniform(jax.random.PRNGKey(0), (12, 28, 28, 1))
  idx = jnp.arange(12)
  split_ = split.Split(typical_idx=idx[:8], typical_count=jnp.int32(8),
                       atypical_idx=idx[8:], atypical_count=jnp.int32(4))

  def one_step(dropout):
    config = configs.get_preset("test")
    config.model.dropout = dropout
    model = train.make_classifier(config)
    tx = train.optimizer(config.train)

    @jax.jit  # one program, not one per operation
    def step(key):
      state = train.init_classifier_state(key, model=model, tx=tx, image_shape=(28, 28, 1))
      return train.classifier_body(state, 0, jax.random.PRNGKey(2), split_, idx,
                                   jnp.int32(12), pool, model=model, tx=tx, config=config,
                                   method="dsplit")
    return step(jax.random.PRNGKey(1))

  plain_state, plain = one_step(0.0)
  dropped_state, dropped = one_step(0.5)
  for name in ("closeness", "intra_class", "dispersion"):
    assert abs(float(dropped[name]) - float(plain[name])) > 1e-6, name
    assert np.isfinite(float(dropped[name]))
  kernel = lambda s: s.params["params"]["classifier"]["kernel"]
  assert not np.allclose(kernel(dropped_state), kernel(plain_state))


def test_output_bias_starts_at_the_logit_of_each_jobs_mean_pixel(programs, pool):
  # The module's programs and `pool`'s shapes (70 images, 2 jobs of 40 slots), so the
  # zero start is the program `reference` compiled; the images are this test's own.
  images, slots = np.full_like(pool[0], 0.7), pool[1].shape[1]
  images[:6] = np.concatenate([np.full((3, 28, 28, 1), 0.1), np.full((2, 28, 28, 1), 0.5),
                               np.full((1, 28, 28, 1), 0.9)])
  idx = np.full((2, slots), 5, np.int32)  # padding: image 5 (0.9), never counted
  idx[0, :3] = [0, 1, 2]
  idx[1, :4] = [3, 4, 0, 0]  # job 1: two images, then padding
  count = np.array([3, 2], np.int32)
  jobs = pipeline.JobAxis(2)  # placed on the devices as `pipeline.fit_autoencoders` does
  keys, idx, count = jobs.put((jax.random.split(jax.random.PRNGKey(0), 2), idx, count))
  images = jobs.replicate(images)
  zero = programs.ae_init["zero"](keys, idx, count, images)
  mean = programs.ae_init["mean_logit"](keys, idx, count, images)
  bias = np.asarray(mean.params["params"]["deconv1"]["bias"])
  np.testing.assert_allclose(bias[:, 0], [np.log(0.1 / 0.9), 0.0], atol=1e-5)
  np.testing.assert_array_equal(zero.params["params"]["deconv1"]["bias"], 0.0)
  # Everything else starts as before.
  for path in [("conv1", "kernel"), ("deconv1", "kernel"), ("deconv2", "bias")]:
    a, b = zero.params["params"], mean.params["params"]
    np.testing.assert_array_equal(a[path[0]][path[1]], b[path[0]][path[1]])


def test_cosine_decay_reaches_zero_at_the_last_step_and_constant_stays_a_float():
  config = configs.get_preset("cpu").train
  assert train.learning_rate(config) == config.learning_rate  # the old optimiser state
  config.lr_decay = "cosine"
  schedule = train.learning_rate(config)
  np.testing.assert_allclose(float(schedule(0)), config.learning_rate, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(config.steps // 2)), config.learning_rate / 2,
                             rtol=1e-5)
  assert float(schedule(config.steps)) == 0.0
  config.warmup_steps = 10  # a warm-up first, then the decay
  schedule = train.learning_rate(config)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(10)), config.learning_rate, rtol=1e-6)
  # Each loss's Adam decays with its own count: after `steps` updates its rate is 0.
  params = {"w": jnp.ones(3)}
  tx = train.optimizer(config)
  state = tx.init(params)
  for _ in range(config.steps):
    _, state = tx.update({"w": jnp.ones(3)}, state, params)
  updates, _ = tx.update({"w": jnp.ones(3)}, state, params)
  assert float(jnp.abs(updates["w"]).max()) == 0.0


def test_the_epochs_schedule_runs_one_epoch_of_each_loss_in_turn():
  # Batch 4: 8 typical images are an epoch of 2 closeness steps, the 12 normal images
  # one of 3 intra-class steps, the 4 atypical ones one of 1 dispersion step; then again.
  pool = jax.random.uniform(jax.random.PRNGKey(0), (12, 28, 28, 1))
  idx = jnp.arange(12)
  split_ = split.Split(typical_idx=idx[:8], typical_count=jnp.int32(8),
                       atypical_idx=idx[8:], atypical_count=jnp.int32(4))
  config = configs.get_preset("test")
  config.train.batch_size = 4
  model = train.make_classifier(config)
  tx = train.optimizer(config.train)
  start = train.init_classifier_state(jax.random.PRNGKey(1), model=model, tx=tx,
                                      image_shape=(28, 28, 1))

  def body(schedule, state, step, method="dsplit"):
    config.train.schedule = schedule
    return train.classifier_body(state, step, jax.random.PRNGKey(2), split_, idx,
                                 jnp.int32(12), pool, model=model, tx=tx, config=config,
                                 method=method)
  expected = ["closeness"] * 2 + ["intra_class"] * 3 + ["dispersion"] + ["closeness"]
  epochs_step = jax.jit(functools.partial(body, "epochs"))  # traced once: step is traced
  state = start
  for step, name in enumerate(expected):
    before = state
    state, metrics = epochs_step(state, step)
    ran = [k for k, v in metrics.items() if np.isfinite(float(v))]
    assert ran == [name], step
    counts = {k: int(s[0].count) for k, s in state.opt_states.items()}  # Adam's steps
    assert counts == {k: expected[:step + 1].count(k) for k in counts}, step
    # The update is the interleaved schedule's step of that loss, with the same batch.
    if step == 0:
      _, interleaved = body("interleaved", before, step)
      assert float(metrics[name]) == float(interleaved[name])
  _, m = body("epochs", start, 0, method="nnwds")  # one loss: every step is that one
  assert set(m) == {"intra_class"} and np.isfinite(float(m["intra_class"]))


@pytest.mark.long
def test_a_bfloat16_run_of_the_test_preset_trains_with_finite_losses_and_close_scores():
  """model.dtype=bfloat16 end to end: finite losses, and scores that rank new images as
  float32's do. Normal images are discs, anomalies noise; measured: Spearman 0.98 between
  the two dtypes' scores, AUCs 0.83 and 0.80; stated tolerance: Spearman > 0.9, AUCs
  within 0.06 (20 steps of Adam from the same start, in 8-bit mantissas)."""
  import scipy.stats  # pylint: disable=g-import-not-at-top
  from dsplit_jax import data, metrics, runner  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:28, :28]

  def discs(n):
    c, r = rng.uniform(8, 20, (n, 2)), rng.uniform(3, 6, n)
    inside = (yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2 < r[:, None, None] ** 2
    return inside.astype(np.float32)[..., None]
  normal = discs(64)
  test = np.concatenate([discs(32), rng.uniform(size=(32, 28, 28, 1)).astype(np.float32)])
  labels = np.repeat([0, 1], 32)
  scores = {}
  for dtype in ("float32", "bfloat16"):
    config = configs.load("test", [f"model.dtype={dtype}", "method=nnwds"])
    programs = pipeline.make_programs(config, normal.shape[1:])
    progress = loop.Progress(printer=lambda line: None)
    fitted = runner.fit(programs, "nnwds", data.Jobs.of_images(normal, seed=0),
                         progress=progress)
    losses = [v for h in progress.history for k, v in h.items()
              if k not in ("phase", "step", "total")]
    assert losses and np.all(np.isfinite(losses))
    scores[dtype] = runner.score(programs, "nnwds", fitted, test)[0]
  assert scores["bfloat16"].dtype == np.float32
  assert not np.array_equal(scores["float32"], scores["bfloat16"])
  assert scipy.stats.spearmanr(scores["float32"], scores["bfloat16"])[0] > 0.9
  assert abs(metrics.auc(labels, scores["float32"]) -
             metrics.auc(labels, scores["bfloat16"])) < 0.06


def _balanced_step(method, steps=2):
  config = configs.load("authors", ["dataset=cifar10"])
  # Narrow layers: the counters and which parameters move do not depend on the widths,
  # and the authors' widths take a minute to compile.
  config.model.conv_features, config.model.dense_features = (4, 8, 8, 8, 8), (16, 16)
  pool = jax.random.uniform(jax.random.PRNGKey(0), (300, 32, 32, 3))
  idx = jnp.arange(300)
  split_ = split.Split(typical_idx=idx[:270], typical_count=jnp.int32(270),
                       atypical_idx=idx[270:], atypical_count=jnp.int32(30))
  model = train.make_classifier(config)
  tx = train.optimizer(config.train)
  # One compiled initialisation, not one small program per kernel shape.
  init = jax.jit(functools.partial(train.init_classifier_state, model=model, tx=tx,
                                   image_shape=(32, 32, 3),
                                   names=train.optimizer_names(config)))
  state = init(jax.random.PRNGKey(1))
  first = state
  body = jax.jit(functools.partial(train.classifier_body, model=model, tx=tx,
                                   config=config, method=method))
  for step in range(steps):
    state, metrics = body(state, step, jax.random.PRNGKey(2), split_, idx,
                          jnp.int32(300), pool)
  return first, state, metrics


def _count(opt_state):
  return int(optax.tree_utils.tree_get(opt_state, "count"))


def test_balanced_schedule_counts_both_models_updates_on_one_adam_counter():
  # dsplit: 3 pair updates then 4 intra-class updates per iteration, one step counter
  # (Keras' `iterations` of the one optimiser both models share).
  first, state, metrics = _balanced_step("dsplit")
  assert set(metrics) == {"closeness", "intra_class", "dispersion"}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert _count(state.opt_states["pairs"]) == 7 + 3
  assert _count(state.opt_states["intra_class"]) == 7 + 7
  before = jax.tree.leaves(first.params["batch_stats"])
  after = jax.tree.leaves(state.params["batch_stats"])
  assert any(not np.allclose(p, q) for p, q in zip(before, after))
  # Both heads move: the distance head in the pair updates, the output layer in the
  # intra-class ones.
  p0, p1 = first.params["params"], state.params["params"]
  assert not np.allclose(p0["distance"]["dense"]["kernel"], p1["distance"]["dense"]["kernel"])
  assert not np.allclose(p0["classifier"]["kernel"], p1["classifier"]["kernel"])


def test_balanced_nnwds_makes_the_intra_class_updates_only():
  first, state, metrics = _balanced_step("nnwds")
  assert set(metrics) == {"intra_class"}
  assert _count(state.opt_states["intra_class"]) == 4 + 4
  assert _count(state.opt_states["pairs"]) == 0
  np.testing.assert_array_equal(first.params["params"]["distance"]["dense"]["kernel"],
                                state.params["params"]["distance"]["dense"]["kernel"])


def test_every_loss_a_method_names_is_in_the_losses_table():
  for spec in methods.METHODS.values():
    assert set(spec.losses) <= set(train.LOSSES), spec.name
  assert [train.LOSSES[n].target for n in ("closeness", "dispersion")] == [0.0, 1.0]
