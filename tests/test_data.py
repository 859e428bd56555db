"""Data layer: readers on tiny files written here, corrupt variants, real datasets."""

import dataclasses
import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from dsplit_jax import data
from dsplit_jax.data import datasets
from dsplit_jax.data import preprocessing
from dsplit_jax.data import sources

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


def replace_datasets(monkeypatch, names=None, **fields):
  """The table's entries `names` (default: all) with `fields` changed, until the test
  ends: one place holds a dataset's facts, so a test changes them there."""
  for name in datasets.DATASETS if names is None else names:
    monkeypatch.setitem(datasets.DATASETS, name,
                        dataclasses.replace(datasets.DATASETS[name], **fields))


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
  """Tests see no real datasets unless they ask, and never download or reach tfds; the
  tiny files written here are not held to the benchmarks' class counts."""
  monkeypatch.delenv("DSPLIT_DATA_DIR", raising=False)
  monkeypatch.setenv("DSPLIT_DOWNLOAD", "0")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
  replace_datasets(monkeypatch, class_counts={}, debian_dirs=())
  monkeypatch.setattr(sources, "_tensorflow_available", lambda: False)


def raises_data_error(fn, *names):
  """Calls fn, expects a one-line DataError that mentions every one of `names`."""
  with pytest.raises(data.DataError) as info:
    fn()
  message = str(info.value)
  assert "\n" not in message
  for name in names:
    assert str(name) in message, message
  return message


# --- IDX ---------------------------------------------------------------------


def idx_bytes(array):
  array = np.asarray(array, np.uint8)
  return (bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
          + array.tobytes())


def write_idx(path, array, gz=True):
  raw = idx_bytes(array)
  path = path.with_name(path.name + ".gz") if gz else path
  path.write_bytes(gzip.compress(raw) if gz else raw)
  return path


def write_mnist(directory, gz=True, n_train=12, n_test=6, seed=0):
  """Four IDX files like MNIST's, with random pixels; returns {split: (x, y)}."""
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  out = {}
  for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    write_idx(directory / f"{prefix}-images-idx3-ubyte", x, gz)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte", y, gz)
    out[split] = (x[..., None], y.astype(np.int64))
  return out


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
  expected = write_mnist(tmp_path, gz=gz)
  for split in ("train", "test"):
    x, y = data.load("mnist", split, data_dir=tmp_path)
    assert x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, expected[split][0])
    np.testing.assert_array_equal(y, expected[split][1])
    x[0, 0, 0, 0] = 1  # Callers own the arrays.


def test_data_dir_may_be_parent(tmp_path):
  expected = write_mnist(tmp_path / "fashion-mnist")
  x, _ = data.load("fashion_mnist", "test", data_dir=tmp_path)
  np.testing.assert_array_equal(x, expected["test"][0])


def test_env_var_is_a_parent_folder(tmp_path, monkeypatch):
  expected = write_mnist(tmp_path / "mnist")
  write_mnist(tmp_path, seed=1)  # Files directly in $DSPLIT_DATA_DIR are not used.
  monkeypatch.setenv("DSPLIT_DATA_DIR", str(tmp_path))
  x, _ = data.load("mnist", "train")
  np.testing.assert_array_equal(x, expected["train"][0])


def test_debian_location(tmp_path, monkeypatch):
  expected = write_mnist(tmp_path / "fashion-mnist")
  replace_datasets(monkeypatch, ["fashion_mnist"],
                   debian_dirs=(str(tmp_path / "fashion-mnist"),))
  x, _ = data.load("fashion_mnist", "train")
  np.testing.assert_array_equal(x, expected["train"][0])


def test_image_size_resizes(tmp_path):
  write_mnist(tmp_path)
  x, _ = data.load("mnist", "test", data_dir=tmp_path, image_size=32)
  assert x.shape == (6, 32, 32, 1) and x.dtype == np.uint8


def test_idx_truncated(tmp_path):
  write_mnist(tmp_path, gz=False)
  path = tmp_path / "train-images-idx3-ubyte"
  path.write_bytes(path.read_bytes()[:-100])
  message = raises_data_error(lambda: data.load("mnist", "train", data_dir=tmp_path), path)
  assert "truncated" in message


