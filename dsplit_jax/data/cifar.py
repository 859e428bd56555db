"""CIFAR-10 in the official binary and python layouts, extracted or as .tar.gz.

The python layout is a pickle; it is read with an unpickler that can only build
numpy arrays, so a tampered batch file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib

import numpy as np
from numpy._core import multiarray as _multiarray

from dsplit_jax.data.errors import DataError

NUM_CLASSES = 10
_RECORD = 1 + 3 * 32 * 32  # label byte + CHW pixels

BIN_DIR, PY_DIR = "cifar-10-batches-bin", "cifar-10-batches-py"
BIN_ARCHIVE, PY_ARCHIVE = "cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"
_BATCHES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}
# (module, name) -> object: everything a CIFAR batch pickle may reference.
# `numpy.core` is the pre-2.0 module path that the original (Python 2) files use.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):

  def find_class(self, module, name):
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"refusing to load global {module}.{name}: only numpy arrays are allowed"
      ) from None


def _check_labels(labels, name):
  if len(labels) == 0:
    raise DataError(f"{name}: no examples")
  if labels.min() < 0 or labels.max() >= NUM_CLASSES:
    bad = labels[(labels < 0) | (labels >= NUM_CLASSES)][0]
    raise DataError(f"{name}: label {int(bad)} out of range 0..{NUM_CLASSES - 1}")


def _chw_to_hwc(flat):
  return np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def parse_bin_batch(blob, name):
  """Rows of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32)."""
  if len(blob) == 0 or len(blob) % _RECORD:
    raise DataError(f"{name}: {len(blob)} bytes is not a whole number of {_RECORD}-byte "
                    "records (1 label + 3072 pixels): truncated or not CIFAR-10 binary")
  rows = np.frombuffer(blob, np.uint8).reshape(-1, _RECORD)
  labels = rows[:, 0].astype(np.int64)
  _check_labels(labels, name)
  return _chw_to_hwc(rows[:, 1:]), labels


def parse_py_batch(blob, name):
  """A pickled dict {b"data": uint8 [N, 3072], b"labels": [N ints], ...}."""
  try:
    batch = _ArrayOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
  except Exception as e:  # Any unpickling failure means a bad file.
    raise DataError(f"{name}: not a readable CIFAR-10 python batch "
                    f"({type(e).__name__}: {e})") from None
  if not isinstance(batch, dict):
    raise DataError(f"{name}: pickle holds a {type(batch).__name__}, expected a dict")
  data = batch.get(b"data", batch.get("data"))
  labels = batch.get(b"labels", batch.get("labels"))
  if not isinstance(data, np.ndarray) or labels is None:
    raise DataError(f"{name}: dict lacks b'data' (numpy array) or b'labels'")
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
    raise DataError(f"{name}: data is {data.dtype} {data.shape}, expected uint8 [N, 3072]")
  try:
    labels = np.asarray(labels, dtype=np.int64)
  except (TypeError, ValueError) as e:
    raise DataError(f"{name}: labels are not integers ({e})") from None
  if labels.shape != (len(data),):
    raise DataError(f"{name}: {len(data)} images but {labels.size} labels")
  _check_labels(labels, name)
  return _chw_to_hwc(data), labels


def find(directory):
  """(kind, path) of the CIFAR-10 copy in `directory`, or None.

  Extracted folders win over archives because they read faster. The directory may
  also be the batches folder itself.
  """
  candidates = [
      ("bin_dir", os.path.join(directory, BIN_DIR)),
      ("py_dir", os.path.join(directory, PY_DIR)),
      ("bin_tar", os.path.join(directory, BIN_ARCHIVE)),
      ("py_tar", os.path.join(directory, PY_ARCHIVE)),
  ]
  for kind, path in candidates:
    if (os.path.isdir if kind.endswith("dir") else os.path.isfile)(path):
      return kind, path
  names = [n for split in _BATCHES.values() for n in split]
  if any(os.path.isfile(os.path.join(directory, n + ".bin")) for n in names):
    return "bin_dir", directory
  if any(os.path.isfile(os.path.join(directory, n)) for n in names):
    return "py_dir", directory
  return None


def _read_tar_members(path, wanted):
  """{basename: bytes} for `wanted` basenames, in one forward pass over the archive."""
  found = {}
  try:
    with tarfile.open(path, "r:gz") as tar:
      for member in tar:
        base = os.path.basename(member.name)
        if member.isfile() and base in wanted and base not in found:
          found[base] = tar.extractfile(member).read()
  except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path}: unreadable archive ({type(e).__name__}: {e})") from None
  missing = [w for w in wanted if w not in found]
  if missing:
    raise DataError(f"{path}: archive has no {', '.join(missing)}")
  return found


def load_split(kind, path, split):
  """Images uint8 [N, 32, 32, 3] and labels int64 [N] of `split` from a `find` result."""
  if split not in _BATCHES:
    raise ValueError(f"unknown split {split!r}; CIFAR-10 has {sorted(_BATCHES)}")
  binary = kind.startswith("bin")
  names = [n + ".bin" if binary else n for n in _BATCHES[split]]
  parse = parse_bin_batch if binary else parse_py_batch
  if kind.endswith("tar"):
    blobs = _read_tar_members(path, names)
    parts = [parse(blobs[n], f"{path}:{n}") for n in names]
  else:
    parts = []
    for n in names:
      file = os.path.join(path, n)
      if not os.path.isfile(file):
        raise DataError(f"{file}: missing CIFAR-10 batch file")
      with open(file, "rb") as f:
        parts.append(parse(f.read(), file))
  images = np.concatenate([p[0] for p in parts])
  labels = np.concatenate([p[1] for p in parts])
  return images, labels
