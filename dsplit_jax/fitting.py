"""Fits a method for every job of a `data.Jobs` and scores images with what it fitted.

What a method does is read from `methods.METHODS`: the splitting autoencoder (cached
in the work dir and shared by every method and rho that needs it), the SSIM split,
the classifier, or a baseline that fits and scores in one go. The device work is
`pipeline`'s, through the `pipeline.Programs` a run builds once (`fit_and_score`) and
passes to `fit` and `score`; this module only chooses it.
"""

from __future__ import annotations

import os

import flax.serialization
import jax
import numpy as np

from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import methods
from dsplit_jax import pipeline
from dsplit_jax import protocols
from dsplit_jax import records
from dsplit_jax import workdir as workdir_lib
from dsplit_jax.baselines import classical
from dsplit_jax.baselines import dsvdd


def fit(programs: pipeline.Programs, method: str, jobs: data.Jobs, *,
        workdir: str | None = None, run_dir: str | None = None, progress=None) -> dict:
  """Trains `method` for every job with `programs` (`pipeline.make_programs` of the
  run's config and image shape); returns what scoring needs (stacked over jobs):
  `ae_params`, `ssim_train` and `plateau_ratio` where it needs the split, `params` of
  the classifier, and `step_scores` (step -> test scores [J, M] of the classifiers at
  their checkpoints) where `config.eval` asks for them (`protocols`)."""
  config = programs.config
  spec = methods.get(method)
  fitted = {}
  if spec.needs_split:
    fitted["ae_params"] = _autoencoders(programs, jobs, workdir, progress)
    fitted["ssim_train"] = pipeline.ssim_of(programs, fitted["ae_params"], jobs.pool,
                                            jobs.train_idx)
    # Kept in the records, so a table can show that no split came from a stuck
    # autoencoder (ratio > ae.plateau_ratio; BUILD_NOTES.md, "The method").
    fitted["plateau_ratio"] = pipeline.plateau_ratios(
        programs, fitted["ae_params"], jobs.pool, jobs.train_idx, jobs.train_count)
  if spec.trains_classifier:
    splits = (pipeline.split(config, fitted["ssim_train"], jobs.train_idx, jobs.train_count)
              if spec.labels_from_split else None)
    if splits is not None and progress:
      progress.printer(split_line(config.rho, int(splits.atypical_count[0]),
                                  int(jobs.train_count[0])))
    step_scores = {}
    evaluating = (protocols.needs_checkpoint_scores(config.eval) and
                  jobs.test_images is not None)

    def on_eval(step, scores):
      step_scores[step] = scores
      if run_dir:  # a resumed run reads the steps it evaluated before from here
        records.save_npz(records.eval_scores_path(run_dir, method, step), scores=scores)
    fitted["params"] = pipeline.fit_classifiers(
        programs, method, jobs.pool, jobs.train_idx, jobs.train_count, splits, jobs.keys,
        ckpt_dir=run_dir, progress=progress, names=jobs.names,
        eval_images=jobs.test_images if evaluating else None,
        eval_every=config.eval.every, on_eval=on_eval if evaluating else None)
    if evaluating:
      fitted["step_scores"] = {**(records.read_eval_scores(run_dir, method) if run_dir
                                  else {}), **step_scores}
  return fitted


def _classifier_scores(programs, fitted, images):
  return pipeline.classifier_scores(programs, fitted["params"], images)


def _ssim_scores(programs, fitted, images):
  num_jobs = len(jax.tree.leaves(fitted["ae_params"])[0])
  idx = np.tile(np.arange(len(images), dtype=np.int32), (num_jobs, 1))
  return -pipeline.ssim_of(programs, fitted["ae_params"], images, idx)


# Anomaly scores of `fit`'s networks, by `methods.Scorer.name` (those with fitted_params).
SCORES = {"classifier": _classifier_scores, "ssim": _ssim_scores}


def score(programs: pipeline.Programs, method: str, fitted: dict,
          images: np.ndarray) -> np.ndarray:
  """Anomaly scores [J, M] of `fit`'s networks, higher = more abnormal."""
  scorer = methods.get(method).scorer
  if scorer not in SCORES:
    raise ValueError(f"{method} has no fitted scorer")
  return SCORES[scorer](programs, fitted, images)


