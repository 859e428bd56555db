"""Benchmark: our method on all ten classes of a dataset, one seed, beside the paper.

  python -m experiments.bench_mnist --dataset=mnist --preset=cpu --workdir=bench_mnist

Each class is its own single-job run (on a 2-core CPU a vmapped stack of jobs is not
faster, see BUILD_NOTES.md); records go to <workdir>/results.jsonl, so a killed
benchmark continues where it stopped. Prints per-class AUC, the paper's "Ours"
column, the mean and the wall time.
"""

import argparse
import time

import numpy as np

from dsplit_jax import cli
from dsplit_jax import loop
from dsplit_jax import paper
from dsplit_jax import runner


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="mnist")
  parser.add_argument("--preset", default="cpu")
  parser.add_argument("--method", default="dsplit")
  parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--set", action="append", default=[])
  args = parser.parse_args()
  rows = []
  start = time.time()
  for c in [int(x) for x in args.classes.split(",")]:
    config, _ = cli.config_from_flags(
        preset=args.preset, dataset=args.dataset, normal_class=str(c), method=args.method,
        rho=None, seed=args.seed, num_seeds=1, data_dir=args.data_dir, overrides=args.set)
    t0 = time.time()
    rec = runner.run(config, args.workdir, progress=loop.Progress())[0]
    ref = paper.lookup(args.dataset, c, args.method)
    rows.append((c, 100 * rec["auc"], ref[0] if ref else float("nan"), time.time() - t0,
                 rec["wall_time_s"]))
  print(f"\n{args.dataset} {args.method} preset={args.preset} seed={args.seed}")
  print("| class | ours | paper | diff | run wall s (this process) | record wall s |")
  print("|---|---|---|---|---|---|")
  for c, ours, ref, wall, rec_wall in rows:
    print(f"| {c} | {ours:.1f} | {ref:.1f} | {ours - ref:+.1f} | {wall:.0f} | {rec_wall:.0f} |")
  ours = np.mean([r[1] for r in rows])
  ref = np.mean([r[2] for r in rows])
  print(f"| mean | {ours:.1f} | {ref:.1f} | {ours - ref:+.1f} | "
        f"{sum(r[3] for r in rows):.0f} | {sum(r[4] for r in rows):.0f} |")
  print(f"total wall time {time.time() - start:.0f} s")


if __name__ == "__main__":
  main()
