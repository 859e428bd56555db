"""The picture of a scored folder: the extreme images and the histogram of the scores."""

import numpy as np
import pytest
from PIL import Image

from dsplit_jax import pictures


def test_extremes_are_the_highest_and_lowest_scores():
  high, low = pictures.extremes([0.5, 3.0, -1.0, 2.0, 0.0], 2)
  assert high.tolist() == [1, 3] and low.tolist() == [2, 4]
  high, low = pictures.extremes([1.0, 2.0], 5)  # fewer images than 2k: rows share them
  assert high.tolist() == [1, 0] and low.tolist() == [0, 1]


def test_picture_path_is_beside_the_csv():
  assert pictures.picture_path("out/scores.csv") == "out/scores.png"


def _folder(tmp_path, n=12):
  rng = np.random.default_rng(0)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / f"{i}.png")
  return [f"{i}.png" for i in range(n)], rng.normal(size=n)


def test_picture_of_a_scored_folder(tmp_path):
  names, scores = _folder(tmp_path)
  out = pictures.save_scores_picture(str(tmp_path / "p" / "scores.png"), names, scores,
                                     tmp_path, threshold=0.5, image_size=28, channels=1,
                                     k=4, title="test folder")
  with Image.open(out) as im:
    assert im.format == "PNG" and im.width > 400 and im.height > 300
    pixels = np.asarray(im.convert("RGB"))
  assert pixels.std() > 10  # images and a histogram, not a blank canvas


def test_picture_refuses_names_without_scores(tmp_path):
  names, scores = _folder(tmp_path, 3)
  with pytest.raises(ValueError, match="one score per name"):
    pictures.save_scores_picture(str(tmp_path / "p.png"), names, scores[:2], tmp_path,
                                 threshold=None, image_size=28, channels=1)


def test_picture_of_a_scores_csv_written_by_a_detector(tmp_path):
  import dsplit_jax
  from dsplit_jax import scoring
  (tmp_path / "new").mkdir()
  names, _ = _folder(tmp_path / "new")
  rng = np.random.default_rng(1)
  train = rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
  clf = dsplit_jax.OneClassClassifier("test", method="iforest", verbose=False).fit(train)
  csv_path = str(tmp_path / "out" / "scores.csv")
  assert scoring.write_scores_csv(clf, str(tmp_path / "new"), csv_path) == len(names)
  out = pictures.picture_of_scores_csv(clf, csv_path, str(tmp_path / "new"), k=3)
  assert out == str(tmp_path / "out" / "scores.png")
  with Image.open(out) as im:
    assert im.format == "PNG"
