"""The method's phases over a stack of jobs: autoencoder, SSIM split, classifier, scores.

Each function takes arrays with a leading job axis J (one job = one normal class and
seed) plus the shared image pool, pads J to a multiple of the device count, shards the
job axis over a `Mesh` of all local devices, and returns numpy arrays for the real jobs.
Padded jobs repeat the last real job and are dropped, so they never change a result.

The compiled programs are built once per run by `make_programs(config, image_shape)`;
the caller holds them and passes them to every phase:

  programs = pipeline.make_programs(config, pool.shape[1:])
  ae = pipeline.fit_autoencoders(programs, pool, train_idx, train_count, keys)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from dsplit_jax import layers
from dsplit_jax import loop
from dsplit_jax import protocols
from dsplit_jax import split as split_lib
from dsplit_jax import train


def _mesh() -> Mesh:
  return Mesh(np.array(jax.devices()), ("jobs",))


class JobAxis:
  """Pads, shards and unpads the job axis: the one place that knows about devices.

  The job axis of J real jobs is padded to a multiple of the device count by
  repeating the last job; `take` drops the padding, so padded jobs never change a
  result.
  """

  def __init__(self, num_jobs: int):
    n_dev = jax.device_count()
    self.num_jobs = num_jobs
    self.padded = -(-num_jobs // n_dev) * n_dev
    self.mesh = _mesh()

  def put(self, tree):
    """Per-job arrays [J, ...] (numpy or jax) -> padded and sharded over devices."""
    rows = np.minimum(np.arange(self.padded), self.num_jobs - 1)
    padded = jax.tree.map(lambda x: np.asarray(x)[rows], tree)
    return jax.device_put(padded, NamedSharding(self.mesh, P("jobs")))

  def replicate(self, tree):
    """Arrays every job reads (the image pool) -> one copy per device."""
    return jax.device_put(jax.tree.map(jnp.asarray, tree), NamedSharding(self.mesh, P()))

  def take(self, tree):
    """Padded outputs -> numpy arrays of the real jobs only."""
    return jax.tree.map(lambda x: np.asarray(x)[:self.num_jobs], tree)

  def real_metrics(self, chunk_fn):
    """A training chunk whose metrics cover the real jobs only (progress, curves)."""
    def run(state, start):
      state, metrics = chunk_fn(state, start)
      return state, self.take(metrics)
    return run


JOB_MAPS = ("auto", "map", "vmap")


def job_map(config) -> str:
  """How a device runs its jobs. "map" (`lax.map`, one job after another): every job
  runs the same single-job program, so its result does not depend on how many jobs
  run beside it. "vmap": all at once, the accelerators' parallelism, but XLA lowers
  the batched program differently for each job count and Adam amplifies the rounding
  (digit 0 scored 96.07 alone and 97.06 beside three jobs; BUILD_NOTES.md,
  "Performance"). "auto": map on CPU, where vmap buys little, vmap elsewhere."""
  if config.job_map != "auto":
    return config.job_map
  return "map" if jax.default_backend() == "cpu" else "vmap"


def _map_jobs(fn, in_axes):
  """fn over the job axis one job after another (`lax.map`)."""
  def mapped(*args):
    per_job = tuple(a for a, axis in zip(args, in_axes) if axis == 0)

    def one(job_args):
      it = iter(job_args)
      return fn(*(next(it) if axis == 0 else a for a, axis in zip(args, in_axes)))
    return jax.lax.map(one, per_job)
  # Compiled programs are named after fn, as under vmap (compilation logs, tests).
  inner = getattr(fn, "func", fn)  # functools.partial
  mapped.__name__ = mapped.__qualname__ = getattr(inner, "__name__", "mapped")
  return mapped


def over_jobs(fn, in_axes, *, donate: bool = False, mapping: str = "vmap"):
  """jit(vmap(fn)) (or lax.map, `mapping`, see `job_map`) whose job axis is split over
  all local devices with `shard_map`.

  Each device runs the mapped function on its own slice of jobs, so a job's
  numbers do not depend on how many devices there are (XLA's automatic partitioning
  of the same vmapped program gave different SSIMs on 4 fake CPU devices).
  `in_axes`: 0 for per-job arguments, None for shared ones (replicated).
  """
  if mapping not in ("vmap", "map"):
    raise ValueError(f"job_map must be auto, map or vmap, got {mapping!r}")
  vmapped = jax.vmap(fn, in_axes=in_axes) if mapping == "vmap" else _map_jobs(fn, in_axes)
  if jax.device_count() > 1:
    specs = tuple(P("jobs") if a == 0 else P() for a in in_axes)
    vmapped = jax.shard_map(vmapped, mesh=_mesh(), in_specs=specs, out_specs=P("jobs"),
                            check_vma=False)
  return jax.jit(vmapped, donate_argnums=(0,) if donate else ())


def compiled_chunk(body, in_axes, steps: int, mode: str, mapping: str = "vmap"):
  """A chunk of `steps` steps of `body(state, step, *job_args)` vmapped over jobs.

  mode "scan": the whole chunk is one compiled `lax.scan` (the default). mode "host":
  one compiled call per step, the batch still drawn on the device from the step number;
  the fast path for lax.conv on XLA:CPU, whose gradients run about 10x slower inside a
  while loop (BUILD_NOTES.md, "Performance").
  Both modes donate the state (one copy of it on the device, not two): `loop.run_phase`
  never reads a state after passing it on, and orbax copies a saved state to the host
  before `save` returns (BUILD_NOTES.md, "Performance").
  """
  if mode == "scan":
    def run(state, start, *args):
      return train.run_steps(lambda s, t: body(s, t, *args), state, start, steps)
    return over_jobs(run, (0, None) + in_axes, donate=True, mapping=mapping)
  if mode != "host":
    raise ValueError(f"loop mode must be scan or host, got {mode!r}")
  step_fn = over_jobs(body, (0, None) + in_axes, donate=True, mapping=mapping)

  def run_host(state, start, *args):
    history = []
    for t in range(int(start), int(start) + steps):
      state, metrics = step_fn(state, np.int32(t), *args)
      history.append(metrics)
    return state, jax.tree.map(lambda *xs: np.stack(xs, axis=1), *history)
  return run_host


def loop_mode(config) -> str:
  """"auto": a `lax.scan` per chunk, except on XLA:CPU with lax.conv convolutions,
  whose gradients run 10x slower inside a loop (BUILD_NOTES.md, "Performance")."""
  if config.loop != "auto":
    return config.loop
  xla_on_cpu = (jax.default_backend() == "cpu" and
                layers.resolve_conv_impl(config.model.conv_impl) == "xla")
  return "host" if xla_on_cpu else "scan"


class Programs:
  """The compiled phases of one config and image shape, built once and held by the caller.

  jit caches compiled code per function object, so a run builds one Programs and passes
  it to every phase: each phase compiles once per job count. `config` is a copy taken
  here, so a later change to the caller's config never meets a program traced with the
  old one; a changed config needs a new Programs.
  """

  def __init__(self, config: ml_collections.ConfigDict, image_shape):
    self.config = config = config.copy_and_resolve_references()
    self.image_shape = image_shape = tuple(image_shape)
    self.mode = loop_mode(config)
    self.job_map = job_map(config)
    over = functools.partial(over_jobs, mapping=self.job_map)
    self.ae_model = ae_model = train.make_autoencoder(config, image_shape)
    ae_tx = train.optimizer(config.ae)
    init_ae = functools.partial(train.init_ae_state, model=ae_model, tx=ae_tx,
                                image_shape=image_shape)
    # By `ae.output_bias`; a restart of a stuck autoencoder takes "mean_logit".
    self.ae_init = {
        "zero": over(lambda key, idx, count, pool: init_ae(key), (0, 0, 0, None)),
        "mean_logit": over(lambda key, idx, count, pool: init_ae(
            key, train.mean_pixel(pool, idx, count)), (0, 0, 0, None)),
    }
    self.ae_chunk = compiled_chunk(
        functools.partial(train.ae_body, model=ae_model, tx=ae_tx, config=config),
        (0, 0, 0, None), config.ae.chunk_steps, self.mode, self.job_map)
    self.plateau = over(
        lambda params, idx, count, pool: train.plateau_ratio(
            params, pool[idx], count, model=ae_model), (0, 0, 0, None))
    self.ssim = over(
        lambda params, idx, pool: train.ssim_scores(params, pool[idx], model=ae_model,
                                                    config=config), (0, 0, None))
    self.classifier = model = train.make_classifier(config)
    self._clf_tx = train.optimizer(config.train)
    self.clf_init = over(functools.partial(
        train.init_classifier_state, model=model, tx=self._clf_tx, image_shape=image_shape,
        names=train.optimizer_names(config)),
        (0,))
    self.scores = over(functools.partial(
        train.classifier_scores, model=model, config=config), (0, None))
    self._clf_chunks = {}

  def clf_chunk(self, method: str):
    """`method`'s classifier chunk, built on first use: a run trains one method, the
    planner several."""
    if method not in self._clf_chunks:
      self._clf_chunks[method] = compiled_chunk(
          functools.partial(train.classifier_body, model=self.classifier, tx=self._clf_tx,
                            config=self.config, method=method),
          (0, 0, 0, 0, None), self.config.train.chunk_steps, self.mode, self.job_map)
    return self._clf_chunks[method]

  def check_shape(self, images):
    if tuple(images.shape[1:]) != self.image_shape:
      raise ValueError(f"images of shape {tuple(images.shape[1:])}, but these programs "
                       f"were built for {self.image_shape}")


def make_programs(config: ml_collections.ConfigDict, image_shape) -> Programs:
  """The compiled phases of a run on images of `image_shape` ([H, W, C])."""
  return Programs(config, image_shape)


def _phase_keys(keys, phase):
  return jax.vmap(lambda k: jax.random.fold_in(k, phase))(jnp.asarray(keys))


def fit_autoencoders(programs: Programs, pool, train_idx, train_count, keys, *,
                     ckpt_dir: str | None = None, progress=None, names=None):
  """Trains one splitting autoencoder per job with MSE; returns stacked params.

  A job that ends on the plateau (`train.plateau_ratio` above `ae.plateau_ratio`: its
  reconstructions are worse than its mean image) is trained again from a new
  initialisation, up to `ae.restarts` times; jobs that trained are never touched, so
  their results do not depend on it. A restart also starts the decoder's output bias at
  the logit of the job's mean pixel (`ae.output_bias="mean_logit"`): new keys alone
  left MNIST digit 1 seed 1 black on three tries, the mean-logit start trains it
  (BUILD_NOTES.md, "The method"). Where the mean image is a strong reconstruction
  (aligned objects: its MSE below `split_lib.ALIGNED_SHARE` of a flat image's), falling
  short of it is not that plateau and a new start costs a fit for nothing: such a job is
  not restarted, one line says so, and the detector's split warning says what to use.
  `names` label jobs in the progress lines.
  """
  config = programs.config
  names = names or [f"job {j}" for j in range(len(keys))]
  params = _fit_autoencoders(programs, pool, train_idx, train_count, keys, 0, ckpt_dir,
                             progress)
  aligned = mean_image_shares(programs, pool, train_idx, train_count) < split_lib.ALIGNED_SHARE
  for attempt in range(1, config.ae.restarts + 2):
    ratio = plateau_ratios(programs, params, pool, train_idx, train_count)
    above = ratio > config.ae.plateau_ratio
    if attempt == 1 and config.ae.restarts and np.any(above & aligned) and progress:
      progress.printer(
          "[autoencoder] not restarted: " + ", ".join(
              f"{names[j]} ({ratio[j]:.2f})" for j in np.flatnonzero(above & aligned)) +
          "; on aligned images the mean image is a strong reconstruction, so falling "
          "short of it is not the plateau a new start escapes")
    stuck = np.flatnonzero(above & ~aligned)
    if not len(stuck):
      break
    which = ", ".join(f"{names[j]} ({ratio[j]:.2f})" for j in stuck)
    if attempt > config.ae.restarts:
      if progress:
        progress.printer(
            f"[autoencoder] WARNING: still stuck after {config.ae.restarts} restart(s): "
            f"{which}; their split ranks images by SSIM against a near-constant output")
      break
    if progress:
      progress.printer(
          "[autoencoder] stuck on a plateau (reconstruction MSE / mean image's "
          f"MSE > {config.ae.plateau_ratio:g}): {which}; training them again from a new "
          f"start ({attempt} of {config.ae.restarts})")
    again = _fit_autoencoders(
        programs, pool, train_idx[stuck], train_count[stuck], np.asarray(keys)[stuck],
        attempt, ckpt_dir and f"{ckpt_dir}-restart{attempt}", progress)
    params = jax.tree.map(lambda p, q: _put_rows(p, stuck, q), params, again)
  return params


def _put_rows(x, rows, values):
  x = np.array(x)
  x[rows] = values
  return x


def _fit_autoencoders(programs, pool, train_idx, train_count, keys, attempt, ckpt_dir,
                      progress):
  config = programs.config
  programs.check_shape(pool)
  jobs = JobAxis(len(keys))
  # A restart starts at the mean pixel's logit; the training chunk is the same program.
  init = programs.ae_init["mean_logit" if attempt else config.ae.output_bias]
  phase_keys = _phase_keys(keys, train.PHASE_AE)
  if attempt:  # attempt 0 keeps the keys every earlier result was computed with
    phase_keys = _phase_keys(phase_keys, attempt)
  init_keys, step_keys = jax.vmap(lambda k: jax.random.split(k))(phase_keys).transpose(1, 0, 2)
  init_keys, step_keys, idx, count = jobs.put((init_keys, step_keys, train_idx, train_count))
  pool = jobs.replicate(pool)
  state = init(init_keys, idx, count, pool)
  state = loop.run_phase(
      "autoencoder", state,
      jobs.real_metrics(
          lambda s, start: programs.ae_chunk(s, start, step_keys, idx, count, pool)),
      total_steps=config.ae.steps, chunk_steps=config.ae.chunk_steps, ckpt_dir=ckpt_dir,
      progress=progress, learning_rate=config.ae.learning_rate)
  return jobs.take(state.params)


def plateau_ratios(programs: Programs, ae_params, pool, train_idx, train_count) -> np.ndarray:
  """`train.plateau_ratio` of every job on its first `ae.plateau_images` images: [J]."""
  programs.check_shape(pool)
  jobs = JobAxis(len(train_idx))
  k = min(programs.config.ae.plateau_images, np.asarray(train_idx).shape[1])
  count = np.minimum(np.asarray(train_count), k)
  params, idx, count = jobs.put((ae_params, np.asarray(train_idx)[:, :k], count))
  return jobs.take(programs.plateau(params, idx, count, jobs.replicate(pool)))


def mean_image_shares(programs: Programs, pool, train_idx, train_count) -> np.ndarray:
  """`split_lib.mean_image_share` of every job on the images its plateau ratio uses: [J]."""
  k = programs.config.ae.plateau_images
  pool = np.asarray(pool)
  return np.array([split_lib.mean_image_share(pool[idx[:min(k, n)]])
                   for idx, n in zip(np.asarray(train_idx), np.asarray(train_count))])


def ssim_of(programs: Programs, ae_params, pool, idx):
  """SSIM of each job's images `pool[idx[j]]` with their reconstruction: [J, len(idx[j])]."""
  programs.check_shape(pool)
  jobs = JobAxis(len(idx))
  params, idx = jobs.put((ae_params, idx))
  return jobs.take(programs.ssim(params, idx, jobs.replicate(pool)))


def split(config, ssim_train, train_idx, train_count):
  """Typical/atypical index arrays of every job from its training SSIM."""
  return jax.tree.map(np.asarray, jax.vmap(functools.partial(
      train.split_by_ssim, rho=config.rho))(jnp.asarray(ssim_train), jnp.asarray(train_idx),
                                            jnp.asarray(train_count)))


def fit_classifiers(programs: Programs, method: str, pool, train_idx, train_count,
                    splits: train.Split | None, keys, *, ckpt_dir: str | None = None,
                    progress=None, names=None, eval_images=None, eval_every: int = 0,
                    on_eval=None):
  """Trains one classifier per job with `method`'s losses; returns stacked params.

  With `names` (one per job) and `ckpt_dir`, each job's loss curves are saved there.
  With `eval_images` and `on_eval`, the classifiers score those images at
  `protocols.eval_steps(eval_every, train.steps)`, and `on_eval(step, scores [J, M])`
  receives them (`protocols`: checkpoints scored on the test split).
  """
  config = programs.config
  programs.check_shape(pool)
  chunk = programs.clf_chunk(method)
  jobs = JobAxis(len(keys))
  if splits is None:  # naive_nn: no split; the fields are unused but keep one shape.
    splits = train.Split(train_idx, train_count, train_idx, train_count)
  phase_keys = _phase_keys(keys, train.PHASE_CLASSIFIER)
  init_keys, step_keys = jax.vmap(lambda k: jax.random.split(k))(phase_keys).transpose(1, 0, 2)
  init_keys, step_keys, splits, idx, count = jobs.put(
      (init_keys, step_keys, splits, train_idx, train_count))
  pool = jobs.replicate(pool)
  state = programs.clf_init(init_keys)
  evaluate = None
  if eval_images is not None and on_eval is not None:
    programs.check_shape(eval_images)
    images = jobs.replicate(eval_images)
    scored = set(protocols.eval_steps(eval_every, config.train.steps))

    def evaluate(step, state):
      if step in scored:
        on_eval(step, jobs.take(programs.scores(state.params, images)))
  state = loop.run_phase(
      method, state,
      jobs.real_metrics(lambda s, start: chunk(s, start, step_keys, splits, idx, count, pool)),
      total_steps=config.train.steps, chunk_steps=config.train.chunk_steps,
      ckpt_dir=ckpt_dir, progress=progress, curve_jobs=names,
      learning_rate=config.train.learning_rate, evaluate=evaluate)
  return jobs.take(state.params)


def classifier_scores(programs: Programs, params, images) -> np.ndarray:
  """Anomaly scores [J, M] of every job's classifier on the same images."""
  programs.check_shape(images)
  jobs = JobAxis(len(jax.tree.leaves(params)[0]))
  return jobs.take(programs.scores(jobs.put(params), jobs.replicate(images)))
