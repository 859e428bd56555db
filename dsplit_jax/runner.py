"""Runs one method over the (normal class, seed) jobs of a dataset and writes records.

  validate the config -> load the jobs -> skip the jobs with records -> fit and score
  (all jobs in one program, mapped over a device's jobs by `job_map`) -> write scores,
  splits and records.

What a method does is read from `methods.METHODS` once per run (`run`) and passed
down as its `methods.Method`: the splitting autoencoder (cached in the work dir and
shared by every method and rho that needs it), the SSIM split, the classifier, or a
baseline that fits and scores in one go. The device work is `pipeline`'s, through the
`pipeline.Programs` a run builds once and passes to `fit` and `score`; this module
only chooses it. The work dir's files are `records`' (results.jsonl, scores/, splits/,
autoencoders/, runs/); a killed run resumes from its checkpoints with the same command.
"""

from __future__ import annotations

import os
import time

import flax.serialization
import jax
import ml_collections
import numpy as np

from dsplit_jax import configs
from dsplit_jax import curves
from dsplit_jax import data
from dsplit_jax import loop
from dsplit_jax import methods
from dsplit_jax import pipeline
from dsplit_jax import protocols
from dsplit_jax import records
from dsplit_jax import validation
from dsplit_jax import workdir as workdir_lib
from dsplit_jax.baselines import classical
from dsplit_jax.baselines import dsvdd

def check_run_dir(run_dir, config):
  """A run dir belongs to one config: resuming with another would mix two runs."""
  records.check_run_dir(run_dir, dict(configs.hashed_fields(config), method=config.method))


def run(config: ml_collections.ConfigDict, workdir: str, progress=None) -> list[dict]:
  """Trains and scores `config.method` on every (normal class, seed); appends records.

  Jobs that already have a record with the same config are skipped, and a killed run
  resumes from its checkpoints, so running the same command again finishes the work.
  """
  validation.validate(config)
  spec = methods.get(config.method)  # the one lookup; passed down from here
  progress = progress or loop.Progress()
  jobs = data.load_jobs(config)
  if jobs.test_images is None:
    raise configs.ConfigError(f"{config.dataset} in {config.data_dir} has no test split to compute "
                      "an AUC on; use dsplit_jax.OneClassClassifier or --score_dir")
  chash = configs.config_hash(config)
  results = records.results_path(workdir)
  done = [r for r in records.read_records(
      results, dataset=config.dataset, method=config.method, rho=float(config.rho),
      config_hash=chash) if (r["normal_class"], r["seed"]) in set(zip(jobs.classes, jobs.seeds))]
  finished = {(r["normal_class"], r["seed"]) for r in done}
  todo = [j for j, job in enumerate(zip(jobs.classes, jobs.seeds)) if job not in finished]
  if not todo:
    progress.printer(f"[{config.method}] all {len(jobs.classes)} jobs already have "
                     f"records in {results}")
    return done
  jobs = jobs.subset(todo)
  run_dir = records.run_dir(workdir, config, jobs.classes, jobs.seeds, chash)
  check_run_dir(run_dir, config)
  progress.printer(f"[{config.method}] {len(jobs.classes)} jobs (classes "
                   f"{sorted(set(jobs.classes))} x seeds {sorted(set(jobs.seeds))}) on "
                   f"{jax.device_count()} {jax.devices()[0].platform} device(s)")
  start = time.time()
  fitted, scores = RUNS[spec.scorer](config, spec, jobs, workdir=workdir, run_dir=run_dir,
                                     progress=progress)
  if "ssim_train" in fitted:
    for j, (c, s) in enumerate(zip(jobs.classes, jobs.seeds)):
      n = jobs.train_count[j]
      records.save_split(records.split_path(workdir, config.dataset, c, s),
                         fitted["ssim_train"][j, :n],
                         jobs.pool_split_index[jobs.train_idx[j, :n]])
  wall = time.time() - start
  return done + _write_records(config, spec, jobs, scores, workdir, run_dir, chash, wall, progress,
                               fitted.get("plateau_ratio"), fitted.get("step_scores"))


