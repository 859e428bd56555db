"""Runs one method over (normal class, seed) jobs of a dataset and writes records.

All jobs of a method are trained in one vmapped, sharded program (see `pipeline`).
The work dir holds `results.jsonl` (one record per job), `scores/` (test scores, for
ROC plots), `splits/` (training SSIM, for Figure 1), `autoencoders/` (splitting
autoencoders, shared by dsplit, nnwds, ssim and every rho) and `runs/` (orbax
checkpoints and the config of each run, for resuming).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time

import flax.serialization
import jax
import ml_collections
import numpy as np

from dsplit_jax import data
from dsplit_jax import layers
from dsplit_jax import loop
from dsplit_jax import metrics
from dsplit_jax import models
from dsplit_jax import pipeline
from dsplit_jax import records
from dsplit_jax import train
from dsplit_jax import workdir as workdir_lib

METHODS = ("dsplit", "naive_nn", "nnwds", "ssim", "dsvdd", "ocsvm", "hog_ocsvm", "iforest")
SPLIT_METHODS = ("dsplit", "nnwds", "ssim")
CLASSICAL_METHODS = ("ocsvm", "hog_ocsvm", "iforest")
# Fields that say which jobs run, not how: they stay out of the config hash.
_JOB_FIELDS = ("normal_classes", "seeds", "data_dir", "method", "job_map")
# Fields only dsplit reads: other methods' hashes ignore them, so an nnwds or naive_nn
# record stays valid (and is reused by the grid) whichever distance head is chosen.
_DSPLIT_FIELDS = (("model", "distance_head"), ("model", "latent"), ("train", "pairs"))
# Fields added after records and cached autoencoders were written: at the value that
# reproduces the earlier behaviour they stay out of every hash, so those stay valid.
_COMPATIBLE_DEFAULTS = {("ae", "output_bias"): "zero", ("model", "latent"): "dense"}


def _drop_compatible_defaults(d: dict) -> dict:
  for (section, field), value in _COMPATIBLE_DEFAULTS.items():
    if d.get(section, {}).get(field) == value:
      d[section] = {k: v for k, v in d[section].items() if k != field}
  return d


class ConfigError(ValueError):
  """Bad input found before any training starts."""


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks what can be checked without training; raises one-line ConfigError."""
  if config.dataset not in data.DATASETS:
    raise ConfigError(f"unknown dataset {config.dataset!r}; choose one of "
                      f"{', '.join(data.DATASETS)}")
  validate_training(config)
  n = data.num_classes(config.dataset, config.data_dir or None)
  if not config.normal_classes:
    raise ConfigError("no normal class given")
  for c in config.normal_classes:
    if not 0 <= int(c) < n:
      raise ConfigError(f"normal class {c} out of range for {config.dataset} "
                        f"(classes 0..{n - 1})")


def validate_training(config: ml_collections.ConfigDict) -> None:
  """The checks that do not depend on a dataset (also used for one's own images)."""
  if config.model.distance_head not in models.DISTANCE_HEADS:
    raise ConfigError(f"model.distance_head must be one of {', '.join(models.DISTANCE_HEADS)}, "
                      f"got {config.model.distance_head!r}")
  if config.model.get("latent", "dense") not in models.LATENTS:
    raise ConfigError(f"model.latent must be one of {', '.join(models.LATENTS)}, "
                      f"got {config.model.latent!r}")
  if config.train.pairs not in train.PAIRINGS:
    raise ConfigError(f"train.pairs must be one of {', '.join(train.PAIRINGS)}, "
                      f"got {config.train.pairs!r}")
  if config.ae.output_bias not in ("zero", "mean_logit"):
    raise ConfigError(f"ae.output_bias must be zero or mean_logit, got {config.ae.output_bias!r}")
  if config.job_map not in pipeline.JOB_MAPS:
    raise ConfigError(f"job_map must be one of {', '.join(pipeline.JOB_MAPS)}, "
                      f"got {config.job_map!r}")
  if config.model.conv_impl not in layers.CONV_IMPLS:
    raise ConfigError(f"model.conv_impl must be one of {', '.join(layers.CONV_IMPLS)}, "
                      f"got {config.model.conv_impl!r}")
  if config.method not in METHODS:
    raise ConfigError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
  if not 0 < config.rho < 100:
    raise ConfigError(f"rho must be in (0, 100) percent, got {config.rho}")
  if not config.seeds or any(int(s) < 0 for s in config.seeds):
    raise ConfigError(f"seeds must be non-negative integers, got {tuple(config.seeds)}")
  if config.image_size % 4 or config.image_size < 16:
    raise ConfigError(f"image_size must be a multiple of 4 and >= 16, got {config.image_size}")
  if config.ae.restarts < 0 or config.ae.plateau_images < 1 or config.ae.plateau_ratio <= 0:
    raise ConfigError(f"ae.restarts must be >= 0, ae.plateau_images >= 1 and "
                      f"ae.plateau_ratio > 0, got {config.ae.restarts}, "
                      f"{config.ae.plateau_images}, {config.ae.plateau_ratio}")
  for phase in ("ae", "train"):
    steps, chunk = config[phase].steps, config[phase].chunk_steps
    if steps <= 0 or chunk <= 0 or steps % chunk:
      raise ConfigError(f"{phase}.steps={steps} must be a positive multiple of "
                        f"{phase}.chunk_steps={chunk}")


