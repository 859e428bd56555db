"""Does a job's result depend on the jobs beside it? One job trained alone, in two jobs
and in four (MNIST digits 0 and 1, seeds 0 and 1), with `job_map` map or vmap.

  python -m experiments.check_job_map --job_map=map

Prints the largest difference of job 0's scores and SSIMs from its single-job run.
"""

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import pipeline


def stacked_jobs(images, idx, count, classes, seeds) -> data.Jobs:
  """Jobs (class, seed) over `images`, job j on `images[idx[j, :count[j]]]`."""
  return dataclasses.replace(data.Jobs.of_images(images, seed=0), classes=list(classes),
                             seeds=list(seeds), train_idx=idx, train_count=count)


def fit_and_score(programs, jobs: data.Jobs, rows, test_images):
  """dsplit on the jobs `rows` in one program: (scores [J, M], training SSIMs [J, N]).

  `programs`: `pipeline.make_programs` of the config and image shape, held by the caller
  across its runs.
  """
  jobs = jobs.subset(rows)
  ae = pipeline.fit_autoencoders(programs, jobs)
  ssim = pipeline.ssim_of(programs, ae, jobs)
  splits = pipeline.split(programs.config, ssim, jobs)
  params = pipeline.fit_classifiers(programs, jobs, "dsplit", splits)
  return pipeline.classifier_scores(programs, params, test_images), ssim


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--job_map", default="map", choices=("map", "vmap"))
  p.add_argument("--preset", default="test", help="Networks of this preset.")
  p.add_argument("--steps", type=int, default=40, help="Autoencoder and classifier steps.")
  p.add_argument("--data_dir", default=os.environ.get("DSPLIT_DATA_DIR"))
  args = p.parse_args(argv)
  config = configs.get_preset("test")
  config.model = configs.get_preset(args.preset).model
  config.ae.adam_eps = config.train.adam_eps = 1e-7  # the cpu/paper presets' eps
  config.ae.steps = config.train.steps = args.steps
  config.job_map = args.job_map
  x, y = data.load("mnist", "train", args.data_dir, image_size=config.image_size)
  n = 300
  images = data.preprocessing.unit_interval(np.concatenate([x[y == c][:n] for c in (0, 1)]))
  idx = np.stack([np.arange(n), np.arange(n, 2 * n)] * 2).astype(np.int32)
  count = np.full(4, n, np.int32)
  jobs = stacked_jobs(images, idx, count, classes=[0, 1, 0, 1], seeds=[0, 0, 1, 1])
  programs = pipeline.make_programs(config, images.shape[1:])

  t = time.time()
  out = {}
  for j in (1, 2, 4):
    scores, ssim = fit_and_score(programs, jobs, list(range(j)), images[::3])
    out[j] = scores[0], ssim[0]
  print(json.dumps(dict(
      job_map=args.job_map, preset=args.preset, steps=args.steps,
      seconds=round(time.time() - t),
      max_score_diff={j: float(np.abs(out[j][0] - out[1][0]).max()) for j in (2, 4)},
      max_ssim_diff={j: float(np.abs(out[j][1] - out[1][1]).max()) for j in (2, 4)})))


if __name__ == "__main__":
  main()
