"""compare: several methods fit on a folder of normal images, ranked on labelled
validation folders, the best saved. Tiny random folders, classical methods."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import dsplit_jax
from dsplit_jax import compare


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  root = tmp_path_factory.mktemp("cmp")
  rng = np.random.default_rng(0)
  sets = {"train": (40, 0, 90), "good": (15, 0, 90), "bad": (15, 120, 255)}
  for name, (n, lo, hi) in sets.items():
    (root / name).mkdir()
    for i in range(n):
      Image.fromarray(rng.integers(lo, hi, (16, 16), dtype=np.uint8)).save(
          root / name / f"{i}.png")
  return root


def test_compare_ranks_saves_the_best_and_writes_the_table(folders, tmp_path):
  train, val, y = compare.load_folders(folders / "train", folders / "good", folders / "bad")
  assert train.shape == (40, 16, 16, 1) and val.shape == (30, 16, 16, 1)
  assert y.tolist() == [0] * 15 + [1] * 15
  extra = {"mean_pixel": lambda tr, va: va.reshape(len(va), -1).mean(axis=1)}
  rows = compare.compare(train, val, y, methods=["iforest", "ocsvm"], preset="test",
                         out_dir=str(tmp_path), verbose=False, extra=extra)
  assert sorted(r["method"] for r in rows) == ["iforest", "mean_pixel", "ocsvm"]
  aucs = [r["auc"] for r in rows]
  assert aucs == sorted(aucs, reverse=True) and min(aucs) > 0.9  # bright = abnormal
  table = list(csv.DictReader(open(tmp_path / "compare.csv")))
  assert [r["method"] for r in table] == [r["method"] for r in rows]
  assert set(table[0]) == set(compare.COLUMNS)
  assert (tmp_path / "compare.png").stat().st_size > 1000
  assert "| method | auc |" in (tmp_path / "compare.md").read_text()
  best = dsplit_jax.OneClassClassifier.load(str(tmp_path / "best"))
  fitted = next(r for r in rows if r["method"] != "mean_pixel")
  assert best.config.method == fitted["method"]
  assert compare.evaluate(best, val, y)["auc"] == pytest.approx(fitted["auc"])


def test_without_anomalies_it_says_so_and_fits_the_first_method(folders, tmp_path, capsys):
  train, _, _ = compare.load_folders(folders / "train")
  assert compare.compare(train, methods=["ocsvm", "iforest"], preset="test",
                         out_dir=str(tmp_path)) == []
  assert "cannot rank" in capsys.readouterr().out
  assert dsplit_jax.OneClassClassifier.load(str(tmp_path / "best")).config.method == "ocsvm"


def test_command_line(folders, tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "dsplit_jax.compare", f"--train={folders / 'train'}",
       f"--val_good={folders / 'good'}", f"--val_bad={folders / 'bad'}",
       "--methods=iforest,ocsvm", "--preset=test", f"--out={tmp_path / 'o'}"],
      capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "best:" in out.stdout and os.path.isdir(tmp_path / "o" / "best")
  bad = subprocess.run(
      [sys.executable, "-m", "dsplit_jax.compare", f"--train={folders / 'train'}",
       "--methods=iforest,svm", f"--out={tmp_path / 'x'}"],
      capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and "unknown method 'svm'" in bad.stderr
  assert bad.stderr.count("\n") == 1 and not os.path.exists(tmp_path / "x")


def test_bad_method_lists_are_refused():
  for names, message in [([], "at least one"), (["ocsvm", "ocsvm"], "twice"),
                         (["knn"], "unknown method 'knn'")]:
    with pytest.raises(ValueError, match=message):
      compare.check_methods(names)
