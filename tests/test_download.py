"""Downloads through a local HTTP server: verified files land, bad ones leave nothing."""

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest

from dsplit_jax import data
from dsplit_jax.data import datasets
from dsplit_jax.data import download
from dsplit_jax.data import fetching
from dsplit_jax.data import sources
from test_data import replace_datasets

MNIST_FILES = [f.name for f in datasets.get("mnist").files]
DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):
    pass


@contextlib.contextmanager
def serving(folder):
  """A static HTTP server for `folder` on a free localhost port; yields its base URL."""
  handler = functools.partial(_QuietHandler, directory=str(folder))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}"
  finally:
    server.shutdown()
    server.server_close()


def closed_port_url():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path):
  """An empty per-user cache; no other copy of any dataset is visible."""
  monkeypatch.delenv("DSPLIT_DATA_DIR", raising=False)
  monkeypatch.delenv("DSPLIT_DOWNLOAD", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  replace_datasets(monkeypatch, debian_dirs=())
  monkeypatch.setattr(sources, "_tensorflow_available", lambda: False)
  return tmp_path / "xdg" / "dsplit_jax"


def files_under(folder):
  return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def assert_one_line(error, *names):
  message = str(error.value)
  assert "\n" not in message
  for name in names:
    assert str(name) in message, message
  return message


# --- tiny IDX files with their hashes injected ---------------------------------


def idx_bytes(array):
  a = np.asarray(array, np.uint8)
  return bytes([0, 0, 8, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape) + a.tobytes()


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
  """Served folder with mnist/<4 gzipped IDX files> and the table's files pointing at
  their hashes.

  Tiny files are not held to the benchmark's images per class (`class_counts`)."""
  rng = np.random.default_rng(0)
  served = tmp_path / "served"
  (served / "mnist").mkdir(parents=True)
  table = []
  for name in MNIST_FILES:
    n = 12 if name.startswith("train") else 6
    shape = (n, 28, 28) if "images" in name else (n,)
    array = rng.integers(0, 10 if len(shape) == 1 else 256, shape)
    raw = idx_bytes(array)
    (served / "mnist" / name).write_bytes(gzip.compress(raw))
    table.append(datasets.File(name, hashlib.sha256(raw).hexdigest(), "content"))
  replace_datasets(monkeypatch, ["mnist"], files=tuple(table), class_counts={})
  return served


def test_tiny_mnist_downloads_on_first_load(tiny_mnist, cache, monkeypatch, capsys):
  with serving(tiny_mnist) as url:
    monkeypatch.setenv("DSPLIT_DATA_MIRROR", url + "/")
    x, y = data.load("mnist", "train")
  assert x.shape == (12, 28, 28, 1) and y.shape == (12,)
  assert files_under(cache) == sorted(f"mnist/{n}" for n in MNIST_FILES)
  assert f"into {cache / 'mnist'}" in capsys.readouterr().out
  # Cached: the next load needs no server.
  monkeypatch.setenv("DSPLIT_DATA_MIRROR", closed_port_url())
  assert data.load("mnist", "test")[0].shape == (6, 28, 28, 1)


def _flip_a_byte(path):
  raw = bytearray(gzip.decompress(path.read_bytes()))
  raw[-1] ^= 1
  path.write_bytes(gzip.compress(bytes(raw)))


def _truncate(path):
  path.write_bytes(path.read_bytes()[:-9])


def _not_gzip(path):
  path.write_bytes(b"<html>Moved</html>")


@pytest.mark.parametrize("spoil", [_flip_a_byte, _truncate, _not_gzip])
def test_bad_file_is_refused_and_nothing_is_kept(tiny_mnist, cache, monkeypatch, spoil):
  # The last file: three good ones are already fetched when it fails.
  spoil(tiny_mnist / "mnist" / "t10k-labels-idx1-ubyte.gz")
  with serving(tiny_mnist) as url:
    monkeypatch.setenv("DSPLIT_DATA_MIRROR", url)
    with pytest.raises(data.DataError) as e:
      data.load("mnist", "train")
  assert not isinstance(e.value, fetching.DownloadError)  # Refused, not "offline".
  assert_one_line(e, "t10k-labels-idx1-ubyte.gz", "refused", url)
  assert not cache.exists() or files_under(cache) == []


def test_bad_file_in_dsplit_data_dir_leaves_it_untouched(tiny_mnist, tmp_path, monkeypatch):
  root = tmp_path / "datasets"
  root.mkdir()
  (root / "keep.txt").write_text("x")
  monkeypatch.setenv("DSPLIT_DATA_DIR", str(root))
  _flip_a_byte(tiny_mnist / "mnist" / "train-images-idx3-ubyte.gz")
  with serving(tiny_mnist) as url:
    monkeypatch.setenv("DSPLIT_DATA_MIRROR", url)
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz"):
      fetching.fetch("mnist")
  assert files_under(root) == ["keep.txt"]


def test_unreachable_host_names_the_commands_that_fix_it(cache, monkeypatch):
  monkeypatch.setenv("DSPLIT_DATA_MIRROR", closed_port_url())
  with pytest.raises(data.DataError) as e:
    data.load("mnist", "train")
  message = assert_one_line(
      e, "download failed", "python -m dsplit_jax.data.download mnist", "DSPLIT_DATA_MIRROR",
      "--data_dir", 'pip install "dsplit_jax[tfds]"')
  assert "`" not in message and "'" not in message.split("download failed")[1]
  assert not cache.exists()


def test_download_switched_off_never_connects(cache, monkeypatch):
  monkeypatch.setenv("DSPLIT_DOWNLOAD", "0")
  monkeypatch.setattr(fetching, "_http_get", lambda *a: pytest.fail("connected"))
  with pytest.raises(data.DataError) as e:
    data.load("cifar10", "test")
  assert_one_line(e, "download skipped", "python -m dsplit_jax.data.download cifar10")


def test_existing_files_are_verified_not_fetched_again(tiny_mnist, cache, monkeypatch):
  with serving(tiny_mnist) as url:
    monkeypatch.setenv("DSPLIT_DATA_MIRROR", url)
    fetching.fetch("mnist")
  monkeypatch.setattr(fetching, "_http_get", lambda *a: pytest.fail("fetched again"))
  assert fetching.fetch("mnist") == str(cache / "mnist")
  _flip_a_byte(cache / "mnist" / "train-labels-idx1-ubyte.gz")
  with pytest.raises(data.DataError) as e:
    fetching.fetch("mnist")
  assert_one_line(e, cache / "mnist" / "train-labels-idx1-ubyte.gz", "delete it")


def test_command_line(tiny_mnist, tmp_path, monkeypatch, capsys):
  with serving(tiny_mnist) as url:
    monkeypatch.setenv("DSPLIT_DATA_MIRROR", url)
    assert download.main(["mnist", f"--dir={tmp_path / 'out'}"]) == 0
    assert files_under(tmp_path / "out") == sorted(f"mnist/{n}" for n in MNIST_FILES)
    _flip_a_byte(tiny_mnist / "mnist" / "train-images-idx3-ubyte.gz")
    capsys.readouterr()
    assert download.main(["mnist", f"--dir={tmp_path / 'bad'}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and "train-images" in err[0]
  assert not (tmp_path / "bad").exists()


# --- CIFAR-10: a tiny archive, hashed as a whole -------------------------------


def tiny_cifar_archive(path, per_batch=3):
  rng = np.random.default_rng(1)
  names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
  with tarfile.open(path, "w:gz") as tar:
    for name in names:
      rows = rng.integers(0, 256, (per_batch, 3073), dtype=np.uint8)
      rows[:, 0] %= 10
      info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
      info.size = rows.nbytes
      tar.addfile(info, io.BytesIO(rows.tobytes()))
  return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("good", [True, False])
def test_cifar_archive(tmp_path, cache, monkeypatch, good):
  (tmp_path / "served" / "cifar10").mkdir(parents=True)
  digest = tiny_cifar_archive(tmp_path / "served" / "cifar10" / "cifar-10-binary.tar.gz")
  expected = digest if good else "0" * 64
  replace_datasets(monkeypatch, ["cifar10"],  # a tiny archive, not the benchmark's counts
                   files=(datasets.File("cifar-10-binary.tar.gz", expected, "file"),),
                   class_counts={})
  with serving(tmp_path / "served") as url:
    monkeypatch.setenv("DSPLIT_DATA_MIRROR", url)
    if good:
      x, y = data.load("cifar10", "train")
      assert x.shape == (15, 32, 32, 3) and y.max() < 10
      assert files_under(cache) == ["cifar10/cifar-10-binary.tar.gz"]
    else:
      with pytest.raises(data.DataError) as e:
        data.load("cifar10", "test")
      assert_one_line(e, "cifar-10-binary.tar.gz", digest, "refused")
      assert not cache.exists()


# --- the real files ------------------------------------------------------------


def test_real_mnist_through_a_mirror(mnist_dir, tmp_path, cache, monkeypatch):
  served = tmp_path / "served" / "mnist"
  served.mkdir(parents=True)
  for name in MNIST_FILES:
    shutil.copy(mnist_dir / name, served / name)
  with serving(served.parent) as url:
    monkeypatch.setenv("DSPLIT_DATA_MIRROR", url)
    x, y = data.load("mnist", "train")
    xt, _ = data.load("mnist", "test")
  assert len(x) == len(y) == 60000 and len(xt) == 10000
  for file in datasets.get("mnist").files:
    assert fetching.sha256(cache / "mnist" / file.name, "content") == file.sha256


def test_real_mnist_corrupt_copy_is_refused(mnist_dir, tmp_path, cache, monkeypatch):
  served = tmp_path / "served" / "mnist"
  served.mkdir(parents=True)
  for name in MNIST_FILES:
    shutil.copy(mnist_dir / name, served / name)
  _flip_a_byte(served / "t10k-images-idx3-ubyte.gz")
  with serving(served.parent) as url:
    monkeypatch.setenv("DSPLIT_DATA_MIRROR", url)
    with pytest.raises(data.DataError) as e:
      data.load("mnist", "train")
  assert_one_line(e, "t10k-images-idx3-ubyte.gz", "refused")
  assert not cache.exists()


def test_fashion_mnist_table_matches_debian_copy():
  if not os.path.isdir(DEBIAN_FASHION):
    pytest.skip(f"{DEBIAN_FASHION} absent (apt-get install dataset-fashion-mnist)")
  for file in datasets.get("fashion_mnist").files:
    assert fetching.sha256(os.path.join(DEBIAN_FASHION, file.name), "content") == file.sha256


def test_the_documented_command_runs_without_a_runpy_warning():
  out = subprocess.run([sys.executable, "-m", "dsplit_jax.data.download", "--help"],
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and "usage: python -m dsplit_jax.data.download" in out.stdout
  assert "RuntimeWarning" not in out.stderr, out.stderr