def _write_records(config, spec, jobs, scores, workdir, run_dir, chash, wall, progress,
                   plateau_ratio=None, step_scores=None):
  """Per job: its AUC under `config.eval.protocol`, its score file and its record (with
  the run's final losses, and the AUCs of the scored checkpoints)."""
  final = curves.final_losses(run_dir, config.method) if spec.trains_classifier else {}
  data_files = data.describe_sources(config)
  new = []
  for j, (c, s, name) in enumerate(zip(jobs.classes, jobs.seeds, jobs.names)):
    labels = jobs.test_labels(j)
    evaluated = protocols.evaluate(
        config.eval, labels, scores[j], config.train.steps if spec.trains_classifier else 0,
        {step: s_all[j] for step, s_all in (step_scores or {}).items()})
    auc = evaluated.pop("auc")
    records.save_scores(records.scores_path(workdir, config.dataset, c, config.method,
                                            config.rho, s, chash), scores[j], labels)
    extra = {"final_losses": final.get(name, {})} if spec.trains_classifier else {}
    if plateau_ratio is not None:
      extra["ae_plateau_ratio"] = round(float(plateau_ratio[j]), 4)
    extra.update(evaluated)
    rec = records.make_record(
        dataset=config.dataset, normal_class=c, method=config.method, seed=s,
        rho=float(config.rho), auc=auc, config=config, wall_time_s=wall / len(jobs.classes),
        config_hash=chash, preset=config.preset, program_wall_time_s=wall,
        program_jobs=len(jobs.classes), job_map=pipeline.job_map(config),
        data_files=data_files, **extra)
    if records.writer():
      records.append_record(records.results_path(workdir), rec)
    new.append(rec)
    chosen = ("" if config.eval.protocol == protocols.DEFAULT else
              f" (step {evaluated['selected_step']} selected with test labels; the final "
              f"model on the full test split: {100 * evaluated['auc_full_test_last']:.2f})")
    progress.printer(f"[{config.method}] {config.dataset} class {c} seed {s}: "
                     f"AUC {100 * auc:.2f}{chosen}")
  return new


def fit(programs: pipeline.Programs, method: str, jobs: data.Jobs, *,
        workdir: str | None = None, run_dir: str | None = None, progress=None) -> dict:
  """`_fit` of the method called `method` (the API's entry)."""
  return _fit(programs, methods.get(method), jobs, workdir=workdir, run_dir=run_dir,
              progress=progress)


def _fit(programs: pipeline.Programs, spec: methods.Method, jobs: data.Jobs, *,
         workdir: str | None = None, run_dir: str | None = None, progress=None) -> dict:
  """Trains `spec`'s method for every job with `programs` (`pipeline.make_programs` of the
  run's config and image shape); returns what scoring needs (stacked over jobs):
  `ae_params`, `ssim_train` and `plateau_ratio` where it needs the split, `params` of
  the classifier, and `step_scores` (step -> test scores [J, M] of the classifiers at
  their checkpoints) where `config.eval` asks for them (`protocols`)."""
  config = programs.config
  method = spec.name
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
  return _score(programs, methods.get(method), fitted, images)


def _score(programs, spec: methods.Method, fitted: dict, images) -> np.ndarray:
  if spec.scorer not in SCORES:
    raise ValueError(f"{spec.name} has no fitted scorer")
  return SCORES[spec.scorer](programs, fitted, images)


def _fit_networks_and_score(config, spec, jobs, *, workdir, run_dir, progress):
  programs = pipeline.make_programs(config, jobs.pool.shape[1:])  # this run's, held here
  fitted = _fit(programs, spec, jobs, workdir=workdir, run_dir=run_dir, progress=progress)
  return fitted, _score(programs, spec, fitted, jobs.test_images)


def _classical_run(config, spec, jobs, *, workdir, run_dir, progress):
  del spec, workdir, run_dir  # fitted and scored in one go; nothing cached
  return {}, _classical_scores(config, jobs, progress)


def _dsvdd_run(config, spec, jobs, *, workdir, run_dir, progress):
  del spec, workdir, run_dir  # Deep SVDD trains in one go; nothing cached
  return {}, dsvdd.run(config, jobs, progress=progress)


# How `run` fits and scores, by `methods.Scorer.name`: (fitted, test scores [J, M]).
RUNS = {"classifier": _fit_networks_and_score, "ssim": _fit_networks_and_score,
        "dsvdd": _dsvdd_run, "classical": _classical_run}


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
