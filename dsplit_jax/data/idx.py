"""IDX files (MNIST, Fashion-MNIST), gzipped or plain.

Parsed with `np.frombuffer` on the whole file: the format is a fixed header
followed by raw bytes, so a Python loop per image would only cost time.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from dsplit_jax.data.errors import DataError

# IDX type codes (third magic byte) -> big-endian numpy dtype.
_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

# Stems of the files of each split; `.gz` or not, and the `train-images.idx3-ubyte`
# spelling of some mirrors, are all accepted.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _variants(stem):
  alt = stem.replace("-idx", ".idx")
  return [stem, stem + ".gz", alt, alt + ".gz"]


def find_file(directory, stem):
  """Path of `stem` in `directory` in any accepted spelling, or None."""
  for name in _variants(stem):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  return None


def has_any(directory):
  """Whether `directory` holds at least one IDX file of a split (claims the dataset)."""
  return any(find_file(directory, stem)
             for stems in SPLIT_FILES.values() for stem in stems)


def _read_bytes(path):
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] != _GZIP_MAGIC:
    return raw
  try:
    return gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path}: corrupt or truncated gzip stream ({e})") from None


def read_idx(path, ndim=None):
  """Reads one IDX file into an array of its declared shape.

  Checks the magic number, the number of dimensions if `ndim` is given, and that
  the payload is exactly as long as the header declares (catches truncation).
  """
  raw = _read_bytes(path)
  if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _DTYPES:
    raise DataError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} "
                    "(expected 0x0000, a type code, the number of dimensions)")
  nd = raw[3]
  if ndim is not None and nd != ndim:
    raise DataError(f"{path}: IDX file has {nd} dimensions, expected {ndim}")
  header = 4 + 4 * nd
  if len(raw) < header:
    raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes)")
  dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", nd, 4))
  dtype = _DTYPES[raw[2]]
  count = int(np.prod(dims, dtype=np.int64))
  expected, got = count * dtype.itemsize, len(raw) - header
  if got != expected:
    what = "truncated" if got < expected else "trailing bytes"
    raise DataError(f"{path}: header declares shape {dims} ({expected} bytes) "
                    f"but {got} bytes follow the header ({what})")
  return np.frombuffer(raw, dtype, count, header).reshape(dims)


def load_split(directory, split, num_classes=10):
  """Images uint8 [N, H, W, 1] and labels int64 [N] of one split in `directory`."""
  if split not in SPLIT_FILES:
    raise ValueError(f"unknown split {split!r}; IDX datasets have {sorted(SPLIT_FILES)}")
  paths = []
  for stem in SPLIT_FILES[split]:
    path = find_file(directory, stem)
    if path is None:
      raise DataError(f"{directory}: no {stem}[.gz] for split {split!r} "
                      "(the folder has other MNIST-format files, so this one is missing)")
    paths.append(path)
  images_path, labels_path = paths

  images = read_idx(images_path, ndim=3)
  if images.dtype != np.uint8:
    raise DataError(f"{images_path}: images of type {images.dtype}, expected unsigned bytes")
  labels = read_idx(labels_path, ndim=1)
  if labels.dtype != np.uint8:
    raise DataError(f"{labels_path}: labels of type {labels.dtype}, expected unsigned bytes")
  if len(images) != len(labels):
    raise DataError(f"{images_path}: {len(images)} images but {labels_path} "
                    f"has {len(labels)} labels")
  if len(labels) == 0:
    raise DataError(f"{labels_path}: no examples")
  if labels.max() >= num_classes:
    raise DataError(f"{labels_path}: label {int(labels.max())} out of range "
                    f"0..{num_classes - 1}")
  # frombuffer views are read-only; callers get arrays they own.
  return images[..., None].copy(), labels.astype(np.int64)