def test_idx_truncated_gzip(tmp_path):
  write_mnist(tmp_path, gz=True)
  path = tmp_path / "t10k-images-idx3-ubyte.gz"
  path.write_bytes(path.read_bytes()[:200])
  raises_data_error(lambda: data.load("mnist", "test", data_dir=tmp_path), path, "gzip")


def test_idx_bad_magic(tmp_path):
  write_mnist(tmp_path, gz=False)
  path = tmp_path / "train-labels-idx1-ubyte"
  path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
  raises_data_error(lambda: data.load("mnist", "train", data_dir=tmp_path), path, "magic")


def test_idx_images_file_with_label_shape(tmp_path):
  write_mnist(tmp_path, gz=False)
  path = tmp_path / "train-images-idx3-ubyte"
  path.write_bytes(idx_bytes(np.zeros(12)))
  raises_data_error(lambda: data.load("mnist", "train", data_dir=tmp_path), path,
                    "dimensions")


def test_idx_label_out_of_range(tmp_path):
  write_mnist(tmp_path)
  path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", [0, 1, 2, 3, 4, 10])
  raises_data_error(lambda: data.load("mnist", "test", data_dir=tmp_path), path, "10")


def test_idx_count_mismatch(tmp_path):
  write_mnist(tmp_path)
  labels = write_idx(tmp_path / "t10k-labels-idx1-ubyte", [0, 1, 2])
  images = tmp_path / "t10k-images-idx3-ubyte.gz"
  raises_data_error(lambda: data.load("mnist", "test", data_dir=tmp_path), images, labels)


def test_idx_missing_file_in_claimed_folder(tmp_path, monkeypatch):
  write_mnist(tmp_path / "good" / "mnist")
  write_mnist(tmp_path / "broken")
  (tmp_path / "broken" / "t10k-labels-idx1-ubyte.gz").unlink()
  # A broken copy is reported, not silently replaced by the next location.
  monkeypatch.setenv("DSPLIT_DATA_DIR", str(tmp_path / "good"))
  raises_data_error(lambda: data.load("mnist", "test", data_dir=tmp_path / "broken"),
                    tmp_path / "broken", "t10k-labels-idx1-ubyte")


