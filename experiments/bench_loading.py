"""Time to load a dataset's train and test splits from local files.

  DSPLIT_DATA_DIR=/path/to/datasets python experiments/bench_loading.py \
      [--dataset=mnist] [--data_dir=DIR] [--repeats=5]

Prints the first load and the best of all repeats, per split and in total. Results: notes/data.md.
"""

from __future__ import annotations

import argparse
import sys
import time

from dsplit_jax import data


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dataset", default="mnist", choices=data.DATASETS)
  p.add_argument("--data_dir", default=None)
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args(argv)

  times = {"train": [], "test": []}
  for _ in range(max(args.repeats, 1)):
    for split in times:
      start = time.perf_counter()
      images, labels = data.load(args.dataset, split, data_dir=args.data_dir)
      times[split].append(time.perf_counter() - start)
      shapes = f"{images.shape} {images.dtype}, labels {labels.shape} {labels.dtype}"
      if len(times[split]) == 1:
        print(f"{args.dataset} {split}: {shapes}")
  for split, ts in times.items():
    best = min(ts)
    print(f"{split}: first {ts[0]:.3f} s, best of {len(ts)} {best:.3f} s")
  first = times["train"][0] + times["test"][0]
  best = sum(min(ts) for ts in times.values())
  print(f"total (train + test): first {first:.3f} s, best {best:.3f} s")
  print("tensorflow imported:", "tensorflow" in sys.modules)


if __name__ == "__main__":
  main()
