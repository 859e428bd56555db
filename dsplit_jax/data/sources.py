"""Where each dataset is looked for, in order, and loading from the first hit.

The places, names, readers and counts are the dataset's entry in `datasets.DATASETS`:

1. the `data_dir` argument (the files themselves, or a parent holding `<name>/`, any
   of `Dataset.dir_names`); when given, it is the only place looked at;
2. `$DSPLIT_DATA_DIR/<name>/`;
3. Debian's install location (`Dataset.debian_dirs`: `apt-get install
   dataset-fashion-mnist`);
4. the per-user download cache (`~/.cache/dsplit_jax/<name>/`);
5. a download of the original files (`fetching.fetch`, SHA-256 verified) into
   `$DSPLIT_DATA_DIR/<name>/` or the cache, unless $DSPLIT_DOWNLOAD=0;
6. tensorflow-datasets (`Dataset.tfds_name`), if that download could not reach any
   host; it needs TensorFlow and network the first time.

A location "claims" a dataset as soon as it holds one of its files; a claimed
location with a missing or bad file is an error, never a reason to look further,
so a broken copy is reported instead of silently replaced. Nothing here ever
makes up data. The offline readers never import TensorFlow or tfds. A download
whose hash is wrong is an error too, not a reason to try tfds.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import os

import numpy as np

from dsplit_jax.data import datasets
from dsplit_jax.data import fetching
from dsplit_jax.data import folder
from dsplit_jax.data.errors import DataError

ENV_VAR = "DSPLIT_DATA_DIR"


def _folder_root(data_dir):
  if data_dir is None:
    raise DataError("dataset 'folder' needs data_dir: DIR/<split>/<class>/*.png "
                    "or a flat DIR/*.png of normal images")
  return os.fspath(data_dir)


def class_names(name, data_dir=None):
  ds = datasets.get(name)
  if ds.user_folder:
    return folder.class_names(_folder_root(data_dir))
  return list(ds.class_names)


def num_classes(name, data_dir=None):
  return len(class_names(name, data_dir))


def _candidates(ds, data_dir):
  """[(where, directory)] in lookup order.

  `data_dir` may be the dataset folder itself; `$DSPLIT_DATA_DIR` is always a
  parent, because its mnist/ and fashion_mnist/ hold identically named files and
  reading a parent's files directly could mix the two up.
  """
  out = []
  if data_dir is not None:
    data_dir = os.fspath(data_dir)
    out.append(("data_dir", data_dir))
    out += [("data_dir", os.path.join(data_dir, d)) for d in ds.dir_names]
  env = os.environ.get(ENV_VAR)
  if env:
    out += [(f"${ENV_VAR}", os.path.join(env, d)) for d in ds.dir_names]
  else:
    out.append((f"${ENV_VAR} (unset)", None))
  out += [("debian", d) for d in ds.debian_dirs]
  out.append(("cache", os.path.join(fetching.cache_root(), ds.name)))
  return out


def _locate(ds, directory):
  """A loader `split -> (images, labels)` if `directory` claims `ds`, else None."""
  if directory is None or not os.path.isdir(directory):
    return None
  hit = ds.reader.find(directory)
  return None if hit is None else (lambda split: ds.reader.load(hit, split))


def _tensorflow_available():
  """Both halves of the optional `[tfds]` extra: TensorFlow and tensorflow-datasets."""
  return all(importlib.util.find_spec(m) is not None
             for m in ("tensorflow", "tensorflow_datasets"))


def _load_tfds(ds, split):
  """All of `split` as numpy through tfds (downloads into tfds' own data dir)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  images, labels = tfds.as_numpy(tfds.load(
      ds.tfds_name, split=split, batch_size=-1, as_supervised=True, download=True))
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
  ds = datasets.get(name)
  if ds.user_folder:
    return folder.load_split(_folder_root(data_dir), split, image_size)
  if split not in datasets.SPLITS:
    raise ValueError(f"unknown split {split!r} for {name}; use 'train' or 'test'")

  looked = []
  for where, directory in _candidates(ds, data_dir):
    if data_dir is not None and where != "data_dir":
      _explicit_dir_error(ds, data_dir)
    loader = _locate(ds, directory)
    if loader is not None:
      images, labels = loader(split)
      check_counts(name, split, labels, directory)
      return _resize(images, image_size), labels
    looked.append(where if directory is None else f"{where} {directory}")

  where = f"{name} not found; looked in: {'; '.join(looked)}"
  if not ds.downloadable:
    where += "; no download known for it"
  elif fetching.enabled():
    try:
      directory = fetching.fetch(name)
    except fetching.DownloadError as e:  # Unreachable hosts; a wrong hash propagates.
      where += f"; download failed ({e})"
    else:
      images, labels = _locate(ds, directory)(split)
      check_counts(name, split, labels, directory)
      return _resize(images, image_size), labels
  else:
    where += f"; download skipped (${fetching.SWITCH_ENV}=0)"
  how = _how_to_get(ds)
  if ds.tfds_name is None:
    raise DataError(f"{where}; not in tensorflow-datasets. {how}.")
  if not _tensorflow_available():
    raise DataError(f"{where}; tensorflow-datasets skipped: it and TensorFlow, which it "
                    f'needs, are the optional [tfds] extra, not installed here (run: pip '
                    f'install "dsplit_jax[tfds]"). {how}.')
  if data_dir is not None:
    _explicit_dir_error(ds, data_dir)
  try:
    images, labels = _load_tfds(ds, split)
  except Exception as e:  # Offline, tfds fails in many ways; all mean "not found".
    first_line = (str(e).strip().splitlines() or [""])[0][:200]
    raise DataError(f"{where}; tensorflow-datasets failed ({type(e).__name__}: "
                    f"{first_line}). {how}.") from e
  check_counts(name, split, labels, f"tensorflow-datasets {ds.tfds_name}")
  return _resize(images, image_size), labels