def test_offline_path_never_imports_tensorflow(tmp_path):
  write_mnist(tmp_path)
  code = ("import dataclasses, sys; from dsplit_jax import data; t = data.DATASETS; "
          "t['mnist'] = dataclasses.replace(t['mnist'], class_counts={}); "
          f"data.load('mnist', 'train', data_dir={str(tmp_path)!r}); "
          "data.one_class_task('mnist', 0, data_dir=" + repr(str(tmp_path)) + "); "
          "bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]; "
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- not found ---------------------------------------------------------------


def test_not_found_lists_places_and_how_to_get_it():
  message = raises_data_error(
      lambda: data.load("fashion_mnist", "train"),
      "looked in", "$DSPLIT_DATA_DIR", "apt-get install dataset-fashion-mnist",
      'pip install "dsplit_jax[tfds]"', "python -m dsplit_jax.data.download fashion_mnist",
      "--data_dir", "download skipped")
  assert "TensorFlow" in message


def test_an_explicit_data_dir_is_never_replaced(tmp_path, monkeypatch):
  write_mnist(tmp_path / "good" / "mnist")
  monkeypatch.setenv("DSPLIT_DATA_DIR", str(tmp_path / "good"))
  monkeypatch.setattr(sources, "_tensorflow_available", lambda: True)
  raises_data_error(lambda: data.load("mnist", "train", data_dir=tmp_path / "nope"),
                    f"data_dir {tmp_path / 'nope'} does not exist")
  (tmp_path / "empty").mkdir()
  raises_data_error(lambda: data.load("mnist", "train", data_dir=tmp_path / "empty"),
                    f"data_dir {tmp_path / 'empty'} holds no mnist files",
                    tmp_path / "empty" / "mnist", "never replaced by $DSPLIT_DATA_DIR")
  assert data.load("mnist", "train")[0].shape == (12, 28, 28, 1)  # the env copy is fine


def test_class_counts_must_be_the_benchmarks(tmp_path, monkeypatch):
  write_mnist(tmp_path, n_train=20)  # labels 0..9 twice
  replace_datasets(monkeypatch, ["mnist"], class_counts={"train": (2,) * 10})
  assert data.load("mnist", "train", data_dir=tmp_path)[0].shape == (20, 28, 28, 1)
  replace_datasets(monkeypatch, ["mnist"], class_counts={"train": (3,) * 9 + (2,)})
  raises_data_error(lambda: data.load("mnist", "train", data_dir=tmp_path), tmp_path,
                    "has 20 images (2 per class)", "mnist's has 29 (3/3/3/3/3/3/3/3/3/2)",
                    "another dataset")


def test_source_files_name_what_was_read(tmp_path):
  import hashlib
  write_mnist(tmp_path / "mnist", gz=False)
  files = data.source_files("mnist", "test", tmp_path)
  assert files == [str(tmp_path / "mnist" / "t10k-images-idx3-ubyte"),
                   str(tmp_path / "mnist" / "t10k-labels-idx1-ubyte")]
  [images, _] = data.describe_files(files)
  raw = (tmp_path / "mnist" / "t10k-images-idx3-ubyte").read_bytes()
  assert images["sha256"] == hashlib.sha256(raw).hexdigest() and images["bytes"] == len(raw)
  save_png(tmp_path / "f" / "train" / "a" / "0.png")
  save_png(tmp_path / "f" / "test" / "a" / "0.png")
  [folder] = data.describe_files(data.source_files("folder", "train", tmp_path / "f"))
  assert folder["path"] == str(tmp_path / "f") and folder["files"] == 2


def test_not_found_names_env_folder(tmp_path, monkeypatch):
  monkeypatch.setenv("DSPLIT_DATA_DIR", str(tmp_path))
  raises_data_error(lambda: data.load("cifar10", "test"), tmp_path / "cifar10")


def test_tfds_failure_is_a_data_error(monkeypatch):
  def offline(name, split):
    raise ConnectionError("no network\nsecond line")
  monkeypatch.setattr(sources, "_tensorflow_available", lambda: True)
  monkeypatch.setattr(sources, "_load_tfds", offline)
  raises_data_error(lambda: data.load("mnist", "test"), "tensorflow-datasets failed",
                    "no network")


def test_unknown_names_are_value_errors():
  with pytest.raises(ValueError):
    data.load("imagenet", "train")
  with pytest.raises(ValueError):
    data.load("mnist", "validation")


# --- CIFAR-10 ----------------------------------------------------------------

BIN_NAMES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
PY_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_batches(seed=0, per_batch=4):
  """[(images HWC, labels)] for the five train batches and the test batch."""
  rng = np.random.default_rng(seed)
  return [(rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8),
           rng.integers(0, 10, per_batch).astype(np.int64)) for _ in range(6)]


def bin_blob(images, labels):
  chw = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
  return np.concatenate([np.asarray(labels, np.uint8)[:, None], chw], axis=1).tobytes()


def py_blob(images, labels, protocol=4):
  return pickle.dumps({b"batch_label": b"batch", b"labels": [int(v) for v in labels],
                       b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                       b"filenames": [b"x.png"] * len(labels)}, protocol=protocol)


