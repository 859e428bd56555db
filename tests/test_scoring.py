"""Scoring that scales: padded batches compiled once, folders streamed from disk, and
the command that scores a folder with a saved detector."""

import csv
import os
import re
import subprocess
import sys

import jax
import matplotlib.image
import numpy as np
import pytest
from PIL import Image

import dsplit_jax
from dsplit_jax import api
from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import scoring

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch


def _detector(batch_size=16):
  """A detector with freshly initialised parameters (scoring needs no training); its own
  eval_batch_size gives it programs no other test has compiled."""
  config = configs.get_preset("test")
  config.eval_batch_size = batch_size
  clf = dsplit_jax.OneClassClassifier(config=config)
  clf.image_shape = (28, 28, 1)
  clf._fitted = api._template(clf.config, clf.image_shape)
  return clf


class _Compilations:
  """Names of the XLA programs compiled while active (jax.monitoring's compile event)."""

  def __enter__(self):
    self.names = []
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def _listen(self, event, duration, **kwargs):
    if event == _COMPILE_EVENT:
      self.names.append(kwargs.get("fun_name", "?"))

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listen)


def _images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)


def test_scoring_1_7_and_1000_images_compiles_once():
  clf = _detector(batch_size=24)  # 1000 = 41 full batches and a padded one
  with _Compilations() as first:
    assert clf.score(_images(1)).shape == (1,)
  with _Compilations() as later:
    assert clf.score(_images(7)).shape == (7,)
    assert clf.score(_images(1000)).shape == (1000,)
    assert clf.decision_function(_images(3)).shape == (3,)
  assert [n for n in first.names if "classifier_scores" in n] == ["jit(classifier_scores)"], first.names
  assert later.names == []  # nothing compiled again: not the scorer, not a transfer


def test_padding_never_changes_a_score():
  clf = _detector()
  x = _images(40)
  together = clf.score(x)  # batches of 16, 16 and 8 + 8 blank images
  alone = np.concatenate([clf.score(x[i:i + 1]) for i in range(0, 40, 13)])
  np.testing.assert_allclose(alone, together[::13], rtol=1e-6)
  assert len(np.unique(together)) == 40  # the images are really scored, not the padding


def _write_pngs(folder, images, prefix="im"):
  folder.mkdir(parents=True, exist_ok=True)
  for i, im in enumerate(images):
    Image.fromarray(im[..., 0]).save(folder / f"{prefix}{i:03d}.png")


def test_files_are_streamed_in_chunks_and_scored_as_arrays_are(tmp_path, monkeypatch):
  clf = _detector()
  x = _images(37)
  _write_pngs(tmp_path / "new", x)
  decoded = []
  read_images = data.folder.read_images

  def counting(paths, image_size, channels):
    decoded.append(len(paths))
    return read_images(paths, image_size, channels)
  monkeypatch.setattr(data.folder, "read_images", counting)
  chunks = list(clf.score_files(str(tmp_path / "new")))
  assert decoded == [16, 16, 5]  # never more than a batch of images in memory
  assert [len(names) for names, _ in chunks] == [16, 16, 5]
  assert [n for names, _ in chunks for n in names] == [f"im{i:03d}.png" for i in range(37)]
  np.testing.assert_allclose(np.concatenate([s for _, s in chunks]), clf.score(x), rtol=1e-6)


