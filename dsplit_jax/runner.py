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
  fields = configs.hashed_fields(config)  # what the run dir and the records are made by
  chash = configs.digest(fields)  # = configs.config_hash(config)
  spec = methods.get(config.method)  # the one lookup; passed down from here
  progress = progress or loop.Progress()
  jobs = data.load_jobs(config)
  if jobs.test_images is None:
    raise configs.ConfigError(f"{config.dataset} in {config.data_dir} has no test split to compute "
                      "an AUC on; use dsplit_jax.OneClassClassifier or --score_dir")
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
  records.check_run_dir(run_dir, dict(fields, method=config.method))
  progress.printer(f"[{config.method}] {len(jobs.classes)} jobs (classes "
                   f"{sorted(set(jobs.classes))} x seeds {sorted(set(jobs.seeds))}) on "
                   f"{jax.device_count()} {jax.devices()[0].platform} device(s)")
  start = time.time()
  fitted, scores = RUNS[spec.scorer](config, spec, jobs, workdir=workdir, run_dir=run_dir,
                                     progress=progress)
  wall = time.time() - start
  return done + _write_records(config, spec, jobs, fitted, scores, workdir, run_dir, chash,
                               wall, progress)


def _write_records(config, spec, jobs, fitted, scores, workdir, run_dir, chash, wall,
                   progress):
  """Per job: its split (where the method has one), its AUC under
  `config.eval.protocol`, its score file and its record (with the run's final losses,
  and the AUCs of the scored checkpoints)."""
  final = curves.final_losses(run_dir, config.method) if spec.trains_classifier else {}
  job_map = pipeline.job_map(config)
  data_files = data.describe_sources(config)
  step_scores = fitted.get("step_scores") or {}
  new = []
  for j, (c, s, name) in enumerate(zip(jobs.classes, jobs.seeds, jobs.names)):
    labels = jobs.test_labels(j)
    evaluated = protocols.evaluate(
        config.eval, labels, scores[j], config.train.steps if spec.trains_classifier else 0,
        {step: s_all[j] for step, s_all in step_scores.items()})
    auc = evaluated.pop("auc")
    if "ssim_train" in fitted:
      n = jobs.train_count[j]
      records.save_split(records.split_path(workdir, config.dataset, c, s),
                         fitted["ssim_train"][j, :n],
                         jobs.pool_split_index[jobs.train_idx[j, :n]])
    records.save_scores(records.scores_path(workdir, config.dataset, c, config.method,
                                            config.rho, s, chash), scores[j], labels)
    extra = {"final_losses": final.get(name, {})} if spec.trains_classifier else {}
    if "plateau_ratio" in fitted:
      extra["ae_plateau_ratio"] = round(float(fitted["plateau_ratio"][j]), 4)
    extra.update(evaluated)
    rec = records.make_record(
        dataset=config.dataset, normal_class=c, method=config.method, seed=s,
        rho=float(config.rho), auc=auc, config=config, wall_time_s=wall / len(jobs.classes),
        config_hash=chash, preset=config.preset, program_wall_time_s=wall,
        program_jobs=len(jobs.classes), job_map=job_map, data_files=data_files, **extra)
    if records.writer():
      records.append_record(records.results_path(workdir), rec)
    new.append(rec)
    chosen = ("" if config.eval.protocol == protocols.DEFAULT else
              f" (step {evaluated['selected_step']} selected with test labels; the final "
              f"model on the full test split: {100 * evaluated['auc_full_test_last']:.2f})")
    progress.printer(f"[{config.method}] {config.dataset} class {c} seed {s}: "
                     f"AUC {100 * auc:.2f}{chosen}")
  return new