def write_cifar(root, layout, batches):
  """Writes CIFAR-10 in `layout` (bin, py, bin_tar, py_tar) under root."""
  binary = layout.startswith("bin")
  folder = "cifar-10-batches-bin" if binary else "cifar-10-batches-py"
  names = BIN_NAMES if binary else PY_NAMES
  blobs = {n: (bin_blob if binary else py_blob)(*b) for n, b in zip(names, batches)}
  root.mkdir(parents=True, exist_ok=True)
  if layout.endswith("tar"):
    archive = root / ("cifar-10-binary.tar.gz" if binary else "cifar-10-python.tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
      for name, blob in [("readme.html", b"hi")] + list(blobs.items()):
        info = tarfile.TarInfo(f"{folder}/{name}")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    return archive
  (root / folder).mkdir()
  for name, blob in blobs.items():
    (root / folder / name).write_bytes(blob)
  return root / folder


@pytest.mark.parametrize("layout", ["bin", "py", "bin_tar", "py_tar"])
def test_cifar_layouts(tmp_path, layout):
  batches = cifar_batches()
  write_cifar(tmp_path / "cifar10", layout, batches)
  x, y = data.load("cifar10", "train", data_dir=tmp_path)
  np.testing.assert_array_equal(x, np.concatenate([b[0] for b in batches[:5]]))
  np.testing.assert_array_equal(y, np.concatenate([b[1] for b in batches[:5]]))
  x, y = data.load("cifar10", "test", data_dir=tmp_path / "cifar10")
  assert x.shape == (4, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
  np.testing.assert_array_equal(x, batches[5][0])


def test_cifar_batches_folder_as_data_dir(tmp_path):
  batches = cifar_batches()
  folder = write_cifar(tmp_path, "bin", batches)
  x, _ = data.load("cifar10", "test", data_dir=folder)
  np.testing.assert_array_equal(x, batches[5][0])


def test_cifar_channel_order():
  image = np.zeros((1, 32, 32, 3), np.uint8)
  image[0, 1, 2] = (10, 20, 30)  # Row 1, column 2, RGB.
  x, y = data.cifar.parse_bin_batch(bin_blob(image, [7]), "blob")
  np.testing.assert_array_equal(x, image)
  assert y.tolist() == [7]


def test_cifar_bin_truncated(tmp_path):
  folder = write_cifar(tmp_path, "bin", cifar_batches())
  path = folder / "data_batch_3.bin"
  path.write_bytes(path.read_bytes()[:-1])
  raises_data_error(lambda: data.load("cifar10", "train", data_dir=tmp_path), path,
                    "3073")


def test_cifar_bin_label_out_of_range(tmp_path):
  batches = cifar_batches()
  batches[5] = (batches[5][0], np.array([0, 1, 12, 3]))
  folder = write_cifar(tmp_path, "bin", batches)
  raises_data_error(lambda: data.load("cifar10", "test", data_dir=tmp_path),
                    folder / "test_batch.bin", "12")


def test_cifar_py_count_mismatch(tmp_path):
  batches = cifar_batches()
  folder = write_cifar(tmp_path, "py", batches)
  path = folder / "test_batch"
  path.write_bytes(py_blob(batches[5][0], [1, 2, 3]))
  raises_data_error(lambda: data.load("cifar10", "test", data_dir=tmp_path), path)


def test_cifar_py_label_out_of_range(tmp_path):
  batches = cifar_batches()
  batches[0] = (batches[0][0], np.array([0, -1, 2, 3]))
  folder = write_cifar(tmp_path, "py", batches)
  raises_data_error(lambda: data.load("cifar10", "train", data_dir=tmp_path),
                    folder / "data_batch_1", "-1")


def test_cifar_py_protocol_3(tmp_path):
  images, labels = cifar_batches()[5]
  x, y = data.cifar.parse_py_batch(py_blob(images, labels, protocol=3), "blob")
  np.testing.assert_array_equal(x, images)
  np.testing.assert_array_equal(y, labels)


def test_cifar_missing_batch(tmp_path):
  folder = write_cifar(tmp_path, "bin", cifar_batches())
  (folder / "data_batch_5.bin").unlink()
  raises_data_error(lambda: data.load("cifar10", "train", data_dir=tmp_path),
                    folder / "data_batch_5.bin")


def test_cifar_archive_missing_member(tmp_path):
  archive = tmp_path / "cifar-10-binary.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
    blob = bin_blob(*cifar_batches()[5])
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))
  raises_data_error(lambda: data.load("cifar10", "train", data_dir=tmp_path), archive,
                    "data_batch_1.bin")


def test_cifar_archive_truncated(tmp_path):
  archive = write_cifar(tmp_path, "py_tar", cifar_batches())
  archive.write_bytes(archive.read_bytes()[:300])
  raises_data_error(lambda: data.load("cifar10", "test", data_dir=tmp_path), archive)


