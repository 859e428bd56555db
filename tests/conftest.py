"""Shared fixtures. Real datasets come only through $DSPLIT_DATA_DIR (CI sets it)."""

import os
import pathlib
import tempfile

import pytest

# One persistent compilation cache per test session, inherited by the subprocesses the
# tests start (CLI, grid, planner): most of the suite's time is XLA compiling the same
# small programs again in each new process. Same executables, so the same numbers.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="dsplit-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


@pytest.fixture(scope="session")
def datasets_dir():
  """The folder $DSPLIT_DATA_DIR names; tests needing real data skip without it."""
  root = os.environ.get("DSPLIT_DATA_DIR")
  if not root:
    pytest.skip("DSPLIT_DATA_DIR is unset (CI sets it to the shared datasets folder)")
  if not pathlib.Path(root).is_dir():
    pytest.skip(f"DSPLIT_DATA_DIR={root} is not a folder (no shared datasets beside this clone)")
  return pathlib.Path(root)


@pytest.fixture(scope="session")
def mnist_dir(datasets_dir):
  """$DSPLIT_DATA_DIR/mnist with the four IDX files, else skip."""
  path = datasets_dir / "mnist"
  names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
  missing = [n for n in names
             if not (path / n).is_file() and not (path / f"{n}.gz").is_file()]
  if missing:
    pytest.skip(f"{path} lacks {', '.join(missing)}[.gz]")
  return path
