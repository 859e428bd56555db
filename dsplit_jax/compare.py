"""Which method for these images: fit several on the normal ones, rank them on a
labelled validation set, keep the best.

  python -m dsplit_jax.compare --train=GOOD --val_good=VG --val_bad=VB --out=cmp \
      --methods=iforest,ocsvm,hog_ocsvm --preset=cpu

  rows = dsplit_jax.compare.compare(good, val_images, val_labels, out_dir="cmp")

Writes `<out>/compare.csv` and `compare.md` (one row per method: AUC, AUPR, the
false-positive and true-positive rates at the detector's own threshold, fit and score
seconds), `compare.png` (AUC and AUPR bars) and `<out>/best` (the detector with the best
AUC, `OneClassClassifier.load`-able). Without abnormal validation images nothing can be
ranked: the first method is fit and saved, and one line says so.
"""

from __future__ import annotations

import csv
import os
import sys
import time

import numpy as np
import sklearn.metrics

from dsplit_jax import api
from dsplit_jax import data
from dsplit_jax import methods as methods_lib
from dsplit_jax.data import folder

COLUMNS = ("method", "auc", "aupr", "fpr_at_threshold", "tpr_at_threshold", "fit_s",
           "score_s")
CLASSICAL = methods_lib.names(scorer="classical")  # fit in seconds on a CPU


def check_methods(names) -> list[str]:
  names = list(names)
  if not names:
    raise ValueError("give at least one method")
  for m in names:
    if m not in methods_lib.METHODS:
      raise ValueError(f"unknown method {m!r}; choose from {', '.join(methods_lib.NAMES)}")
  if len(set(names)) != len(names):
    raise ValueError(f"a method is named twice: {', '.join(names)}")
  return names


def evaluate(clf, val_images, val_labels) -> dict:
  """AUC, AUPR (average precision) and the rates at `clf.threshold_` on the labelled
  images (1 = abnormal), and the seconds scoring them took."""
  t0 = time.perf_counter()
  scores = clf.decision_function(val_images)
  score_s = time.perf_counter() - t0
  y = np.asarray(val_labels)
  flagged = scores > clf.threshold_
  return dict(auc=float(sklearn.metrics.roc_auc_score(y, scores)),
              aupr=float(sklearn.metrics.average_precision_score(y, scores)),
              fpr_at_threshold=float(flagged[y == 0].mean()),
              tpr_at_threshold=float(flagged[y == 1].mean()), score_s=score_s)


def compare(train_images, val_images=None, val_labels=None, *, methods=CLASSICAL,
            preset: str | None = None, out_dir: str | None = None,
            contamination: float = 0.1, seed: int = 0, verbose: bool = True,
            extra=None) -> list[dict]:
  """One row per method (`COLUMNS`), best AUC first; with `out_dir`, the table, the
  plot and the best detector are written there (`<out_dir>/best`).

  `extra`: {name: callable(train, val) -> val scores} of other detectors to put in
  the table (e.g. PyOD's KNN), scored but not saved.
  """
  methods = check_methods(methods)
  say = print if verbose else (lambda *a, **k: None)
  y = None if val_labels is None else np.asarray(val_labels)
  if y is not None and (val_images is None or len(y) != len(val_images)):
    raise ValueError("val_labels must label every validation image")
  if y is None or not (y == 1).any() or not (y == 0).any():
    say(f"cannot rank methods without labelled normal and abnormal validation images; "
        f"fitting {methods[0]} only")
    clf = api.OneClassClassifier(preset, method=methods[0], contamination=contamination,
                                 seed=seed, verbose=verbose).fit(train_images)
    if out_dir:
      clf.save(os.path.join(out_dir, "best"), overwrite=True)
    return []
  rows, fitted = [], {}
  for m in methods:
    t0 = time.perf_counter()
    clf = api.OneClassClassifier(preset, method=m, contamination=contamination, seed=seed,
                                 verbose=False).fit(train_images)
    fit_s = time.perf_counter() - t0
    rows.append(dict(method=m, fit_s=fit_s, **evaluate(clf, val_images, y)))
    fitted[m] = clf
    say(_line(rows[-1]), flush=True)
  for name, fn in (extra or {}).items():
    t0 = time.perf_counter()
    scores = np.asarray(fn(np.asarray(train_images), np.asarray(val_images)))
    rows.append(dict(method=name, auc=float(sklearn.metrics.roc_auc_score(y, scores)),
                     aupr=float(sklearn.metrics.average_precision_score(y, scores)),
                     fpr_at_threshold=float("nan"), tpr_at_threshold=float("nan"),
                     fit_s=time.perf_counter() - t0, score_s=float("nan")))
    say(_line(rows[-1]), flush=True)
  rows.sort(key=lambda r: -r["auc"])
  best = next(r["method"] for r in rows if r["method"] in fitted)
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    write_table(rows, os.path.join(out_dir, "compare.csv"))
    with open(os.path.join(out_dir, "compare.md"), "w") as f:
      f.write(markdown(rows))
    save_plot(rows, os.path.join(out_dir, "compare.png"))
    fitted[best].save(os.path.join(out_dir, "best"), overwrite=True)
    say(f"best: {best} (AUC {rows[0]['auc']:.3f} among the fitted methods); saved "
        f"{os.path.join(out_dir, 'best')}; table {os.path.join(out_dir, 'compare.md')}")
  return rows


