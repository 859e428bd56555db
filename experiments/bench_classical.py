"""Classical baselines on all ten classes next to the paper's Table 1 columns.

  DSPLIT_DATA_DIR=/path/to/datasets python experiments/bench_classical.py \
      --dataset=mnist [--methods=ocsvm,hog_ocsvm,iforest] [--iforest_seeds=5] \
      [--preprocessing=none|gcn_minmax] [--hog_block_norm=L1|L2-Hys]

Prints per-class AUC (%), the paper's value, their mean and the mean absolute
difference (MAD). Runtime on 2 CPU cores: about 2 min per dataset for the
three methods with 5 Isolation Forest seeds (OCSVM on ~6000 images about 7 s
a class). Results: notes/baselines.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dsplit_jax import configs, data, metrics, paper
from dsplit_jax import methods as methods_lib
from dsplit_jax.baselines import classical

def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dataset", default="mnist", choices=paper.DATASETS)
  p.add_argument("--methods", default=",".join(methods_lib.names(scorer="classical")))
  p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
  p.add_argument("--iforest_seeds", type=int, default=5,
                 help="Isolation Forest AUC is the mean over seeds 0..n-1 "
                      "(the paper averages five seeds).")
  p.add_argument("--preprocessing", default=None,
                 help="overrides cfg.preprocessing (none | gcn_minmax)")
  p.add_argument("--hog_block_norm", default=None,
                 help="overrides cfg.hog_block_norm (L1 | L2-Hys | L2 | L1-sqrt)")
  p.add_argument("--hog_channel_mode", default=None,
                 choices=classical.CHANNEL_MODES)
  p.add_argument("--data_dir", default=None,
                 help="default: $DSPLIT_DATA_DIR")
  args = p.parse_args(argv)

  cfg = configs.get_preset("paper").classical
  if args.preprocessing is not None:
    cfg.preprocessing = args.preprocessing
  if args.hog_block_norm is not None:
    cfg.hog_block_norm = args.hog_block_norm
  if args.hog_channel_mode is not None:
    cfg.hog_channel_mode = args.hog_channel_mode
  methods = [m for m in args.methods.split(",") if m]
  for m in methods:
    if m not in methods_lib.names(scorer="classical"):
      p.error(f"unknown method {m!r}; choose from {methods_lib.names(scorer='classical')}")
  classes = [int(c) for c in args.classes.split(",")]
  if any(paper.lookup(args.dataset, c, methods[0]) is None for c in classes):
    p.error(f"--classes must lie in 0..9, got {args.classes}")
  ref = {m: {c: paper.lookup(args.dataset, c, m)[0] for c in classes}
         for m in methods}
  print(f"dataset={args.dataset} preprocessing={cfg.preprocessing} "
        f"hog_block_norm={cfg.hog_block_norm} "
        f"hog_channel_mode={cfg.hog_channel_mode} "
        f"iforest_seeds={args.iforest_seeds}", flush=True)

  ours = {m: [] for m in methods}
  for c in classes:
    try:
      task = data.one_class_task(args.dataset, c, data_dir=args.data_dir,
                                 preprocessing=cfg.preprocessing)
    except (data.DataError, ValueError) as e:
      p.error(str(e))
    line = [f"class {c}: n_train={len(task.train_images)}"]
    for m in methods:
      t0 = time.time()
      seeds = range(args.iforest_seeds) if m == "iforest" else (0,)
      aucs = [metrics.auc(task.test_labels,
                          classical.run(m, task.train_images, task.test_images,
                                        cfg, seed=s)) for s in seeds]
      ours[m].append(100.0 * float(np.mean(aucs)))
      line.append(f"{m}={ours[m][-1]:.1f} "
                  f"(paper {ref[m][c]:.1f}, "
                  f"{time.time() - t0:.1f}s)")
    print("  ".join(line), flush=True)

  print(f"\n{'class':>5} " + " ".join(f"{m:>10} {'paper':>6}" for m in methods))
  for i, c in enumerate(classes):
    print(f"{c:>5} " + " ".join(
        f"{ours[m][i]:>10.1f} {ref[m][c]:>6.1f}"
        for m in methods))
  mean_line, mad_line = f"{'mean':>5} ", f"{'MAD':>5} "
  for m in methods:
    want = np.array([ref[m][c] for c in classes])
    got = np.array(ours[m])
    mean_line += f"{got.mean():>10.1f} {want.mean():>6.1f} "
    mad_line += f"{np.abs(got - want).mean():>10.1f} {'':>6} "
  print(mean_line)
  print(mad_line)


if __name__ == "__main__":
  main()