def hashed_fields(config: ml_collections.ConfigDict) -> dict:
  """The config fields that change a job's result under its method."""
  d = _drop_compatible_defaults(
      {k: v for k, v in config.to_dict().items() if k not in _JOB_FIELDS})
  if config.method != "dsplit":
    for section, field in _DSPLIT_FIELDS:
      d.get(section, {}).pop(field, None)
  return d


def config_hash(config: ml_collections.ConfigDict) -> str:
  return _digest(hashed_fields(config))


def _digest(d: dict) -> str:
  return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:12]


@dataclasses.dataclass
class Jobs:
  """Jobs (class, seed) over one shared image pool of their training images."""
  dataset: str
  classes: list[int]
  seeds: list[int]
  pool: np.ndarray                 # float32 [P, H, W, C] in [0, 1]
  pool_split_index: np.ndarray     # [P] position of each pool image in the train split
  train_idx: np.ndarray            # int32 [J, Nmax] pool indices of each job's images
  train_count: np.ndarray          # int32 [J]
  test_images: np.ndarray | None   # float32 [M, H, W, C], the whole test split
  test_classes: np.ndarray | None  # [M] original labels

  @property
  def keys(self):
    return pipeline.job_keys(self.seeds, self.classes)

  def subset(self, rows) -> "Jobs":
    return dataclasses.replace(self, classes=[self.classes[r] for r in rows],
                               seeds=[self.seeds[r] for r in rows],
                               train_idx=self.train_idx[rows], train_count=self.train_count[rows])


def load_jobs(config: ml_collections.ConfigDict) -> Jobs:
  """Reads the dataset once and lays out every (class, seed) job over it."""
  data_dir = config.data_dir or None
  size = config.image_size if config.dataset == "folder" else None
  images, labels = data.load(config.dataset, "train", data_dir, image_size=size)
  classes = sorted({int(c) for c in config.normal_classes})
  rows = [np.flatnonzero(labels == c) for c in classes]
  for c, r in zip(classes, rows):
    if len(r) < 4:
      raise ConfigError(f"normal class {c} of {config.dataset} has {len(r)} training images; "
                        "at least 4 are needed")
  pool_rows = np.concatenate(rows)
  pool = images[pool_rows].astype(np.float32) / 255.0
  starts = np.cumsum([0] + [len(r) for r in rows])
  job_classes = [c for c in classes for _ in config.seeds]
  job_seeds = [int(s) for _ in classes for s in config.seeds]
  counts = np.array([len(rows[classes.index(c)]) for c in job_classes], np.int32)
  idx = np.zeros((len(job_classes), counts.max()), np.int32)
  for j, c in enumerate(job_classes):
    k = classes.index(c)
    idx[j, :counts[j]] = np.arange(starts[k], starts[k + 1])
  try:
    test_images, test_classes = data.load(config.dataset, "test", data_dir, image_size=size)
    test_images = test_images.astype(np.float32) / 255.0
  except data.DataError:
    if config.dataset != "folder":
      raise
    test_images = test_classes = None  # A flat folder of normal images has no test split.
  return Jobs(config.dataset, job_classes, job_seeds, pool, pool_rows, idx, counts,
              test_images, test_classes)


