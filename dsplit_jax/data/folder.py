"""Folders of image files: a user's own one-class data, or new images to score.

Two layouts: `DIR/<split>/<class>/*.png` (label = index of the sorted class
names over all splits, so train and test agree even if a split lacks a class),
or a flat `DIR/*.png` of normal images (one class, a train split only).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from dsplit_jax.data.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
DEFAULT_IMAGE_SIZE = 32
FLAT_CLASS_NAME = "normal"
# Pillow modes with one channel; anything else (RGB, RGBA, P, CMYK...) is colour.
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F")


def _visible(entries):
  return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def image_files(directory):
  """Sorted image files directly in `directory` (other files are ignored)."""
  with os.scandir(directory) as it:
    return [e.path for e in _visible(it)
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]


def _subdirs(directory):
  with os.scandir(directory) as it:
    return [e.path for e in _visible(it) if e.is_dir()]


def _split_dirs(root):
  """{split: path} for subfolders of `root` that hold class subfolders."""
  return {os.path.basename(d): d for d in _subdirs(root) if _subdirs(d)}


def _layout(root):
  if not os.path.isdir(root):
    raise DataError(f"{root}: no such folder")
  if _split_dirs(root):
    return "splits"
  if image_files(root):
    return "flat"
  raise DataError(f"{root}: no images; expected DIR/<split>/<class>/*.png "
                  f"or DIR/*.png ({', '.join(IMAGE_EXTENSIONS)})")


def class_names(root):
  """Sorted class folder names over all splits, or one class for a flat folder."""
  if _layout(root) == "flat":
    return [FLAT_CLASS_NAME]
  return sorted({os.path.basename(c) for d in _split_dirs(root).values()
                 for c in _subdirs(d)})


def _open(path):
  try:
    return Image.open(path)
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def _is_grey(path):
  with _open(path) as img:
    return img.mode in _GREY_MODES


def _read_image(path, image_size, channels):
  try:
    with _open(path) as img:
      img.load()  # Decodes now, so truncated files fail here, naming the path.
      if img.mode.startswith("I;16"):  # 16-bit grey: keep the high byte.
        img = Image.fromarray((np.asarray(img, np.uint16) >> 8).astype(np.uint8))
      img = img.convert("L" if channels == 1 else "RGB")
      if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
      array = np.asarray(img, np.uint8)
  except DataError:
    raise
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
  return array.reshape(image_size, image_size, channels)


def _channels_for(paths):
  return 1 if all(_is_grey(p) for p in paths) else 3


def read_images(paths, image_size, channels):
  """uint8 [N, S, S, C]; images are squashed to S x S (no crop) with bilinear."""
  out = np.empty((len(paths), image_size, image_size, channels), np.uint8)
  for i, path in enumerate(paths):
    out[i] = _read_image(path, image_size, channels)
  return out


def check_size(image_size):
  if not isinstance(image_size, (int, np.integer)) or image_size <= 0:
    raise ValueError(f"image_size must be a positive int, got {image_size!r}")
  return int(image_size)


def load_split(root, split, image_size=None):
  """Images uint8 [N, S, S, C] and labels int64 [N] of one split of a folder dataset.

  C is 1 only if every image of every split is greyscale, so that train and test
  always get the same number of channels.
  """
  image_size = check_size(DEFAULT_IMAGE_SIZE if image_size is None else image_size)
  root = os.fspath(root)
  if _layout(root) == "flat":
    if split != "train":
      raise DataError(f"{root}: a flat folder of normal images has only a 'train' "
                      f"split, not {split!r}; for labelled test data use "
                      "DIR/train/<class>/ and DIR/test/<class>/")
    paths = image_files(root)
    return read_images(paths, image_size, _channels_for(paths)), np.zeros(
        len(paths), np.int64)

  splits = _split_dirs(root)
  if split not in splits and os.path.isdir(os.path.join(root, split)):
    raise DataError(f"{os.path.join(root, split)}: no class subfolders; expected "
                    f"{os.path.join(root, split, '<class>')}/*.png")
  if split not in splits:
    raise DataError(f"{os.path.join(root, split)}: no such split folder "
                    f"(found: {', '.join(sorted(splits)) or 'none'})")
  names = class_names(root)
  paths, labels = [], []
  for class_dir in _subdirs(splits[split]):
    files = image_files(class_dir)
    paths += files
    labels += [names.index(os.path.basename(class_dir))] * len(files)
  if not paths:
    raise DataError(f"{splits[split]}: no images in any class folder")
  all_paths = [f for d in splits.values() for c in _subdirs(d) for f in image_files(c)]
  images = read_images(paths, image_size, _channels_for(all_paths))
  return images, np.asarray(labels, np.int64)


def image_paths(paths_or_dir):
  """(paths, names) of a folder's image files (names relative to it), one file, or a list."""
  if isinstance(paths_or_dir, (str, os.PathLike)):
    path = os.fspath(paths_or_dir)
    if os.path.isdir(path):
      paths = image_files(path)
      names = [os.path.basename(p) for p in paths]
    elif os.path.isfile(path):
      paths, names = [path], [path]
    else:
      raise DataError(f"{path}: no such file or folder")
  else:
    paths = [os.fspath(p) for p in paths_or_dir]
    names = list(paths)
  if not paths:
    raise DataError(f"{paths_or_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
  for p in paths:
    if not os.path.isfile(p):
      raise DataError(f"{p}: no such file")
  return paths, names


def check_image_files(paths):
  """Decodes every file fully (and checks a PNG's chunk checksums first), so that a
  truncated or damaged image of any format stops the work before the first is scored;
  DataError names the first bad one. Only one image is in memory at a time."""
  for path in paths:
    try:
      with _open(path) as img:
        img.verify()  # PNG: every chunk's CRC, which decoding alone does not check
      with _open(path) as img:
        img.load()
    except DataError:
      raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, struct.error... here.
      raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def load_image_files(paths_or_dir, image_size, channels=None):
  """Images uint8 [N, S, S, C] and their names, for scoring new images.

  `paths_or_dir` is a folder (its image files, names relative to it), one file,
  or a list of files (names as given). `channels=None` picks 1 if all images are
  greyscale, else 3; pass the model's channel count to force it.
  """
  image_size = check_size(image_size)
  if channels not in (None, 1, 3):
    raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
  paths, names = image_paths(paths_or_dir)
  if channels is None:
    channels = _channels_for(paths)
  return read_images(paths, image_size, channels), names


def iter_image_files(paths_or_dir, image_size, channels, chunk_size, *, check=True):
  """Yields (uint8 [n <= chunk_size, S, S, C], names) through a folder or list of files,
  so that a folder of any size is scored in constant memory. The file list is read
  first; with `check`, every file is checked (`check_image_files`) before the first
  chunk is decoded."""
  image_size = check_size(image_size)
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels!r}")
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be positive, got {chunk_size!r}")
  paths, names = image_paths(paths_or_dir)
  if check:
    check_image_files(paths)
  for i in range(0, len(paths), chunk_size):
    yield read_images(paths[i:i + chunk_size], image_size, channels), names[i:i + chunk_size]
