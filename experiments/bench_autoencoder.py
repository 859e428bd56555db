"""Benchmark: is the splitting autoencoder trained? Final MSE and SSIM-baseline AUC per class.

  python -m experiments.bench_autoencoder --classes=4,7 --set=ae.warmup_steps=200

An autoencoder stuck on the plateau (MSE ~0.1 on MNIST, plateau ratio > 1: worse than
the class's mean image) ranks images at random, so the split, and every method built on
it, is noise; its SSIM AUC is ~50. Stuck jobs are trained again (`ae.restarts`; the
restart lines are printed); `--set=ae.restarts=0` shows the first try alone.
Each class is trained alone (the same job key as `dsplit_jax.main` uses), nothing is
saved. Prints one line per class and the wall time.
"""

import argparse
import time

import numpy as np

from dsplit_jax import cli
from dsplit_jax import loop
from dsplit_jax import metrics
from dsplit_jax import pipeline
from dsplit_jax import data


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="mnist")
  parser.add_argument("--preset", default="cpu")
  parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--set", action="append", default=[])
  args = parser.parse_args()
  print(f"{args.dataset} autoencoders, preset={args.preset}, seed={args.seed}, "
        f"overrides={args.set}")
  print("| class | MSE (mean of the last chunk) | plateau ratio | SSIM AUC | wall s |")
  print("|---|---|---|---|---|")
  for c in [int(x) for x in args.classes.split(",")]:
    config, _ = cli.config_from_flags(
        preset=args.preset, dataset=args.dataset, normal_class=str(c), method="ssim",
        rho=None, seed=args.seed, num_seeds=1, data_dir=args.data_dir, overrides=args.set)
    jobs = data.load_jobs(config)
    # Step lines are summed up below; restarts (ae.restarts) are shown as they happen.
    progress = loop.Progress(printer=lambda line: "plateau" in line and print(line))
    start = time.time()
    programs = pipeline.make_programs(config, jobs.pool.shape[1:])
    params = pipeline.fit_autoencoders(programs, jobs, progress=progress)
    wall = time.time() - start
    mse = progress.history[-1]["mse"]
    ssim = pipeline.images_ssim(programs, params, jobs.test_images)[0]
    auc = metrics.auc((jobs.test_classes != c).astype(np.int32), -ssim)
    ratio = pipeline.plateau_ratios(programs, params, jobs)[0]
    print(f"| {c} | {mse:.4f} | {ratio:.2f} | {100 * auc:.1f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
  main()