# ------------------------------------------------------------------ fit and score

def _ae_dir(workdir, config, image_shape):
  """Autoencoders depend on these fields only, so methods and classifier settings share them."""
  ae_fields = dict(dataset=config.dataset, image_size=config.image_size,
                   ae=_drop_compatible_defaults({"ae": config.ae.to_dict()})["ae"],
                   conv_features=config.model.ae_conv_features,
                   code_features=config.model.ae_code_features)  # not conv_impl: same function
  return os.path.join(workdir, "autoencoders", f"{config.dataset}-{_digest(ae_fields)}-{'x'.join(map(str, image_shape))}")


def _autoencoders(config, jobs: Jobs, workdir, progress):
  """Splitting autoencoders, trained only for jobs that have none saved yet."""
  model = train.make_autoencoder(config, jobs.pool.shape[1:])
  template = model.init(jax.random.PRNGKey(0), jobs.pool[:1])
  ae_dir = _ae_dir(workdir, config, jobs.pool.shape[1:]) if workdir else None
  paths = [os.path.join(ae_dir, f"c{c}-s{s}.msgpack") if ae_dir else None
           for c, s in zip(jobs.classes, jobs.seeds)]
  trained = {j: _load_autoencoder(template, p, progress) for j, p in enumerate(paths)
             if p and os.path.exists(p)}
  missing = [j for j in range(len(paths)) if trained.get(j) is None]
  if missing:
    sub = jobs.subset(missing)
    tag = "-".join(f"c{c}s{s}" for c, s in zip(sub.classes, sub.seeds))
    ckpt = os.path.join(ae_dir, "ckpt-" + hashlib.sha256(tag.encode()).hexdigest()[:10]) if ae_dir else None
    params = pipeline.fit_autoencoders(config, jobs.pool, sub.train_idx, sub.train_count,
                                       sub.keys, ckpt_dir=ckpt, progress=progress,
                                       names=[f"class {c} seed {s}"
                                              for c, s in zip(sub.classes, sub.seeds)])
    for k, j in enumerate(missing):
      trained[j] = jax.tree.map(lambda x: x[k], params)
      if paths[j]:
        _atomic_write(paths[j], flax.serialization.to_bytes(trained[j]))
  return jax.tree.map(lambda *xs: np.stack(xs), *[trained[j] for j in range(len(paths))])


def _load_autoencoder(template, path, progress):
  """Cached params, or None (that job is trained again) when the file cannot be read;
  such a file is set aside, not deleted."""
  try:
    with open(path, "rb") as f:
      params = flax.serialization.from_bytes(template, f.read())
    if jax.tree.structure(params) != jax.tree.structure(template) or any(
        np.shape(a) != np.shape(b) for a, b in zip(jax.tree.leaves(params),
                                                   jax.tree.leaves(template))):
      raise ValueError("parameter shapes differ from this config's autoencoder")
    return params
  except Exception as e:  # msgpack raises many types for a truncated or garbled file.
    aside = workdir_lib.set_aside(path)
    (progress.printer if progress else print)(
        f"[autoencoder] cached {path} cannot be read ({type(e).__name__}: "
        f"{' '.join(str(e).split())[:120]}); set aside as {aside}; training that job again")
    return None


def _writer() -> bool:
  """On a multi-host run (jax.distributed) every process computes every result; only
  process 0 writes them, so records are not duplicated."""
  return jax.process_index() == 0


def _atomic_write(path, payload: bytes):
  if not _writer():
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(payload)
  os.replace(tmp, path)