def _networks(config, spec: methods.Method, jobs: data.Jobs, *, workdir: str | None,
              run_dir: str | None, progress, programs: pipeline.Programs | None = None):
  """RUNS entry of the network methods: trains `spec`'s networks for every job; returns
  what scoring needs (stacked over jobs), and the scores of `jobs.test_images` (None
  without a test split).

  Fitted: `ae_params`, `ssim_train` and `plateau_ratio` where the method needs the split
  (the autoencoders cached in the work dir, trained only for jobs that have none), the
  classifier's `params`, and `step_scores` (step -> test scores [J, M] of the
  classifiers at their checkpoints) where `config.eval` asks for them (`protocols`).
  The phases' device programs are `pipeline`'s (`programs`: this run's, built here
  unless given); their checkpoints, curves and evaluations are this run's folders'.
  """
  programs = programs or pipeline.make_programs(config, jobs.pool.shape[1:])
  method = spec.name
  fitted = {}
  if spec.needs_split:
    cache = _AutoencoderCache(programs, jobs, workdir, progress)
    if cache.missing:
      todo = jobs.subset(cache.missing)
      cache.add(pipeline.fit_autoencoders(programs, todo, ckpt_dir=cache.ckpt_dir(todo),
                                          progress=progress))
    fitted["ae_params"] = cache.params()
    fitted["ssim_train"] = pipeline.ssim_of(programs, fitted["ae_params"], jobs)
    # Kept in the records, so a table can show that no split came from a stuck
    # autoencoder (ratio > ae.plateau_ratio; BUILD_NOTES.md, "The method").
    fitted["plateau_ratio"] = pipeline.plateau_ratios(programs, fitted["ae_params"], jobs)
  if spec.trains_classifier:
    splits = (pipeline.split(config, fitted["ssim_train"], jobs)
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
    phase = pipeline.classifier_phase(programs, jobs, method, splits,
                                      on_eval=on_eval if evaluating else None)
    state = loop.run_phase(**phase.loop_args, ckpt_dir=run_dir, progress=progress,
                           curve_jobs=jobs.names)
    fitted["params"] = phase.take(state.params)
    if evaluating:
      fitted["step_scores"] = {**(records.read_eval_scores(run_dir, method) if run_dir
                                  else {}), **step_scores}
  scores = (None if jobs.test_images is None else
            SCORES[spec.scorer](programs, fitted, jobs.test_images))
  return fitted, scores


def fit(programs: pipeline.Programs, method: str, jobs: data.Jobs, *,
        workdir: str | None = None, run_dir: str | None = None, progress=None) -> dict:
  """The networks of the method called `method`, fitted with `programs`
  (`pipeline.make_programs` of the config and image shape) as `run` fits them (the API's
  entry; jobs without a test split)."""
  return _networks(programs.config, methods.get(method), jobs, workdir=workdir,
                   run_dir=run_dir, progress=progress, programs=programs)[0]


def _classifier_scores(programs, fitted, images):
  return pipeline.classifier_scores(programs, fitted["params"], images)


def _ssim_scores(programs, fitted, images):
  return -pipeline.images_ssim(programs, fitted["ae_params"], images)


# Anomaly scores of `fit`'s networks, by `methods.Scorer.name` (those with fitted_params).
SCORES = {"classifier": _classifier_scores, "ssim": _ssim_scores}


def score(programs: pipeline.Programs, method: str, fitted: dict,
          images: np.ndarray) -> np.ndarray:
  """Anomaly scores [J, M] of `fit`'s networks, higher = more abnormal."""
  spec = methods.get(method)
  if spec.scorer not in SCORES:
    raise ValueError(f"{spec.name} has no fitted scorer")
  return SCORES[spec.scorer](programs, fitted, images)


def _classical_run(config, spec, jobs, *, workdir, run_dir, progress):
  del spec, workdir, run_dir  # fitted and scored in one go; nothing cached
  return {}, _classical_scores(config, jobs, progress)


def _dsvdd_run(config, spec, jobs, *, workdir, run_dir, progress):
  del spec, workdir, run_dir  # Deep SVDD trains in one go; nothing cached
  return {}, dsvdd.run(config, jobs, progress=progress)


# How `run` fits and scores, by `methods.Scorer.name`: (fitted, test scores [J, M]).
RUNS = {"classifier": _networks, "ssim": _networks,
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

class _AutoencoderCache:
  """The splitting autoencoders of `jobs` saved in the work dir (none without one):
  reads them on creation; `missing` are the jobs to train, `add` saves what they got."""

  def __init__(self, programs, jobs: data.Jobs, workdir, progress):
    config = programs.config
    # Shapes only (from_bytes replaces every leaf): nothing to compile or run.
    template = jax.eval_shape(programs.ae_model.init, jax.random.PRNGKey(0), jobs.pool[:1])
    self.ae_dir = (records.autoencoder_dir(workdir, config.dataset,
                                           configs.autoencoder_hash(config),
                                           jobs.pool.shape[1:]) if workdir else None)
    self.paths = [records.autoencoder_path(self.ae_dir, c, s) if self.ae_dir else None
                  for c, s in zip(jobs.classes, jobs.seeds)]
    self.trained = {j: _load_autoencoder(template, p, progress)
                    for j, p in enumerate(self.paths) if p and os.path.exists(p)}
    self.missing = [j for j in range(len(self.paths)) if self.trained.get(j) is None]

  def ckpt_dir(self, todo: data.Jobs):
    return (records.autoencoder_ckpt_dir(self.ae_dir, todo.classes, todo.seeds)
            if self.ae_dir else None)

  def add(self, params):
    """Saves the params [len(missing), ...] of the missing jobs."""
    for k, j in enumerate(self.missing):
      self.trained[j] = jax.tree.map(lambda x: x[k], params)
      if self.paths[j]:
        records.atomic_write(self.paths[j], flax.serialization.to_bytes(self.trained[j]))
    self.missing = []

  def params(self):
    return jax.tree.map(lambda *xs: np.stack(xs), *[self.trained[j]
                                                    for j in range(len(self.paths))])


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