def _line(r) -> str:
  return (f"{r['method']:>12}: AUC {r['auc']:.3f}  AUPR {r['aupr']:.3f}  FPR at threshold "
          f"{r['fpr_at_threshold']:.3f}  fit {r['fit_s']:.1f}s")


def write_table(rows, path: str):
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows({k: (f"{r[k]:.4g}" if k != "method" else r[k]) for k in COLUMNS}
                for r in rows)


def markdown(rows) -> str:
  head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
  return head + "".join("| " + " | ".join(r["method"] if k == "method" else f"{r[k]:.3g}"
                                         for k in COLUMNS) + " |\n" for r in rows)


def save_plot(rows, path: str):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(max(4, 1.2 * len(rows)), 3.2), layout="constrained")
  ax = fig.add_subplot()
  x = np.arange(len(rows))
  ax.bar(x - 0.2, [r["auc"] for r in rows], 0.4, label="AUC")
  ax.bar(x + 0.2, [r["aupr"] for r in rows], 0.4, label="AUPR")
  ax.set_xticks(x, [r["method"] for r in rows], rotation=30, fontsize=8)
  ax.set_ylim(0, 1), ax.legend(fontsize=8)
  FigureCanvasAgg(fig).print_png(path)


def load_folders(train_dir, val_good=None, val_bad=None, image_size=None):
  """(train images, validation images or None, their labels or None) from folders;
  every folder is read at the training images' size (its first image's, rounded down
  to a multiple of 4, unless `image_size`) and channels."""
  paths, _ = folder.image_paths(train_dir)
  folder.check_image_files(paths)
  if image_size is None:
    with folder._open(paths[0]) as im:  # pylint: disable=protected-access
      image_size = max(4, min(im.size) // 4 * 4)
  train, _ = data.load_image_files(train_dir, image_size)
  channels = train.shape[-1]
  parts = [(d, label) for d, label in ((val_good, 0), (val_bad, 1)) if d]
  if not parts:
    return train, None, None
  images, labels = [], []
  for d, label in parts:
    x, _ = data.load_image_files(d, image_size, channels=channels)
    images.append(x), labels.append(np.full(len(x), label))
  return train, np.concatenate(images), np.concatenate(labels)


def main(argv=None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(prog="python -m dsplit_jax.compare", description=__doc__.split(
      "\n\n")[0])
  p.add_argument("--train", required=True, help="folder of normal images to fit on")
  p.add_argument("--val_good", help="folder of normal validation images")
  p.add_argument("--val_bad", help="folder of abnormal validation images")
  p.add_argument("--methods", default=",".join(CLASSICAL),
                 help=f"comma list of {', '.join(methods_lib.NAMES)}, or all")
  p.add_argument("--preset", default=None, help="paper, cpu or test (default: this machine's)")
  p.add_argument("--image_size", type=int, default=None)
  p.add_argument("--contamination", type=float, default=0.1)
  p.add_argument("--out", default="compare")
  p.add_argument("--quiet", action="store_true")
  a = p.parse_args(argv)
  try:
    names = (methods_lib.NAMES if a.methods == "all"
             else [m.strip() for m in a.methods.split(",") if m.strip()])
    check_methods(names)
    api.OneClassClassifier(a.preset, contamination=a.contamination)  # range checks
    train, val, y = load_folders(a.train, a.val_good, a.val_bad, a.image_size)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 2
  except Exception as e:  # data.DataError and friends: one line
    print(f"error: {type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
    return 2
  compare(train, val, y, methods=names, preset=a.preset, out_dir=a.out,
          contamination=a.contamination, verbose=not a.quiet)
  return 0


if __name__ == "__main__":
  sys.exit(main())