def fit(config, method: str, jobs: Jobs, *, workdir: str | None = None,
        run_dir: str | None = None, progress=None) -> dict:
  """Trains `method` for every job; returns what scoring needs (stacked over jobs)."""
  fitted = {}
  if method in SPLIT_METHODS:
    fitted["ae_params"] = _autoencoders(config, jobs, workdir, progress)
    fitted["ssim_train"] = pipeline.ssim_of(config, fitted["ae_params"], jobs.pool,
                                            jobs.train_idx)
  if method in train.CLASSIFIER_METHODS:
    splits = (pipeline.split(config, fitted["ssim_train"], jobs.train_idx, jobs.train_count)
              if method != "naive_nn" else None)
    if splits is not None and progress:
      progress.printer(split_line(config.rho, int(splits.atypical_count[0]),
                                  int(jobs.train_count[0])))
    fitted["params"] = pipeline.fit_classifiers(
        config, method, jobs.pool, jobs.train_idx, jobs.train_count, splits, jobs.keys,
        ckpt_dir=run_dir, progress=progress,
        names=[f"c{c}s{s}" for c, s in zip(jobs.classes, jobs.seeds)])
  return fitted


def split_line(rho: float, used: int, count: int) -> str:
  """The split size actually used (`train.split_by_ssim` keeps it within [2, count - 2]),
  with a note when that differs from rho% of the images."""
  line = f"[split] rho={rho:g}%: {used} of {count} images atypical (first job)"
  asked = rho / 100 * count
  if used != int(np.floor(asked + 0.5)):
    line += (f"; rho asks for {asked:.3g}, kept within [2, {max(count - 2, 2)}] so that both "
             "pair losses have pairs")
  return line


def score(config, method: str, fitted: dict, images: np.ndarray) -> np.ndarray:
  """Anomaly scores [J, M], higher = more abnormal."""
  if method in train.CLASSIFIER_METHODS:
    return pipeline.classifier_scores(config, fitted["params"], images)
  if method == "ssim":
    num_jobs = len(jax.tree.leaves(fitted["ae_params"])[0])
    idx = np.tile(np.arange(len(images), dtype=np.int32), (num_jobs, 1))
    return -pipeline.ssim_of(config, fitted["ae_params"], images, idx)
  raise ValueError(f"{method} has no fitted scorer")


def _baseline_scores(config, method, jobs: Jobs, progress) -> np.ndarray:
  from dsplit_jax.baselines import classical, dsvdd  # Heavy imports only when needed.
  if method in CLASSICAL_METHODS:
    out = []
    for c, s, idx, n in zip(jobs.classes, jobs.seeds, jobs.train_idx, jobs.train_count):
      train_images, test_images = jobs.pool[idx[:n]], jobs.test_images
      if config.classical.preprocessing == "gcn_minmax":
        train_images, test_images = data.preprocessing.gcn_minmax(train_images, test_images)
      task = data.OneClassTask(jobs.dataset, c, train_images, test_images,
                               (jobs.test_classes != c).astype(np.int32), jobs.test_classes, [])
      out.append(classical.run(method, task, config.classical, s))
      if progress:
        progress.printer(f"[{method}] class {c} seed {s} done")
    return np.stack(out)
  return dsvdd.run(config, jobs, progress=progress)


# ------------------------------------------------------------------------- run

def check_run_dir(run_dir, config):
  """A run dir belongs to one config: resuming with another would mix two runs."""
  path = os.path.join(run_dir, "config.json")
  current = json.loads(json.dumps(dict(hashed_fields(config), method=config.method),
                                  default=list))
  saved = None
  if os.path.exists(path):
    try:
      with open(path) as f:
        saved = json.load(f)
      if not isinstance(saved, dict):
        raise ValueError(f"a JSON {type(saved).__name__}, not an object")
    except ValueError as e:  # Garbled (a torn write, an edit). Its checkpoints are kept:
      saved = None           # the run-dir name holds the config hash.
      aside = workdir_lib.set_aside(path)
      print(f"warning: {path} is not a saved config ({e}); set aside as {aside} and "
            "written again")
  if saved is not None:
    if saved != current:
      diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
      raise ConfigError(f"work dir {run_dir} holds a checkpoint of a different config "
                        f"(differs in: {', '.join(diff)}); use another --workdir or delete it")
  else:
    os.makedirs(run_dir, exist_ok=True)
    _atomic_write(path, json.dumps(current, indent=2, sort_keys=True).encode())


