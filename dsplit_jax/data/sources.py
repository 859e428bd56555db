"""Where each dataset is looked for, in order, and loading from the first hit.

1. the `data_dir` argument (the files themselves, or a parent holding `<name>/`);
2. `$DSPLIT_DATA_DIR/<name>/`;
3. Debian's install location (`apt-get install dataset-fashion-mnist`);
4. the per-user download cache (`~/.cache/dsplit_jax/<name>/`);
5. a download of the original files (`download.fetch`, SHA-256 verified) into
   `$DSPLIT_DATA_DIR/<name>/` or the cache, unless $DSPLIT_DOWNLOAD=0;
6. tensorflow-datasets, if that download could not reach any host; it needs
   TensorFlow and network the first time.

A location "claims" a dataset as soon as it holds one of its files; a claimed
location with a missing or bad file is an error, never a reason to look further,
so a broken copy is reported instead of silently replaced. Nothing here ever
makes up data. The offline readers never import TensorFlow or tfds. A download
whose hash is wrong is an error too, not a reason to try tfds.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from dsplit_jax.data import cifar
from dsplit_jax.data import download
from dsplit_jax.data import folder
from dsplit_jax.data import idx
from dsplit_jax.data.errors import DataError

DATASETS = ("mnist", "fashion_mnist", "cifar10", "folder")
ENV_VAR = "DSPLIT_DATA_DIR"

# Folder names accepted under data_dir / $DSPLIT_DATA_DIR.
DIR_NAMES = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist"),
    "cifar10": ("cifar10", "cifar-10"),
}
# Debian packages only Fashion-MNIST (no mnist or cifar package exists).
DEBIAN_DIRS = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
}
TFDS_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10"}

_CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"],
}
# Offline routes. Commands are written so they can be pasted into any shell: an
# argument a shell could expand (zsh globs [...]) is in double quotes, which sh,
# zsh, fish, cmd and PowerShell all read the same way.
_HOW_TO_GET = {
    "mnist": "pass --data_dir (or set DSPLIT_DATA_DIR to a folder with mnist/) holding "
             "the four IDX files",
    "fashion_mnist": "run: apt-get install dataset-fashion-mnist; or pass --data_dir (or "
                     "set DSPLIT_DATA_DIR to a folder with fashion_mnist/) holding the four "
                     "IDX files",
    "cifar10": "pass --data_dir (or set DSPLIT_DATA_DIR to a folder with cifar10/) holding "
               "cifar-10-binary.tar.gz, cifar-10-python.tar.gz or their extracted folder",
}


def _check_name(name):
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}")


def _folder_root(data_dir):
  if data_dir is None:
    raise DataError("dataset 'folder' needs data_dir: DIR/<split>/<class>/*.png "
                    "or a flat DIR/*.png of normal images")
  return os.fspath(data_dir)


def class_names(name, data_dir=None):
  _check_name(name)
  if name == "folder":
    return folder.class_names(_folder_root(data_dir))
  return list(_CLASS_NAMES[name])


def num_classes(name, data_dir=None):
  return len(class_names(name, data_dir))


def _candidates(name, data_dir):
  """[(where, directory)] in lookup order.

  `data_dir` may be the dataset folder itself; `$DSPLIT_DATA_DIR` is always a
  parent, because its mnist/ and fashion_mnist/ hold identically named files and
  reading a parent's files directly could mix the two up.
  """
  out = []
  if data_dir is not None:
    data_dir = os.fspath(data_dir)
    out.append(("data_dir", data_dir))
    out += [("data_dir", os.path.join(data_dir, d)) for d in DIR_NAMES[name]]
  env = os.environ.get(ENV_VAR)
  if env:
    out += [(f"${ENV_VAR}", os.path.join(env, d)) for d in DIR_NAMES[name]]
  else:
    out.append((f"${ENV_VAR} (unset)", None))
  out += [("debian", d) for d in DEBIAN_DIRS.get(name, ())]
  out.append(("cache", os.path.join(download.cache_root(), name)))
  return out


def _locate(name, directory):
  """A loader `split -> (images, labels)` if `directory` claims `name`, else None."""
  if directory is None or not os.path.isdir(directory):
    return None
  if name == "cifar10":
    hit = cifar.find(directory)
    return None if hit is None else (lambda split: cifar.load_split(*hit, split))
  if idx.has_any(directory):
    return lambda split: idx.load_split(directory, split)
  return None


def _tensorflow_available():
  return importlib.util.find_spec("tensorflow") is not None


def _load_tfds(name, split):
  """All of `split` as numpy through tfds (downloads into tfds' own data dir)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  images, labels = tfds.as_numpy(tfds.load(
      TFDS_NAMES[name], split=split, batch_size=-1, as_supervised=True, download=True))
  return np.asarray(images, np.uint8), np.asarray(labels, np.int64)


def _resize(images, image_size):
  if image_size is None:
    return images
  image_size = folder.check_size(image_size)
  if images.shape[1:3] == (image_size, image_size):
    return images
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = np.empty((len(images), image_size, image_size, images.shape[-1]), np.uint8)
  for i, image in enumerate(images):
    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    out[i] = np.asarray(img).reshape(out.shape[1:])
  return out


def load(name, split, data_dir=None, image_size=None):
  """Images uint8 [N, H, W, C] and labels int64 [N] of one split.

  `image_size` resizes the benchmarks (bilinear) when it differs from their own
  size; for `folder` it is the size every image is squashed to (default 32).
  """
  _check_name(name)
  if name == "folder":
    return folder.load_split(_folder_root(data_dir), split, image_size)
  if split not in ("train", "test"):
    raise ValueError(f"unknown split {split!r} for {name}; use 'train' or 'test'")

  looked = []
  for where, directory in _candidates(name, data_dir):
    loader = _locate(name, directory)
    if loader is not None:
      images, labels = loader(split)
      return _resize(images, image_size), labels
    looked.append(where if directory is None else f"{where} {directory}")

  where = f"{name} not found; looked in: {'; '.join(looked)}"
  if download.enabled():
    try:
      directory = download.fetch(name)
    except download.DownloadError as e:  # Unreachable hosts; a wrong hash propagates.
      where += f"; download failed ({e})"
    else:
      images, labels = _locate(name, directory)(split)
      return _resize(images, image_size), labels
  else:
    where += f"; download skipped (${download.SWITCH_ENV}=0)"
  how = (f"To get it with network, run: {download.command(name)} (set "
         f"{download.MIRROR_ENV} to a base URL serving {name}/<file> to use another host); "
         f"offline: {_HOW_TO_GET[name]}")
  if not _tensorflow_available():
    raise DataError(f"{where}; tensorflow-datasets skipped: it needs TensorFlow, which is "
                    f'not installed (run: pip install "dsplit_jax[tfds]"). {how}.')
  try:
    images, labels = _load_tfds(name, split)
  except Exception as e:  # Offline, tfds fails in many ways; all mean "not found".
    first_line = (str(e).strip().splitlines() or [""])[0][:200]
    raise DataError(f"{where}; tensorflow-datasets failed ({type(e).__name__}: "
                    f"{first_line}). {how}.") from e
  return _resize(images, image_size), labels
