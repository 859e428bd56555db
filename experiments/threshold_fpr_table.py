"""The markdown table of threshold_fpr.py's CSVs: per dataset, method, holdout and
contamination, the mean observed false-positive rate over the normal classes, the
largest gap to the nominal rate and how many classes lie within 2 points of it.

  python -m experiments.threshold_fpr_table experiments/threshold_fpr_*.csv
"""

import collections
import csv
import sys


def main(paths):
  groups = collections.defaultdict(list)
  for path in paths:
    for r in csv.DictReader(open(path)):
      key = (r["dataset"], r["method"], float(r["holdout"]), float(r["contamination"]))
      groups[key].append(float(r["observed_fpr"]))
  print("| dataset | method | threshold on | nominal FPR | observed FPR, mean over classes "
        "| largest gap (points) | classes within 2 points |")
  print("|---|---|---|---|---|---|---|")
  for (ds, m, h, c), fprs in sorted(groups.items()):
    gap = max(abs(f - c) for f in fprs)
    within = sum(abs(f - c) <= 0.02 for f in fprs)
    where = "training scores (PyOD)" if h == 0 else f"held-out {h:g}"
    print(f"| {ds} | {m} | {where} | {100 * c:g}% | {100 * sum(fprs) / len(fprs):.1f}% "
          f"| {100 * gap:.1f} | {within}/{len(fprs)} |")


if __name__ == "__main__":
  main(sys.argv[1:])
