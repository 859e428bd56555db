"""Nominal vs observed false-positive rate of the detector's threshold.

  DSPLIT_DATA_DIR=... python -m experiments.threshold_fpr --methods=iforest,ocsvm \
      --datasets=mnist,fashion_mnist --out=experiments/threshold_fpr.csv

For each dataset, normal class and method: a `OneClassClassifier` fit on the class's
training images with the threshold placed in sample (`threshold_holdout=0`, PyOD's
rule) and on a held-out fifth (0.2, the default), then the share of the class's TEST
images (all normal) scored above `threshold_` at each contamination. One CSV row per
(dataset, method, class, holdout, contamination).

`--same_fit` fits once per class, at the non-zero holdouts only, and gives both rules
from that one model: the held-out percentile, and PyOD's percentile of the scores of
the images it was fitted on (rows with `holdout` 0, `fit_holdout` the fit's share).
A deep method's fits take minutes each, and comparing the rules on one model removes
the fit-to-fit spread from the difference.

`--unseen N` withholds N of the class's training images (a seeded draw) from the fit
and also reports the rate on them (`evaluated_on` = train_unseen). Those images are
exchangeable with the fitted ones, which is what the threshold's promise assumes; the
test split is not always (MNIST's test digits score lower than its training digits
for every method), so the two rows separate the rule's error from the data's shift.

Rows already in `--out` are kept and their fits skipped, so a killed run resumes.
"""

import argparse
import csv
import os
import time

import numpy as np

import dsplit_jax
from dsplit_jax import api
from dsplit_jax import data

FIELDS = ("dataset", "method", "normal_class", "holdout", "fit_holdout", "contamination",
          "n_train", "n_test", "observed_fpr", "unseen", "evaluated_on")


def _done(path):
  """{(dataset, method, class, fit_holdout)} already in `path`, and its rows."""
  if not os.path.exists(path):
    return set(), []
  rows = list(csv.DictReader(open(path)))
  for r in rows:
    r["fit_holdout"] = r.get("fit_holdout") or r["holdout"]
    r["unseen"] = r.get("unseen") or "0"
    r["evaluated_on"] = r.get("evaluated_on") or "test"
  return {(r["dataset"], r["method"], int(r["normal_class"]), float(r["fit_holdout"]),
           int(r["unseen"])) for r in rows}, rows


def _write(path, rows):
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=FIELDS)
    w.writeheader()
    w.writerows(rows)
  os.replace(tmp, path)


def _rules(clf, n_fit, same_fit):
  """(holdout label, n images the percentile is placed on, scores) per threshold rule."""
  rules = [(clf.threshold_holdout, len(clf.holdout_scores_), clf.holdout_scores_)]
  if same_fit:
    fit_idx, _ = api.holdout_split(n_fit, clf.threshold_holdout, int(clf.seed))
    rules.append((0.0, len(fit_idx), clf.decision_scores_[fit_idx]))
  return rules


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--datasets", default="mnist,fashion_mnist")
  p.add_argument("--methods", default="iforest,ocsvm")
  p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
  p.add_argument("--holdouts", default="0,0.2")
  p.add_argument("--contaminations", default="0.05,0.1")
  p.add_argument("--max_train", type=int, default=0, help="first N normal training images (0: all)")
  p.add_argument("--unseen", type=int, default=0,
                 help="withhold N training images from the fit and report the rate on them too")
  p.add_argument("--preset", default="cpu")
  p.add_argument("--same_fit", action="store_true",
                 help="one fit per class; both rules from it (see the module's text)")
  p.add_argument("--out", default="experiments/threshold_fpr.csv")
  a = p.parse_args(argv)
  if a.unseen < 0:
    p.error(f"--unseen must be >= 0, got {a.unseen}")
  cont = [float(c) for c in a.contaminations.split(",")]
  holdouts = [float(h) for h in a.holdouts.split(",")]
  if a.same_fit:
    holdouts = [h for h in holdouts if h > 0]
  done, rows = _done(a.out)
  for ds in a.datasets.split(","):
    x, y = data.load(ds, "train")
    xt, yt = data.load(ds, "test")
    for method in a.methods.split(","):
      for c in map(int, a.classes.split(",")):
        train = x[y == c][:a.max_train or None]
        evals = {"test": xt[yt == c]}
        if a.unseen:
          if a.unseen >= len(train):
            raise SystemExit(f"--unseen={a.unseen} leaves no {ds} class {c} image to fit")
          order = np.random.default_rng(c).permutation(len(train))
          evals["train_unseen"] = train[order[:a.unseen]]
          train = train[np.sort(order[a.unseen:])]
        for h in holdouts:
          if (ds, method, c, h, a.unseen) in done:
            continue
          t0 = time.time()
          clf = dsplit_jax.OneClassClassifier(a.preset, method=method, threshold_holdout=h,
                                              verbose=False).fit(train)
          for where, images in evals.items():
            scores = clf.decision_function(images)
            for label, n_used, placed_on in _rules(clf, len(train), a.same_fit):
              for k in cont:
                fpr = float(np.mean(scores > api.threshold(placed_on, k)))
                rows.append(dict(dataset=ds, method=method, normal_class=c, holdout=label,
                                 fit_holdout=h, contamination=k,
                                 n_train=n_used if label == 0 else len(train),
                                 n_test=len(images), observed_fpr=round(fpr, 4),
                                 unseen=a.unseen, evaluated_on=where))
                print(rows[-1], f"{time.time() - t0:.0f}s", flush=True)
          _write(a.out, rows)


if __name__ == "__main__":
  main()