def test_a_damaged_file_stops_the_stream_before_any_image_is_decoded(tmp_path, monkeypatch):
  _write_pngs(tmp_path / "new", _images(20))
  good = (tmp_path / "new" / "im019.png").read_bytes()
  (tmp_path / "new" / "im019.png").write_bytes(good[:len(good) // 2])  # truncated
  monkeypatch.setattr(data.folder, "read_images", lambda *a: pytest.fail("decoded"))
  with pytest.raises(data.DataError, match=r"im019.png: unreadable image"):
    next(_detector().score_files(str(tmp_path / "new")))


# --- the command: fit on a folder, save, then score another folder without training --


def _dsplit(*args):
  return subprocess.run([sys.executable, "-m", "dsplit_jax.main", *args],
                        capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """A detector fitted by the command with the `test` preset on 40 written images.

  40, as the detectors of tests/test_api.py: the same shapes give the same programs,
  which the suite's shared compilation cache then compiles once."""
  root = tmp_path_factory.mktemp("saved")
  rng = np.random.default_rng(1)
  _write_pngs(root / "good", rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8))
  _write_pngs(root / "new", rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8), "n")
  out = _dsplit("--preset=test", "--dataset=folder", f"--data_dir={root / 'good'}",
                f"--score_dir={root / 'new'}", f"--workdir={root / 'w'}",
                f"--scores_csv={root / 'fit.csv'}", "--set=image_size=28")
  assert out.returncode == 0, out.stderr[-2000:]
  return root


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_a_saved_detector_scores_a_folder_without_training(saved):
  new = saved / "new"
  (new / "notes.txt").write_text("not an image")  # other files are ignored
  (new / "sub").mkdir(exist_ok=True)
  _write_pngs(new / "sub", _images(1))  # and so are subfolders
  out = _dsplit(f"--detector={saved / 'w' / 'detector'}", f"--score_dir={new}",
                f"--scores_csv={saved / 'again.csv'}")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "step" not in out.stdout  # no training phase ran
  rows = _rows(saved / "again.csv")
  assert list(rows[0]) == ["file", "score", "label"]
  assert [r["file"] for r in rows] == [f"n{i:03d}.png" for i in range(5)]
  # The same numbers as the fitting command's own CSV, and labels from the threshold.
  assert rows == _rows(saved / "fit.csv")
  clf = dsplit_jax.OneClassClassifier.load(str(saved / "w" / "detector"))
  scores = [float(r["score"]) for r in rows]
  assert [int(r["label"]) for r in rows] == [int(s > clf.threshold_) for s in scores]
  images, _ = data.load_image_files(str(new), 28, channels=1)
  np.testing.assert_allclose(scores, clf.score(images), rtol=1e-5)
  # Beside each CSV, the picture of its most and least abnormal images and the scores.
  for csv_name in ("fit", "again"):
    picture = matplotlib.image.imread(saved / f"{csv_name}.png")
    assert picture.shape[0] > 200 and picture.shape[1] > 200
  assert "picture:" in out.stdout


def test_bad_input_is_one_line_and_exit_2_before_scoring(saved, tmp_path, capsys):
  det = str(saved / "w" / "detector")
  (tmp_path / "empty").mkdir()
  _write_pngs(tmp_path / "bad", _images(3))
  (tmp_path / "bad" / "im001.png").write_bytes(b"not a png")
  cases = [
      (str(tmp_path / "nodet"), str(saved / "new"), "detector.json: no saved detector here"),
      (det, str(tmp_path / "missing"), "missing: no such file or folder"),
      (det, str(tmp_path / "empty"), "empty: no image files"),
      (det, str(tmp_path / "bad"), "im001.png: unreadable image"),
      (det, None, "give the folder with --score_dir"),
  ]
  for detector, folder, message in cases:
    csv_path = tmp_path / "out.csv"
    assert scoring.run(detector, folder, str(csv_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not csv_path.exists() and not list(tmp_path.glob("out.csv.tmp*"))
  # Through the command: the same line, exit code 2, and training flags are refused.
  out = _dsplit(f"--detector={tmp_path / 'nodet'}", f"--score_dir={saved / 'new'}")
  assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
  assert "no saved detector here" in out.stderr
  out = _dsplit(f"--detector={det}", f"--score_dir={saved / 'new'}", "--dataset=mnist")
  assert out.returncode == 2 and "--dataset would train a new one" in out.stderr


def test_a_detector_without_a_threshold_is_refused_before_scoring(saved, tmp_path, capsys):
  import shutil
  shutil.copytree(saved / "w" / "detector", tmp_path / "old")
  os.remove(tmp_path / "old" / "decision_scores.npy")
  assert scoring.run(str(tmp_path / "old"), str(saved / "new"), str(tmp_path / "o.csv")) == 2
  assert "no threshold for the label column" in capsys.readouterr().err
  assert not (tmp_path / "o.csv").exists()


def test_a_truncated_jpeg_is_found_before_any_image_is_scored(tmp_path, monkeypatch):
  (tmp_path / "new").mkdir()
  for i, im in enumerate(_images(4)):
    Image.fromarray(im[..., 0]).save(tmp_path / "new" / f"im{i}.jpg", quality=90)
  good = (tmp_path / "new" / "im3.jpg").read_bytes()
  (tmp_path / "new" / "im3.jpg").write_bytes(good[:len(good) // 2])  # header intact
  Image.open(tmp_path / "new" / "im3.jpg").verify()  # what the header check alone passes
  monkeypatch.setattr(data.folder, "read_images", lambda *a: pytest.fail("decoded to score"))
  with pytest.raises(data.DataError, match=r"im3.jpg: unreadable image \(OSError: image "
                     "file is truncated"):
    scoring.check_folder(str(tmp_path / "new"))


# Names a spreadsheet would evaluate as formulas, and one that is not valid UTF-8.
_HOSTILE = {b'=HYPERLINK("evil.example").png': '\'=HYPERLINK("evil.example").png',
            b"=1+1.png": "'=1+1.png", b"+1.png": "'+1.png", b"-1.png": "'-1.png",
            b"@SUM(A1).png": "'@SUM(A1).png", b"\tx.png": "'\tx.png", b"\rx.png": "'\rx.png",
            b"caf\xe9 \xff.png": "caf\\xe9 \\xff.png", "ok é.png".encode(): "ok é.png"}


def test_hostile_file_names_are_written_as_text_a_spreadsheet_does_not_evaluate(saved,
                                                                                tmp_path):
  folder = os.fsencode(tmp_path / "new")
  os.mkdir(folder)
  for i, name in enumerate(_HOSTILE):
    Image.fromarray(_images(1, seed=i)[0, ..., 0]).save(os.path.join(folder, name), "PNG")
  out = _dsplit(f"--detector={saved / 'w' / 'detector'}", f"--score_dir={tmp_path / 'new'}",
                f"--scores_csv={tmp_path / 's.csv'}")
  assert out.returncode == 0, out.stderr[-2000:]
  with open(tmp_path / "s.csv", encoding="utf-8", newline="") as f:
    cells = [r["file"] for r in csv.DictReader(f)]
  assert sorted(cells) == sorted(_HOSTILE.values())
  assert not [c for c in cells if c.startswith(scoring.FORMULA_STARTS)]
  # The stated form is reversible: strip the quote of a formula start, read \xNN as a byte.
  back = {re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m[1], 16)]),
                 (c[1:] if c.startswith("'") else c).encode()) for c in cells}
  assert back == set(_HOSTILE)


def test_a_saved_object_array_of_scores_is_refused_naming_the_file(saved, tmp_path):
  import shutil
  shutil.copytree(saved / "w" / "detector", tmp_path / "d")
  np.save(tmp_path / "d" / "decision_scores.npy", np.array([{"a": 1}], dtype=object),
          allow_pickle=True)
  with pytest.raises(ValueError, match=f"^{tmp_path / 'd' / 'decision_scores.npy'}: cannot be "
                     "read \\(ValueError: Object arrays cannot be loaded"):
    dsplit_jax.OneClassClassifier.load(str(tmp_path / "d"))
