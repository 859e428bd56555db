"""The extension points, used as a user would: a new method is one entry of
`methods.METHODS`, a new dataset one entry of `data.datasets.DATASETS`, and both run end
to end through the command line's entry (`dsplit_jax.main`) with nothing else changed.

The toy dataset is three classes of IDX files written here and read by the real IDX
reader, its lookup, its count check and the records' file list; the toy method a
classifier with its own name. Both entries are monkeypatched in, so the tables are
as they were after each test.
"""

import json
import pathlib
import re

from absl import flags
import numpy as np
import pytest

from dsplit_jax import main as main_lib
from dsplit_jax import methods
from dsplit_jax.data import datasets
from test_data import write_idx

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOY_CLASSES = ("ring", "bar", "dots")
TRAIN_PER_CLASS, TEST_PER_CLASS = 6, 3
SIZE = 28

TOY_DATASET = datasets.Dataset(
    "toy_shapes", datasets.IDX, class_names=TOY_CLASSES, image_shape=(SIZE, SIZE, 1),
    class_counts={"train": (TRAIN_PER_CLASS,) * 3, "test": (TEST_PER_CLASS,) * 3},
    dir_names=("toy_shapes",),
    how_to_get="pass --data_dir holding toy_shapes/ with the four IDX files")
TOY_METHOD = methods.Method("toy_nn", "Toy", 8, trains_classifier=True,
                            losses=("intra_class",))


def _pictures(label, n, rng):
  """n noisy 28 x 28 pictures of one class: each class lights other pixels."""
  yy, xx = np.mgrid[:SIZE, :SIZE]
  shape = [np.hypot(yy - 14, xx - 14) < 8, abs(xx - 14) < 3, (yy % 6 < 2) & (xx % 6 < 2)]
  base = np.where(shape[label], 200, 30)
  return np.clip(base + rng.normal(0, 25, (n, SIZE, SIZE)), 0, 255).astype(np.uint8)


def _write(folder, per_class, stem, rng, extra_of_class0=0):
  labels = np.repeat(np.arange(len(TOY_CLASSES)), per_class)
  labels = np.concatenate([labels, np.zeros(extra_of_class0, int)])
  images = np.concatenate([_pictures(int(y), 1, rng) for y in labels])
  folder.mkdir(parents=True, exist_ok=True)
  prefix = "train" if stem == "train" else "t10k"
  write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
  write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)


@pytest.fixture
def toy_root(tmp_path, monkeypatch):
  """A data folder holding toy_shapes/, with both toy entries in their tables."""
  rng = np.random.default_rng(0)
  root = tmp_path / "data"
  _write(root / "toy_shapes", TRAIN_PER_CLASS, "train", rng)
  _write(root / "toy_shapes", TEST_PER_CLASS, "test", rng)
  monkeypatch.setitem(datasets.DATASETS, TOY_DATASET.name, TOY_DATASET)
  monkeypatch.setitem(methods.METHODS, TOY_METHOD.name, TOY_METHOD)
  monkeypatch.setenv("DSPLIT_DOWNLOAD", "0")
  monkeypatch.delenv("DSPLIT_DATA_DIR", raising=False)
  return root


def main_exit_code(*args) -> int:
  """`python -m dsplit_jax.main ARGS` in this process: its exit code."""
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["main", *args])
  try:
    main_lib.main(["main"])
  except SystemExit as e:
    return e.code
  finally:
    flags.FLAGS.unparse_flags()
  raise AssertionError("dsplit_jax.main.main returned instead of exiting")


def test_a_toy_method_on_a_toy_dataset_end_to_end(toy_root, tmp_path):
  work = tmp_path / "work"
  assert main_exit_code("--preset=test", "--dataset=toy_shapes", "--normal_class=1",
               "--method=toy_nn", f"--data_dir={toy_root}", f"--workdir={work}") == 0
  recs = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
  assert [(r["dataset"], r["method"], r["normal_class"]) for r in recs] == [
      ("toy_shapes", "toy_nn", 1)]
  assert 0 <= recs[0]["auc"] <= 1
  read = [f["path"] for f in recs[0]["data_files"]]
  assert len(read) == 4 and all("toy_shapes" in p and "idx" in p for p in read), read
  assert recs[0]["final_losses"], recs[0]  # the toy method's classifier trained


def test_the_toy_datasets_counts_are_checked(toy_root, tmp_path, capsys):
  # One more training image of class 0 than the table says: another dataset, refused
  # before anything trains.
  _write(toy_root / "toy_shapes", TRAIN_PER_CLASS, "train", np.random.default_rng(1),
         extra_of_class0=1)
  work = tmp_path / "work"
  assert main_exit_code("--preset=test", "--dataset=toy_shapes", "--normal_class=1",
               "--method=toy_nn", f"--data_dir={toy_root}", f"--workdir={work}") != 0
  error = capsys.readouterr().err.strip().splitlines()[-1]
  assert error.startswith(f"error: {toy_root / 'toy_shapes'}: the train split has 19 "
                          "images (7/6/6)"), error
  assert "toy_shapes's has 18 (6 per class)" in error, error
  assert not (work / "results.jsonl").exists()


def test_no_other_module_lists_datasets_by_name():
  """Two dataset names as adjacent string literals ("mnist", "fashion_mnist") are a list
  of datasets: it belongs in the table (datasets.py); elsewhere code asks it."""
  names = "|".join(datasets.DATASETS)
  listed = re.compile(rf"""["']({names})["']\s*,\s*["']({names})["']""")
  offenders = []
  for path in sorted([*ROOT.glob("dsplit_jax/**/*.py"), *ROOT.glob("experiments/*.py")]):
    if path.name == "datasets.py":
      continue
    for number, line in enumerate(path.read_text().splitlines(), 1):
      if listed.search(line):
        offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
  assert not offenders, "\n".join(offenders)