def run(config: ml_collections.ConfigDict, workdir: str, progress=None) -> list[dict]:
  """Trains and scores `config.method` on every (normal class, seed); appends records.

  Jobs that already have a record with the same config are skipped, and a killed run
  resumes from its checkpoints, so running the same command again finishes the work.
  """
  validate(config)
  progress = progress or loop.Progress()
  jobs = load_jobs(config)
  data_files = data.describe_files(list(dict.fromkeys(  # which copy of the data it was
      f for split in ("train", "test")
      for f in data.source_files(config.dataset, split, config.data_dir or None))))
  if jobs.test_images is None:
    raise ConfigError(f"{config.dataset} in {config.data_dir} has no test split to compute "
                      "an AUC on; use dsplit_jax.OneClassClassifier or --score_dir")
  results = os.path.join(workdir, "results.jsonl")
  chash = config_hash(config)
  key = dict(dataset=config.dataset, method=config.method, rho=float(config.rho),
             config_hash=chash)
  todo = [j for j, (c, s) in enumerate(zip(jobs.classes, jobs.seeds))
          if not records.has_record(results, normal_class=c, seed=s, **key)]
  done = [r for r in records.read_records(results, **key)
          if (r["normal_class"], r["seed"]) in set(zip(jobs.classes, jobs.seeds))]
  if not todo:
    progress.printer(f"[{config.method}] all {len(jobs.classes)} jobs already have "
                     f"records in {results}")
    return done
  jobs = jobs.subset(todo)
  tag = (f"{config.dataset}-{config.method}-rho{config.rho:g}-"
         f"c{'_'.join(map(str, sorted(set(jobs.classes))))}-"
         f"s{'_'.join(map(str, sorted(set(jobs.seeds))))}-{chash}")
  run_dir = os.path.join(workdir, "runs", tag)
  check_run_dir(run_dir, config)
  progress.printer(f"[{config.method}] {len(jobs.classes)} jobs (classes "
                   f"{sorted(set(jobs.classes))} x seeds {sorted(set(jobs.seeds))}) on "
                   f"{jax.device_count()} {jax.devices()[0].platform} device(s)")
  start = time.time()
  if config.method not in train.CLASSIFIER_METHODS + ("ssim",):
    scores = _baseline_scores(config, config.method, jobs, progress)
  else:
    fitted = fit(config, config.method, jobs, workdir=workdir, run_dir=run_dir,
                 progress=progress)
    scores = score(config, config.method, fitted, jobs.test_images)
    if "ssim_train" in fitted:
      for j, (c, s) in enumerate(zip(jobs.classes, jobs.seeds)):
        n = jobs.train_count[j]
        _save_npz(os.path.join(workdir, "splits", f"{config.dataset}-c{c}-s{s}.npz"),
                  ssim_train=fitted["ssim_train"][j, :n],
                  train_split_index=jobs.pool_split_index[jobs.train_idx[j, :n]])
  wall = time.time() - start
  new = []
  final = (loop.final_losses(run_dir, config.method)
           if config.method in train.CLASSIFIER_METHODS else {})
  for j, (c, s) in enumerate(zip(jobs.classes, jobs.seeds)):
    labels = (jobs.test_classes != c).astype(np.int32)
    auc = metrics.auc(labels, scores[j])
    _save_npz(os.path.join(workdir, "scores", scores_name(config.dataset, c, config.method,
                                                          config.rho, s, chash)),
              scores=scores[j], labels=labels)
    extra = {}
    if config.method in train.CLASSIFIER_METHODS:
      extra["final_losses"] = final.get(f"c{c}s{s}", {})
    rec = records.make_record(
        dataset=config.dataset, normal_class=c, method=config.method, seed=s,
        rho=float(config.rho), auc=auc, config=config, wall_time_s=wall / len(jobs.classes),
        config_hash=chash, preset=config.preset, program_wall_time_s=wall,
        program_jobs=len(jobs.classes), job_map=pipeline.job_map(config),
        data_files=data_files, **extra)
    if _writer():
      records.append_record(results, rec)
    new.append(rec)
    progress.printer(f"[{config.method}] {config.dataset} class {c} seed {s}: "
                     f"AUC {100 * auc:.2f}")
  return done + new


def scores_name(dataset, cls, method, rho, seed, chash) -> str:
  """Test-score file of one job; experiments.render parses it back (SCORES_NAME)."""
  return f"{dataset}-c{cls}-{method}-rho{float(rho):g}-s{seed}-{chash}.npz"


def _save_npz(path, **arrays):
  if not _writer():
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)
