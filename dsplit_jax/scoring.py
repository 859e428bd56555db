"""Scores a folder of images into a CSV with a saved detector; no training.

  dsplit --detector=workdir/detector --score_dir=incoming --scores_csv=scores.csv

Every input is checked before the detector scores anything (its files, the folder,
each image, decoded in full, the CSV's folder). Images are read from disk
`eval_batch_size` at a time, so the folder's size does not matter, and the CSV is
written beside its target and renamed into place when every image is scored. Its file
column is safe to open in a spreadsheet: a name that begins with =, +, -, @, a tab or a
carriage return gets a leading single quote, and bytes that are not UTF-8 are written
as \\xNN (`csv_text`).
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np

from dsplit_jax import api
from dsplit_jax import data
from dsplit_jax import pictures
from dsplit_jax import workdir as workdir_lib
from dsplit_jax.data import folder

CSV_COLUMNS = ("file", "score", "label")
# A spreadsheet evaluates a cell that begins with one of these as a formula; such a
# cell gets a leading single quote (OWASP's advice against CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(name: str) -> str:
  """A file name as a CSV cell that is safe to open in a spreadsheet and to write as
  UTF-8: bytes that are not UTF-8 (`os.fsdecode`'s surrogate escapes) are written
  as \\xNN, and a formula start is quoted (`FORMULA_STARTS`)."""
  name = os.fsencode(name).decode("utf-8", "backslashreplace")
  return f"'{name}" if name.startswith(FORMULA_STARTS) else name


def check_folder(score_dir) -> int:
  """Number of images in `score_dir`; DataError naming a missing folder, an empty one
  or the first unreadable image."""
  paths, _ = folder.image_paths(score_dir)
  folder.check_image_files(paths)
  return len(paths)


def write_scores_csv(clf: api.OneClassClassifier, score_dir, out: str, *,
                     picture: bool = True) -> int:
  """Writes `out` with one row per image of `score_dir`: file, score and label (1 =
  abnormal: above `clf.threshold_`, as `clf.predict`); returns the number of rows.
  With `picture`, the most and least abnormal images and the histogram of the scores
  with the threshold go beside it (`pictures.picture_path(out)`).

  The images must have been checked (`check_folder`)."""
  threshold = clf.threshold_
  all_names, all_scores = [], []
  with workdir_lib.replacing(out) as tmp:
    with open(tmp, "w", newline="", encoding="utf-8") as f:
      w = csv.writer(f)
      w.writerow(CSV_COLUMNS)
      for names, scores in clf.score_files(score_dir, check=False):
        for name, s in zip(names, scores):
          w.writerow([csv_text(name), f"{float(s):.6g}", int(s > threshold)])
        all_names += list(names)
        all_scores += [float(s) for s in scores]
  if picture and all_names:
    pictures.picture_beside_csv(clf, out, all_names, np.array(all_scores), score_dir)
  return len(all_names)


def picture_path(scores_csv: str) -> str:
  """Where `write_scores_csv` puts the picture of a scores CSV."""
  return pictures.picture_path(scores_csv)


def check_detector(detector_dir: str):
  for name in ("detector.json", "params.msgpack"):
    if not os.path.isfile(os.path.join(detector_dir, name)):
      raise FileNotFoundError(f"{os.path.join(detector_dir, name)}: no saved detector "
                              f"here (a fit saves one: <workdir>/detector)")


def run(detector_dir: str, score_dir: str | None, scores_csv: str) -> int:
  """The command's exit code: 0, or 2 with one line on stderr for bad input."""
  try:
    if not score_dir:
      raise ValueError("--detector scores images: give the folder with --score_dir")
    check_detector(detector_dir)
    count = check_folder(score_dir)
    workdir_lib.check_writable(os.path.dirname(os.path.abspath(scores_csv)),
                               "--scores_csv folder")
    clf = api.OneClassClassifier.load(detector_dir)
    if clf.threshold_ is None:
      raise ValueError(f"{detector_dir} was saved without training scores, so it has no "
                       "threshold for the label column; fit it again")
    print(f"scoring {count} images of {score_dir} with {detector_dir} "
          f"({clf.config.method}, images {'x'.join(map(str, clf.image_shape))})", flush=True)
  except (data.DataError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  rows = write_scores_csv(clf, score_dir, scores_csv)
  print(f"{rows} scores (higher = more abnormal; label 1 = above the threshold "
        f"{clf.threshold_:.6g}): {scores_csv}; picture: {picture_path(scores_csv)}")
  return 0