class _RunsCommand:
  """Unpickling this calls os.system: what a tampered batch file could do."""

  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


class _CallsEval:

  def __reduce__(self):
    return (eval, ("1 + 1",))


@pytest.mark.parametrize("layout", ["py", "py_tar"])
def test_malicious_pickle_is_refused(tmp_path, layout):
  marker = tmp_path / "pwned"
  batches = cifar_batches()
  target = write_cifar(tmp_path / "cifar10", layout, batches)
  evil = pickle.dumps({b"data": _RunsCommand(f"touch {marker}"), b"labels": [0]})
  if layout == "py":
    (target / "test_batch").write_bytes(evil)
  else:
    with tarfile.open(target, "w:gz") as tar:
      info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
      info.size = len(evil)
      tar.addfile(info, io.BytesIO(evil))
  message = raises_data_error(lambda: data.load("cifar10", "test", data_dir=tmp_path),
                              "test_batch", "system")
  assert "refusing" in message
  assert not marker.exists()


def test_pickle_of_other_globals_is_refused():
  blob = pickle.dumps({b"data": _CallsEval(), b"labels": [0]})
  raises_data_error(lambda: data.cifar.parse_py_batch(blob, "blob"), "blob", "eval")


# --- folders of images -------------------------------------------------------


def save_png(path, rgb=False, size=(20, 12), value=100):
  path.parent.mkdir(parents=True, exist_ok=True)
  array = np.full(size[::-1] + ((3,) if rgb else ()), value, np.uint8)
  Image.fromarray(array).save(path)


def test_folder_split_layout(tmp_path):
  for split, classes in (("train", "ab"), ("test", "abc")):
    for c in classes:
      for i in range(2):
        save_png(tmp_path / split / c / f"{i}.png")
  (tmp_path / "train" / "a" / "notes.txt").write_text("ignored")
  assert data.class_names("folder", tmp_path) == ["a", "b", "c"]
  assert data.num_classes("folder", tmp_path) == 3
  x, y = data.load("folder", "train", data_dir=tmp_path)
  assert x.shape == (4, 32, 32, 1) and x.dtype == np.uint8
  assert y.tolist() == [0, 0, 1, 1] and y.dtype == np.int64
  x, y = data.load("folder", "test", data_dir=tmp_path, image_size=16)
  assert x.shape == (6, 16, 16, 1)
  assert y.tolist() == [0, 0, 1, 1, 2, 2]
  raises_data_error(lambda: data.load("folder", "val", data_dir=tmp_path),
                    tmp_path / "val", "test, train")


def test_folder_split_without_class_folders(tmp_path):
  save_png(tmp_path / "train" / "a" / "0.png")
  save_png(tmp_path / "test" / "0.png")
  raises_data_error(lambda: data.load("folder", "test", data_dir=tmp_path),
                    tmp_path / "test", "class subfolders")


def test_folder_colour_anywhere_makes_every_split_rgb(tmp_path):
  save_png(tmp_path / "train" / "a" / "0.png")
  save_png(tmp_path / "test" / "a" / "0.jpg", rgb=True)
  x, _ = data.load("folder", "train", data_dir=tmp_path)
  assert x.shape == (1, 32, 32, 3)
  np.testing.assert_array_equal(x, 100)


def test_folder_flat_layout(tmp_path):
  for i in range(3):
    save_png(tmp_path / f"{i}.PNG", rgb=True)
  x, y = data.load("folder", "train", data_dir=tmp_path, image_size=8)
  assert x.shape == (3, 8, 8, 3) and y.tolist() == [0, 0, 0]
  assert data.num_classes("folder", tmp_path) == 1
  raises_data_error(lambda: data.load("folder", "test", data_dir=tmp_path),
                    tmp_path, "'train'")


def test_one_class_task_on_flat_folder_fails_cleanly(tmp_path):
  save_png(tmp_path / "0.png")
  raises_data_error(lambda: data.one_class_task("folder", 0, data_dir=tmp_path), "train")