def _fit_networks_and_score(config, jobs, *, workdir, run_dir, progress):
  programs = pipeline.make_programs(config, jobs.pool.shape[1:])  # this run's, held here
  fitted = fit(programs, config.method, jobs, workdir=workdir, run_dir=run_dir,
               progress=progress)
  return fitted, score(programs, config.method, fitted, jobs.test_images)


def _classical_run(config, jobs, *, workdir, run_dir, progress):
  del workdir, run_dir  # fitted and scored in one go; nothing cached
  return {}, _classical_scores(config, jobs, progress)


def _dsvdd_run(config, jobs, *, workdir, run_dir, progress):
  del workdir, run_dir  # Deep SVDD trains in one go; nothing cached
  return {}, dsvdd.run(config, jobs, progress=progress)


# How a run fits and scores, by `methods.Scorer.name`: (fitted, test scores [J, M]).
RUNS = {"classifier": _fit_networks_and_score, "ssim": _fit_networks_and_score,
        "dsvdd": _dsvdd_run, "classical": _classical_run}


def fit_and_score(config, jobs: data.Jobs, *, workdir, run_dir, progress) -> tuple[dict, np.ndarray]:
  """(fitted, test scores [J, M]) of `config.method` on every job."""
  return RUNS[methods.get(config.method).scorer](config, jobs, workdir=workdir,
                                                 run_dir=run_dir, progress=progress)


def _classical_scores(config, jobs: data.Jobs, progress) -> np.ndarray:
  out = []
  for c, s, idx, n in zip(jobs.classes, jobs.seeds, jobs.train_idx, jobs.train_count):
    train_images, test_images = jobs.pool[idx[:n]], jobs.test_images
    if config.classical.preprocessing == "gcn_minmax":
      train_images, test_images = data.preprocessing.gcn_minmax(train_images, test_images)
    out.append(classical.run(config.method, train_images, test_images, config.classical, s))
    if progress:
      progress.printer(f"[{config.method}] class {c} seed {s} done")
  return np.stack(out)


def split_line(rho: float, used: int, count: int) -> str:
  """The split size actually used (`split.split_by_ssim` keeps it within [2, count - 2]),
  with a note when that differs from rho% of the images."""
  line = f"[split] rho={rho:g}%: {used} of {count} images atypical (first job)"
  asked = rho / 100 * count
  if used != int(np.floor(asked + 0.5)):
    line += (f"; rho asks for {asked:.3g}, kept within [2, {max(count - 2, 2)}] so that both "
             "pair losses have pairs")
  return line


# ------------------------------------------------------- the autoencoder cache

def _autoencoders(programs, jobs: data.Jobs, workdir, progress):
  """Splitting autoencoders, trained only for jobs that have none saved yet."""
  config = programs.config
  # Shapes only (from_bytes replaces every leaf): nothing to compile or run.
  template = jax.eval_shape(programs.ae_model.init, jax.random.PRNGKey(0), jobs.pool[:1])
  ae_dir = (records.autoencoder_dir(workdir, config.dataset, configs.autoencoder_hash(config),
                                    jobs.pool.shape[1:]) if workdir else None)
  paths = [records.autoencoder_path(ae_dir, c, s) if ae_dir else None
           for c, s in zip(jobs.classes, jobs.seeds)]
  trained = {j: _load_autoencoder(template, p, progress) for j, p in enumerate(paths)
             if p and os.path.exists(p)}
  missing = [j for j in range(len(paths)) if trained.get(j) is None]
  if missing:
    sub = jobs.subset(missing)
    ckpt = records.autoencoder_ckpt_dir(ae_dir, sub.classes, sub.seeds) if ae_dir else None
    params = pipeline.fit_autoencoders(programs, jobs.pool, sub.train_idx, sub.train_count,
                                       sub.keys, ckpt_dir=ckpt, progress=progress,
                                       names=[f"class {c} seed {s}"
                                              for c, s in zip(sub.classes, sub.seeds)])
    for k, j in enumerate(missing):
      trained[j] = jax.tree.map(lambda x: x[k], params)
      if paths[j]:
        records.atomic_write(paths[j], flax.serialization.to_bytes(trained[j]))
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
