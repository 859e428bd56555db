"""Fetching the benchmarks' original files, verified by SHA-256, into the data folder.

The library half of `python -m dsplit_jax.data.download` (download.py, the command):
`data.load` imports this module, never the command's, so that `python -m` runs the
command as its only copy.

Files go to `$DSPLIT_DATA_DIR/<name>/` when that is set, else to a per-user cache
(`~/.cache/dsplit_jax/<name>/`); `data.load` looks in both and calls `fetch` by
itself when a dataset is nowhere. The files, their hashes and hosts are the dataset's
entry in `datasets.DATASETS` (`Dataset.files`, `Dataset.hosts`).
`$DSPLIT_DATA_MIRROR=<base URL>` replaces the hosts: each file is then fetched as
`<base>/<name>/<file name>`.

Every file is checked before it is used. The IDX files are hashed uncompressed,
because mirrors re-compress them (a re-gzipped copy has other bytes, the same
images); the CIFAR-10 archive is hashed as is. Downloads land in a temporary
folder next to the dataset folder and are moved in only when all of them verify,
so a failed or tampered download never becomes a dataset that `data.load` reads.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import tempfile
import zlib

from dsplit_jax.data import datasets
from dsplit_jax.data import idx
from dsplit_jax.data.errors import DataError

DIR_ENV, MIRROR_ENV, SWITCH_ENV = "DSPLIT_DATA_DIR", "DSPLIT_DATA_MIRROR", "DSPLIT_DOWNLOAD"


class DownloadError(DataError):
  """No host could be reached or served the file; nothing was refused as tampered."""


def command(name):
  """The shell command that fetches `name`; no characters any shell would expand."""
  return f"python -m dsplit_jax.data.download {name}"


def enabled():
  """Whether `data.load` may download by itself ($DSPLIT_DOWNLOAD=0 forbids it)."""
  return os.environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_root():
  """The per-user cache, `$XDG_CACHE_HOME/dsplit_jax` or `~/.cache/dsplit_jax`."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "dsplit_jax")


def target_dir(name):
  """Where `fetch` writes `name`: `$DSPLIT_DATA_DIR/<name>` if set, else the cache."""
  return os.path.join(os.environ.get(DIR_ENV) or cache_root(), name)


def urls(name, file_name):
  """Places to try for one file, in order: the mirror from the environment, or the
  dataset's hosts."""
  mirror = os.environ.get(MIRROR_ENV, "").strip()
  if mirror:
    return [f"{mirror.rstrip('/')}/{name}/{file_name}"]
  return [host + file_name for host in datasets.get(name).hosts]


def sha256(path, hashed):
  """SHA-256 of the file, or of its gunzipped bytes for hashed == "content".

  A "content" file that is not gzipped at all is hashed as is, so a mirror serving
  the plain IDX file under the .gz name still verifies (idx reads both).
  """
  h = hashlib.sha256()
  with open(path, "rb") as raw:
    gzipped = hashed == "content" and raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    f = gzip.GzipFile(fileobj=raw) if gzipped else raw
    try:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    except (OSError, EOFError, zlib.error) as e:
      raise DataError(f"{path}: corrupt or truncated gzip stream ({e})") from None
  return h.hexdigest()


def _present(directory, file):
  """Path of an existing copy of `file` in `directory` (any IDX spelling), or None."""
  if file.hashed == "content":
    return idx.find_file(directory, file.name.removesuffix(".gz"))
  path = os.path.join(directory, file.name)
  return path if os.path.isfile(path) else None


def _http_get(url, path):
  """Streams `url` into `path` with pooch (a progress bar on a terminal)."""
  import pooch  # pylint: disable=g-import-not-at-top  # Only downloads need it.
  pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=60)(url, path, None)


def _short(error):
  """A few words on a failed request (requests' own messages run to 300 characters)."""
  response = getattr(error, "response", None)
  if response is not None:
    return f"HTTP {response.status_code}"
  text = str(error)
  for hint in ("NameResolutionError", "Connection refused", "timed out"):
    if hint in text:
      return f"{type(error).__name__} ({hint})"
  return type(error).__name__


def _fetch_one(name, file, tmp):
  """Downloads `file` into the folder `tmp` and verifies it; returns its path there.

  Tries each URL in turn; a file with another hash is deleted and the next URL
  tried. Raises DataError if any URL served a wrong file, DownloadError if none
  could be reached.
  """
  import requests  # pylint: disable=g-import-not-at-top  # pooch's HTTP library.
  path = os.path.join(tmp, file.name)
  failures, refused = [], False
  for url in urls(name, file.name):
    try:
      _http_get(url, path)
    except (requests.RequestException, OSError) as e:
      failures.append(f"{url}: {_short(e)}")
      continue
    try:
      got = sha256(path, file.hashed)
    except DataError as e:
      got, why = None, str(e).split(": ", 1)[-1]
    else:
      of = "uncompressed content" if file.hashed == "content" else "bytes"
      why = f"SHA-256 {got} of its {of}"
    if got == file.sha256:
      return path
    os.remove(path)
    refused = True
    failures.append(f"{file.name} from {url} refused: {why}, expected {file.sha256}")
  error = DataError if refused else DownloadError
  raise error(f"{name}: could not download {file.name}: {'; '.join(failures)}")


def fetch(name, directory=None, *, quiet=False):
  """Makes `directory` (default `target_dir(name)`) hold every verified file of `name`.

  Files already there are verified, not fetched again; a wrong one is an error
  (delete it to download it anew). Returns the directory.
  """
  if name not in datasets.DATASETS or not datasets.DATASETS[name].downloadable:
    raise ValueError(f"no download for dataset {name!r}; choose from "
                     f"{', '.join(datasets.names(downloadable=True))}")
  directory = os.path.abspath(os.fspath(directory or target_dir(name)))
  missing = []
  for file in datasets.DATASETS[name].files:
    have = _present(directory, file)
    if have is None:
      missing.append(file)
    elif sha256(have, file.hashed) != file.sha256:
      raise DataError(f"{have}: SHA-256 differs from {file.name}'s ({file.sha256}); "
                      "delete it to download it again")
  if not missing:
    return directory
  if not quiet:
    print(f"downloading {name} ({', '.join(f.name for f in missing)}) into {directory}",
          flush=True)
  root = os.path.dirname(directory)
  made = root  # The outermost folder this call creates, removed again if left empty.
  while not os.path.isdir(os.path.dirname(made)):
    made = os.path.dirname(made)
  made = None if os.path.isdir(made) else made
  os.makedirs(root, exist_ok=True)
  # Next to the target, so the final moves are renames on one file system.
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}-download-", dir=root)
  try:
    fetched = [(_fetch_one(name, file, tmp), file) for file in missing]
    os.makedirs(directory, exist_ok=True)
    for path, file in fetched:
      os.replace(path, os.path.join(directory, file.name))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
    if made is not None:
      _remove_empty(root, made)
  return directory


def _remove_empty(folder, top):
  """Removes `folder` and its parents up to `top` while they are empty."""
  while not os.listdir(folder):
    os.rmdir(folder)
    if folder == top:
      return
    folder = os.path.dirname(folder)