def test_folder_unreadable_image(tmp_path):
  save_png(tmp_path / "train" / "a" / "0.png")
  bad = tmp_path / "train" / "a" / "1.png"
  bad.write_bytes(b"not a png")
  raises_data_error(lambda: data.load("folder", "train", data_dir=tmp_path), bad)


def test_folder_truncated_image(tmp_path):
  save_png(tmp_path / "0.png", size=(64, 64))
  path = tmp_path / "1.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
  path.write_bytes(path.read_bytes()[:200])
  raises_data_error(lambda: data.load("folder", "train", data_dir=tmp_path), path)


def test_folder_empty_or_missing(tmp_path):
  raises_data_error(lambda: data.load("folder", "train", data_dir=tmp_path), tmp_path,
                    "no images")
  raises_data_error(lambda: data.load("folder", "train", data_dir=tmp_path / "nope"),
                    tmp_path / "nope")
  raises_data_error(lambda: data.load("folder", "train"), "data_dir")


def test_load_image_files(tmp_path):
  save_png(tmp_path / "b.png", size=(40, 30))
  save_png(tmp_path / "a.bmp")
  x, names = data.load_image_files(tmp_path, 28)
  assert x.shape == (2, 28, 28, 1) and names == ["a.bmp", "b.png"]
  x, names = data.load_image_files([tmp_path / "b.png"], 10, channels=3)
  assert x.shape == (1, 10, 10, 3) and names == [str(tmp_path / "b.png")]
  raises_data_error(lambda: data.load_image_files(tmp_path / "empty", 8),
                    tmp_path / "empty")


# --- preprocessing and one-class tasks ---------------------------------------


def test_gcn_l1_matches_ruff():
  x = np.random.default_rng(0).random((5, 4, 4, 1)).astype(np.float32)
  g = preprocessing.global_contrast_normalization(x)
  for xi, gi in zip(x, g):  # Ruff et al.'s per-image formula.
    centred = xi - xi.mean()
    np.testing.assert_allclose(gi, centred / np.abs(centred).mean(), rtol=1e-5)
  np.testing.assert_allclose(preprocessing.global_contrast_normalization(x * 255), g,
                             rtol=1e-4, atol=1e-5)
  l2 = preprocessing.global_contrast_normalization(x, "l2")
  centred = x[0] - x[0].mean()
  np.testing.assert_allclose(l2[0], centred / (np.sqrt((centred ** 2).sum()) / 16),
                             rtol=1e-5)
  assert g.dtype == np.float32
  np.testing.assert_array_equal(
      preprocessing.global_contrast_normalization(np.ones((1, 3, 3))), 0)


def test_gcn_minmax_maps_train_to_unit_interval():
  rng = np.random.default_rng(0)
  train, test = rng.random((20, 6, 6, 1)), rng.random((30, 6, 6, 1)) * 3
  train2, test2 = preprocessing.gcn_minmax(train, test)
  assert train2.min() == pytest.approx(0) and train2.max() == pytest.approx(1)
  lo, hi = preprocessing.minmax_bounds(preprocessing.global_contrast_normalization(train))
  expected = (preprocessing.global_contrast_normalization(test) - lo) / (hi - lo)
  np.testing.assert_allclose(test2, expected)


def test_one_class_task_tiny(tmp_path):
  expected = write_mnist(tmp_path, n_train=30, n_test=20)
  task = data.one_class_task("mnist", 3, data_dir=tmp_path)
  assert task.dataset == "mnist" and task.normal_class == 3
  assert task.train_images.shape == (3, 28, 28, 1)
  assert task.train_images.dtype == np.float32 and task.train_images.max() <= 1
  np.testing.assert_allclose(task.test_images * 255, expected["test"][0], atol=1e-3)
  assert task.test_labels.dtype == np.int32 and task.test_classes.dtype == np.int64
  np.testing.assert_array_equal(task.test_labels, expected["test"][1] != 3)
  assert task.class_names[3] == "3"
  with pytest.raises(AttributeError):
    task.normal_class = 4  # Frozen.
  gcn = data.one_class_task("mnist", 3, data_dir=tmp_path, preprocessing="gcn_minmax")
  assert gcn.train_images.min() == pytest.approx(0)
  assert gcn.train_images.max() == pytest.approx(1)
  with pytest.raises(ValueError):
    data.one_class_task("mnist", 10, data_dir=tmp_path)
  with pytest.raises(ValueError):
    data.one_class_task("mnist", 0, data_dir=tmp_path, preprocessing="zca")