def _how_to_get(ds):
  """The not-found message's routes: the download command, then the offline ones."""
  offline = ds.how_to_get or f"pass --data_dir holding its files ({ds.reader.name} format)"
  if not ds.downloadable:
    return f"To get it: {offline}"
  return (f"To get it with network, run: {fetching.command(ds.name)} (set "
          f"{fetching.MIRROR_ENV} to a base URL serving {ds.name}/<file> to use another "
          f"host); offline: {offline}")


def _explicit_dir_error(ds, data_dir):
  """An explicit data_dir is used alone: falling back to $DSPLIT_DATA_DIR would read
  other files than the ones asked for, and say nothing."""
  data_dir = os.fspath(data_dir)
  if not os.path.isdir(data_dir):
    raise DataError(f"data_dir {data_dir} does not exist (or is not a folder)")
  inside = ", ".join(os.path.join(data_dir, d) for d in ds.dir_names)
  raise DataError(f"data_dir {data_dir} holds no {ds.name} files (nor does {inside}); an "
                  f"explicit data_dir is never replaced by ${ENV_VAR} or other places. "
                  f"To get it: {ds.how_to_get}.")


def check_counts(name, split, labels, where):
  """Refuses a split whose images per class are not the benchmark's
  (`datasets.Dataset.class_counts`)."""
  expected = datasets.get(name).class_counts.get(split)
  if expected is None:
    return
  got = tuple(int(n) for n in np.bincount(labels, minlength=len(expected)))
  if got != expected:
    def show(counts):
      return f"{counts[0]} per class" if len(set(counts)) == 1 else "/".join(map(str, counts))
    raise DataError(f"{where}: the {split} split has {len(labels)} images ({show(got)}), "
                    f"but {name}'s has {sum(expected)} ({show(expected)}); is it another "
                    "dataset, or a damaged copy?")


def source_files(name, split, data_dir=None):
  """What `load(name, split, data_dir)` reads: files, or folders of many images."""
  ds = datasets.get(name)
  if ds.user_folder:
    return [os.path.abspath(_folder_root(data_dir))]
  for _, directory in _candidates(ds, data_dir):
    if _locate(ds, directory) is None:
      continue
    return [os.path.abspath(p) for p in ds.reader.files(ds.reader.find(directory), split)]
  return [f"tensorflow-datasets:{ds.tfds_name}"]


_DIGESTS = {}


def describe_files(paths):
  """[{path, bytes, mtime, sha256}] for the record of a result. A folder gets its
  number of files and a sha256 of its listing (names, sizes, mtimes), not of every image."""
  out = []
  for path in paths:
    if not os.path.exists(path):
      out.append({"path": path})
      continue
    if os.path.isdir(path):
      listing = sorted((os.path.relpath(os.path.join(r, f), path), os.stat(os.path.join(r, f)))
                       for r, _, fs in os.walk(path) for f in fs)
      text = "\n".join(f"{n} {st.st_size} {st.st_mtime_ns}" for n, st in listing)
      out.append({"path": path, "files": len(listing),
                  "bytes": sum(st.st_size for _, st in listing),
                  "listing_sha256": hashlib.sha256(text.encode()).hexdigest()})
      continue
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
      digest = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          digest.update(block)
      _DIGESTS[key] = digest.hexdigest()
    out.append({"path": path, "bytes": st.st_size,
                "mtime": datetime.datetime.fromtimestamp(
                    st.st_mtime, datetime.timezone.utc).isoformat(timespec="seconds"),
                "sha256": _DIGESTS[key]})
  return out
