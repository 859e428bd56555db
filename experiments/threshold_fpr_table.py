"""The markdown table of threshold_fpr.py's CSVs: per dataset, method, holdout and
contamination, the mean observed false-positive rate over the normal classes, the
largest gap to the nominal rate, how many classes lie within 2 points of it, and how
many would be expected to from sampling error alone.

  python -m experiments.threshold_fpr_table experiments/threshold_fpr_*.csv

Even an exact threshold misses sometimes: the observed rate on n_test normal images
has the binomial standard error sqrt(c (1 - c) / n_test), and a percentile placed on
n_fit scores (the held-out share, or all training images in sample) adds about
c (1 - c) / n_fit to the variance of the rate it gives. `expected within` sums, over
the classes, the normal probability of |gap| <= 2 points under that combined error;
the chi-square p-value asks whether the gaps, standardised by it, are larger than
chance (a small p: the rule is biased or noisier than sampling explains).
"""

import collections
import csv
import sys

import numpy as np
from scipy import stats

TOLERANCE = 0.02


def _sampling_se(c, n_test, n_fit):
  return np.sqrt(c * (1 - c) * (1 / n_test + 1 / n_fit))


def main(paths):
  groups = collections.defaultdict(list)
  for path in paths:
    for r in csv.DictReader(open(path)):
      h, c = float(r["holdout"]), float(r["contamination"])
      n_train, n_test = int(r["n_train"]), int(r["n_test"])
      n_fit = round(h * n_train) if h > 0 else n_train
      fit_h = float(r.get("fit_holdout") or h)
      where = r.get("evaluated_on") or "test"
      groups[(r["dataset"], r["method"], where, h, fit_h, c)].append(
          (float(r["observed_fpr"]), _sampling_se(c, n_test, n_fit)))
  print("| dataset | method | normal images scored | threshold on | nominal FPR | observed FPR, mean over classes "
        "| largest gap (points) | classes within 2 points | expected within (sampling) "
        "| chi-square p |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for (ds, m, scored, h, fit_h, c), rows in sorted(groups.items()):
    fprs = np.array([f for f, _ in rows])
    se = np.array([s for _, s in rows])
    gaps = fprs - c
    within = int(np.sum(np.abs(gaps) <= TOLERANCE + 1e-9))
    expected = float(np.sum(2 * stats.norm.cdf(TOLERANCE / se) - 1))
    p = float(stats.chi2.sf(np.sum((gaps / se) ** 2), df=len(rows)))
    where = "training scores (PyOD)" if h == 0 else f"held-out {h:g}"
    if h == 0 and fit_h > 0:
      where += f", the held-out {fit_h:g} fit"
    scored = "unseen training" if scored == "train_unseen" else scored
    print(f"| {ds} | {m} | {scored} | {where} | {100 * c:g}% | {100 * fprs.mean():.1f}% "
          f"| {100 * np.abs(gaps).max():.1f} | {within}/{len(rows)} | {expected:.1f} "
          f"| {p:.2g} |")


if __name__ == "__main__":
  main(sys.argv[1:])
