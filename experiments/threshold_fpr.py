"""Nominal vs observed false-positive rate of the detector's threshold.

  DSPLIT_DATA_DIR=... python -m experiments.threshold_fpr --methods=iforest,ocsvm \
      --datasets=mnist,fashion_mnist --out=experiments/threshold_fpr.csv

For each dataset, normal class and method: a `OneClassClassifier` fit on the class's
training images with the threshold placed in sample (`threshold_holdout=0`, PyOD's
rule) and on a held-out fifth (0.2, the default), then the share of the class's TEST
images (all normal) scored above `threshold_` at each contamination. One CSV row per
(dataset, method, class, holdout, contamination).
"""

import argparse
import csv
import time

import numpy as np

import dsplit_jax
from dsplit_jax import data


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--datasets", default="mnist,fashion_mnist")
  p.add_argument("--methods", default="iforest,ocsvm")
  p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
  p.add_argument("--holdouts", default="0,0.2")
  p.add_argument("--contaminations", default="0.05,0.1")
  p.add_argument("--max_train", type=int, default=0, help="first N normal training images (0: all)")
  p.add_argument("--preset", default="cpu")
  p.add_argument("--out", default="experiments/threshold_fpr.csv")
  a = p.parse_args()
  cont = [float(c) for c in a.contaminations.split(",")]
  rows = []
  for ds in a.datasets.split(","):
    x, y = data.load(ds, "train")
    xt, yt = data.load(ds, "test")
    for method in a.methods.split(","):
      for c in map(int, a.classes.split(",")):
        train = x[y == c][:a.max_train or None]
        test = xt[yt == c]
        for h in map(float, a.holdouts.split(",")):
          t0 = time.time()
          clf = dsplit_jax.OneClassClassifier(a.preset, method=method, threshold_holdout=h,
                                              verbose=False).fit(train)
          scores = clf.decision_function(test)
          for k in cont:
            # The threshold of contamination k from the same fitted scores.
            clf.set_params(contamination=k)
            clf._set_decision_scores(clf.decision_scores_, clf.holdout_scores_,
                                     clf.threshold_source_)
            fpr = float(np.mean(scores > clf.threshold_))
            rows.append(dict(dataset=ds, method=method, normal_class=c, holdout=h,
                             contamination=k, n_train=len(train), n_test=len(test),
                             observed_fpr=round(fpr, 4)))
            print(rows[-1], f"{time.time() - t0:.0f}s", flush=True)
          with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
  main()
