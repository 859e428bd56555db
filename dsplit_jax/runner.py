"""Runs one method over the (normal class, seed) jobs of a dataset and writes records.

  validate the config -> load the jobs -> skip the jobs with records -> fit and score
  (`fitting`, all jobs in one program, mapped over a device's jobs by `job_map`) ->
  write scores, splits and records.

The work dir's files are `records`' (results.jsonl, scores/, splits/, autoencoders/,
runs/); a killed run resumes from its checkpoints with the same command.
"""

from __future__ import annotations

import time

import jax
import ml_collections

from dsplit_jax import configs
from dsplit_jax import curves
from dsplit_jax import data
from dsplit_jax import fitting
from dsplit_jax import loop
from dsplit_jax import methods
from dsplit_jax import pipeline
from dsplit_jax import protocols
from dsplit_jax import records
from dsplit_jax import validation

# Names other modules and scripts use from here.
ConfigError = configs.ConfigError
config_hash = configs.config_hash
Jobs, load_jobs = data.Jobs, data.load_jobs
fit, score, split_line = fitting.fit, fitting.score, fitting.split_line


def check_run_dir(run_dir, config):
  """A run dir belongs to one config: resuming with another would mix two runs."""
  records.check_run_dir(run_dir, dict(configs.hashed_fields(config), method=config.method))


def run(config: ml_collections.ConfigDict, workdir: str, progress=None) -> list[dict]:
  """Trains and scores `config.method` on every (normal class, seed); appends records.

  Jobs that already have a record with the same config are skipped, and a killed run
  resumes from its checkpoints, so running the same command again finishes the work.
  """
  validation.validate(config)
  progress = progress or loop.Progress()
  jobs = data.load_jobs(config)
  if jobs.test_images is None:
    raise ConfigError(f"{config.dataset} in {config.data_dir} has no test split to compute "
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
  fitted, scores = fitting.fit_and_score(config, jobs, workdir=workdir, run_dir=run_dir,
                                         progress=progress)
  if "ssim_train" in fitted:
    for j, (c, s) in enumerate(zip(jobs.classes, jobs.seeds)):
      n = jobs.train_count[j]
      records.save_split(records.split_path(workdir, config.dataset, c, s),
                         fitted["ssim_train"][j, :n],
                         jobs.pool_split_index[jobs.train_idx[j, :n]])
  wall = time.time() - start
  return done + _write_records(config, jobs, scores, workdir, run_dir, chash, wall, progress,
                               fitted.get("plateau_ratio"), fitted.get("step_scores"))


def _write_records(config, jobs, scores, workdir, run_dir, chash, wall, progress,
                   plateau_ratio=None, step_scores=None):
  """Per job: its AUC under `config.eval.protocol`, its score file and its record (with
  the run's final losses, and the AUCs of the scored checkpoints)."""
  spec = methods.get(config.method)
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