def test_benchmark_metadata():
  assert tuple(data.DATASETS) == ("mnist", "fashion_mnist", "cifar10", "folder")
  for name in datasets.names(in_paper=True):
    assert data.num_classes(name) == 10 and len(data.class_names(name)) == 10
  assert data.class_names("cifar10")[0] == "airplane"
  assert issubclass(data.DataError, ValueError)
  assert datasets.names(user_folder=True) == ("folder",)
  assert datasets.names(downloadable=True) == datasets.names(in_paper=True)
  with pytest.raises(ValueError, match=r"unknown dataset 'svhn'; choose from \('mnist', "):
    datasets.get("svhn")


def test_benchmark_counts_in_the_table(monkeypatch):
  monkeypatch.undo()  # the autouse fixture's emptied counts: this test reads the real ones
  counts = {n: datasets.get(n).class_counts for n in datasets.names(in_paper=True)}
  assert counts["mnist"] == {"train": tuple(MNIST_TRAIN_COUNTS),
                             "test": tuple(MNIST_TEST_COUNTS)}
  assert {n: (sum(c["train"]), sum(c["test"])) for n, c in counts.items()} == {
      "mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000)}
  assert datasets.get("cifar10").image_shape == (32, 32, 3)
  with pytest.raises(ValueError, match="9 train class counts for 10 class names"):
    dataclasses.replace(datasets.get("mnist"), class_counts={"train": (1,) * 9})
  with pytest.raises(ValueError, match="already in the table"):
    datasets.register(datasets.get("mnist"))


# --- real datasets -----------------------------------------------------------


@pytest.fixture(scope="module")
def real_mnist(mnist_dir):
  """Both MNIST splits through $DSPLIT_DATA_DIR (the lookup, not a path)."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("DSPLIT_DATA_DIR", str(mnist_dir.parent))
    return {split: data.load("mnist", split) for split in ("train", "test")}


def test_mnist_from_env(real_mnist):
  (x, y), (xt, yt) = real_mnist["train"], real_mnist["test"]
  assert x.shape == (60000, 28, 28, 1) and xt.shape == (10000, 28, 28, 1)
  assert x.dtype == xt.dtype == np.uint8
  assert np.bincount(y).tolist() == MNIST_TRAIN_COUNTS
  assert np.bincount(yt).tolist() == MNIST_TEST_COUNTS


def test_mnist_one_class_task(mnist_dir, monkeypatch):
  monkeypatch.setenv("DSPLIT_DATA_DIR", str(mnist_dir.parent))
  task = data.one_class_task("mnist", 0, preprocessing="gcn_minmax")
  assert task.train_images.shape == (5923, 28, 28, 1)
  assert task.test_images.shape == (10000, 28, 28, 1)
  assert (task.test_labels == 0).sum() == 980 and (task.test_labels == 1).sum() == 9020
  assert task.train_images.min() == pytest.approx(0)
  assert task.train_images.max() == pytest.approx(1)


def test_fashion_mnist_from_debian(monkeypatch):
  if not os.path.isdir(DEBIAN_FASHION):
    pytest.skip(f"{DEBIAN_FASHION} absent (apt-get install dataset-fashion-mnist)")
  replace_datasets(monkeypatch, ["fashion_mnist"], debian_dirs=(DEBIAN_FASHION,))
  x, y = data.load("fashion_mnist", "train")
  assert x.shape == (60000, 28, 28, 1) and np.bincount(y).tolist() == [6000] * 10
  x, y = data.load("fashion_mnist", "test")
  assert x.shape == (10000, 28, 28, 1) and np.bincount(y).tolist() == [1000] * 10
