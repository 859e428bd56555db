"""The method's phases over a stack of jobs (`data.Jobs`): autoencoder, SSIM split,
classifier, scores.

Each function takes the jobs (one job = one normal class and seed over the shared image
pool), pads the job axis to a multiple of the device count, shards it over a `Mesh` of
all local devices, and returns numpy arrays for the real jobs. Padded jobs repeat the
last real job and are dropped, so they never change a result.

The compiled programs are built once per run by `make_programs(config, image_shape)`;
the caller holds them and passes them to every phase:

  programs = pipeline.make_programs(config, jobs.pool.shape[1:])
  ae = pipeline.fit_autoencoders(programs, jobs)

A training phase is a `Phase`: its first state, compiled chunk and inputs on the
devices, which `loop.run_phase` runs with the caller's checkpoints and progress.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

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
from dsplit_jax.data import Jobs


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


def over_jobs(fn, in_axes, *, donate: bool = False, mapping: str = "vmap"):
  """jit(vmap(fn)) whose job axis is split over all local devices with `shard_map`.

  Under `mapping="map"` (see `job_map`) fn is a `sequential_vmap`: the vmap runs it one
  job after another (`lax.map`). Each device runs the mapped function on its own slice
  of jobs, so a job's numbers do not depend on how many devices there are (XLA's
  automatic partitioning of the same vmapped program gave different SSIMs on 4 fake CPU
  devices). `in_axes`: 0 for per-job arguments, None for shared ones (replicated).
  """
  if mapping not in ("vmap", "map"):
    raise ValueError(f"job_map must be auto, map or vmap, got {mapping!r}")
  # The compiled program keeps the function's name (sequential_vmap's wrapper has none):
  # compilation events and profiles name what was compiled.
  name = getattr(getattr(fn, "func", fn), "__name__", "job_fn")
  if mapping == "map":
    fn = jax.custom_batching.sequential_vmap(fn)
  vmapped = jax.vmap(fn, in_axes=in_axes)
  if jax.device_count() > 1:
    specs = tuple(P("jobs") if a == 0 else P() for a in in_axes)
    vmapped = jax.shard_map(vmapped, mesh=_mesh(), in_specs=specs, out_specs=P("jobs"),
                            check_vma=False)
  mapped = functools.wraps(vmapped)(lambda *args: vmapped(*args))
  mapped.__name__ = mapped.__qualname__ = name
  return jax.jit(mapped, donate_argnums=(0,) if donate else ())


def compiled_chunk(body, inputs: dict, steps: int, mode: str, mapping: str = "vmap"):
  """`chunk(state, start, *inputs)`: `steps` steps of `body(state, step, **inputs)` of
  every job, jit(vmap(.)) over jobs (`over_jobs`).

  `inputs` names body's inputs after (state, step), in the chunk's order, each with its
  job axis (0: one per job, None: shared by all, the image pool).
  mode "scan": the whole chunk is one compiled `lax.scan` of `body` (the default). mode
  "host": one compiled call per step, the batch still drawn on the device from the step
  number; the fast path for lax.conv on XLA:CPU, whose gradients run about 10x slower
  inside a while loop (BUILD_NOTES.md, "Performance").
  Both modes donate the state (one copy of it on the device, not two): `loop.run_phase`
  never reads a state after passing it on, and orbax copies a saved state to the host
  before `save` returns (BUILD_NOTES.md, "Performance").
  """
  names = tuple(inputs)
  in_axes = (0, None) + tuple(inputs.values())
  if mode == "scan":
    def chunk(state, start, *values):
      return jax.lax.scan(functools.partial(body, **dict(zip(names, values))), state,
                          start + jnp.arange(steps))
    return over_jobs(chunk, in_axes, donate=True, mapping=mapping)
  if mode != "host":
    raise ValueError(f"loop mode must be scan or host, got {mode!r}")
  step_fn = over_jobs(body, in_axes, donate=True, mapping=mapping)

  def run_host(state, start, *values):
    history = []
    for t in range(int(start), int(start) + steps):
      state, metrics = step_fn(state, np.int32(t), *values)
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
        functools.partial(train.ae_step, model=ae_model, tx=ae_tx, config=config),
        dict(key=0, train_idx=0, train_count=0, pool=None), config.ae.chunk_steps,
        self.mode, self.job_map)
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
          dict(key=0, split=0, train_idx=0, train_count=0, pool=None),
          self.config.train.chunk_steps, self.mode, self.job_map)
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


def _num_jobs(jobs: Jobs) -> int:
  return len(jobs.classes)


@dataclasses.dataclass(frozen=True)
class Phase:
  """A training phase of every job, placed on the devices: `loop.run_phase(**loop_args)`
  runs it (with the caller's `ckpt_dir`, `progress`, ...), `take` keeps the real jobs."""
  loop_args: dict   # name, state, chunk_fn, inputs, steps, learning rate, evaluate
  axis: JobAxis

  def take(self, tree):
    return self.axis.take(tree)


def _phase(name, state, chunk, inputs, phase_config, axis, evaluate=None) -> Phase:
  return Phase(dict(name=name, state=state, chunk_fn=chunk, inputs=inputs,
                    total_steps=phase_config.steps, chunk_steps=phase_config.chunk_steps,
                    learning_rate=phase_config.learning_rate, real_jobs=axis.num_jobs,
                    evaluate=evaluate), axis)


def _init_and_step_keys(keys):
  """Each job's phase key -> (its initialisation's key, its steps' key)."""
  return jax.vmap(lambda k: jax.random.split(k))(keys).transpose(1, 0, 2)


def autoencoder_phase(programs: Programs, jobs: Jobs, attempt: int = 0) -> Phase:
  """The autoencoders' training of `jobs`; `attempt` > 0: a restart (`fit_autoencoders`)."""
  config = programs.config
  programs.check_shape(jobs.pool)
  axis = JobAxis(_num_jobs(jobs))
  # A restart starts at the mean pixel's logit; the training chunk is the same program.
  init = programs.ae_init["mean_logit" if attempt else config.ae.output_bias]
  keys = _phase_keys(jobs.keys, train.PHASE_AE)
  if attempt:  # attempt 0 keeps the keys every earlier result was computed with
    keys = _phase_keys(keys, attempt)
  init_keys, step_keys = _init_and_step_keys(keys)
  init_keys, step_keys, idx, count = axis.put((init_keys, step_keys, jobs.train_idx,
                                               jobs.train_count))
  pool = axis.replicate(jobs.pool)
  return _phase("autoencoder", init(init_keys, idx, count, pool), programs.ae_chunk,
                (step_keys, idx, count, pool), config.ae, axis)


def fit_autoencoders(programs: Programs, jobs: Jobs, *, ckpt_dir: str | None = None,
                     progress=None):
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
  """
  config = programs.config
  names = [f"class {c} seed {s}" for c, s in zip(jobs.classes, jobs.seeds)]
  aligned = mean_image_shares(programs, jobs) < split_lib.ALIGNED_SHARE
  params, todo = None, np.arange(_num_jobs(jobs))
  for attempt in range(config.ae.restarts + 1):
    phase = autoencoder_phase(programs, jobs.subset(todo), attempt)
    ckpt = f"{ckpt_dir}-restart{attempt}" if ckpt_dir and attempt else ckpt_dir
    state = loop.run_phase(**phase.loop_args, ckpt_dir=ckpt, progress=progress)
    trained = phase.take(state.params)
    params = trained if params is None else jax.tree.map(
        lambda p, q: _put_rows(p, todo, q), params, trained)
    ratio = plateau_ratios(programs, params, jobs)
    above = ratio > config.ae.plateau_ratio
    if attempt == 0 and config.ae.restarts and np.any(above & aligned) and progress:
      progress.printer(
          "[autoencoder] not restarted: " + ", ".join(
              f"{names[j]} ({ratio[j]:.2f})" for j in np.flatnonzero(above & aligned)) +
          "; on aligned images the mean image is a strong reconstruction, so falling "
          "short of it is not the plateau a new start escapes")
    todo = np.flatnonzero(above & ~aligned)
    if not len(todo):
      break
    which = ", ".join(f"{names[j]} ({ratio[j]:.2f})" for j in todo)
    if attempt == config.ae.restarts:
      if progress:
        progress.printer(
            f"[autoencoder] WARNING: still stuck after {config.ae.restarts} restart(s): "
            f"{which}; their split ranks images by SSIM against a near-constant output")
      break
    if progress:
      progress.printer(
          "[autoencoder] stuck on a plateau (reconstruction MSE / mean image's "
          f"MSE > {config.ae.plateau_ratio:g}): {which}; training them again from a new "
          f"start ({attempt + 1} of {config.ae.restarts})")
  return params


def _put_rows(x, rows, values):
  x = np.array(x)
  x[rows] = values
  return x


def plateau_ratios(programs: Programs, ae_params, jobs: Jobs) -> np.ndarray:
  """`train.plateau_ratio` of every job on its first `ae.plateau_images` images: [J]."""
  programs.check_shape(jobs.pool)
  axis = JobAxis(_num_jobs(jobs))
  k = min(programs.config.ae.plateau_images, np.asarray(jobs.train_idx).shape[1])
  count = np.minimum(np.asarray(jobs.train_count), k)
  params, idx, count = axis.put((ae_params, np.asarray(jobs.train_idx)[:, :k], count))
  return axis.take(programs.plateau(params, idx, count, axis.replicate(jobs.pool)))


def _ssim(programs: Programs, ae_params, pool, idx):
  programs.check_shape(pool)
  axis = JobAxis(len(idx))
  params, idx = axis.put((ae_params, idx))
  return axis.take(programs.ssim(params, idx, axis.replicate(pool)))


def mean_image_shares(programs: Programs, jobs: Jobs) -> np.ndarray:
  """`split_lib.mean_image_share` of every job on the images its plateau ratio uses: [J]."""
  k = programs.config.ae.plateau_images
  pool = np.asarray(jobs.pool)
  return np.array([split_lib.mean_image_share(pool[idx[:min(k, n)]]) for idx, n in
                   zip(np.asarray(jobs.train_idx), np.asarray(jobs.train_count))])


def ssim_of(programs: Programs, ae_params, jobs: Jobs):
  """SSIM of each job's training images with their reconstruction: [J, Nmax]."""
  return _ssim(programs, ae_params, jobs.pool, jobs.train_idx)


def images_ssim(programs: Programs, ae_params, images):
  """SSIM of the same images with every job's reconstruction of them: [J, M]."""
  num_jobs = len(jax.tree.leaves(ae_params)[0])
  return _ssim(programs, ae_params, images,
               np.tile(np.arange(len(images), dtype=np.int32), (num_jobs, 1)))


def split(config, ssim_train, jobs: Jobs) -> train.Split:
  """Typical/atypical index arrays of every job from its training SSIM."""
  return jax.tree.map(np.asarray, jax.vmap(functools.partial(
      train.split_by_ssim, rho=config.rho))(jnp.asarray(ssim_train),
                                            jnp.asarray(jobs.train_idx),
                                            jnp.asarray(jobs.train_count)))


def classifier_phase(programs: Programs, jobs: Jobs, method: str,
                     splits: train.Split | None, *, on_eval=None) -> Phase:
  """The classifiers' training of `jobs` with `method`'s losses on their `splits`.

  With `on_eval`, the classifiers score `jobs.test_images` at
  `protocols.eval_steps(eval.every, train.steps)`, and `on_eval(step, scores [J, M])`
  receives them (`protocols`: checkpoints scored on the test split).
  """
  config = programs.config
  programs.check_shape(jobs.pool)
  axis = JobAxis(_num_jobs(jobs))
  if splits is None:  # naive_nn: no split; the fields are unused but keep one shape.
    splits = train.Split(jobs.train_idx, jobs.train_count, jobs.train_idx, jobs.train_count)
  init_keys, step_keys = _init_and_step_keys(_phase_keys(jobs.keys, train.PHASE_CLASSIFIER))
  init_keys, step_keys, splits, idx, count = axis.put(
      (init_keys, step_keys, splits, jobs.train_idx, jobs.train_count))
  pool = axis.replicate(jobs.pool)
  evaluate = None
  if on_eval is not None:
    programs.check_shape(jobs.test_images)
    images = axis.replicate(jobs.test_images)
    scored = set(protocols.eval_steps(config.eval.every, config.train.steps))

    def evaluate(step, state):
      if step in scored:
        on_eval(step, axis.take(programs.scores(state.params, images)))
  return _phase(method, programs.clf_init(init_keys), programs.clf_chunk(method),
                (step_keys, splits, idx, count, pool), config.train, axis, evaluate)


def fit_classifiers(programs: Programs, jobs: Jobs, method: str, splits: train.Split | None,
                    *, ckpt_dir: str | None = None, progress=None, on_eval=None):
  """Trains one classifier per job (`classifier_phase`); returns stacked params. With
  `ckpt_dir`, each job's loss curves are saved there."""
  phase = classifier_phase(programs, jobs, method, splits, on_eval=on_eval)
  state = loop.run_phase(**phase.loop_args, ckpt_dir=ckpt_dir, progress=progress,
                         curve_jobs=jobs.names)
  return phase.take(state.params)


def classifier_scores(programs: Programs, params, images) -> np.ndarray:
  """Anomaly scores [J, M] of every job's classifier on the same images."""
  programs.check_shape(images)
  axis = JobAxis(len(jax.tree.leaves(params)[0]))
  return axis.take(programs.scores(axis.put(params), axis.replicate(images)))
