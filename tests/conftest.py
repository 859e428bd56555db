"""Shared fixtures. Real datasets come only through $DSPLIT_DATA_DIR (CI sets it)."""

import os
import pathlib
import tempfile

import pytest

# One persistent compilation cache per test run, inherited by the subprocesses the
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


# The files that take longest (CPU seconds under `pytest -n 0`), longest first.
# xdist hands out whole files (`--dist loadfile`) in collection order
# (`--no-loadscope-reorder`; its default puts the files with most tests first, which
# left one-test files of minutes to the end, one worker busy and the other idle).
_LONGEST_FIRST = (
    "tests/test_cifar_end_to_end.py", "tests/test_train.py", "tests/test_pinned_results.py",
    "tests/test_one_job_one_result.py", "tests/experiments/test_accelerator.py",
    "tests/test_api_methods.py", "tests/test_api.py",
    "tests/baselines/test_dsvdd.py",
    "tests/test_sharding.py", "tests/test_models.py", "tests/experiments/test_plan.py",
    "tests/test_layers.py", "tests/test_robustness.py", "tests/test_scoring.py",
    "tests/test_cli.py", "tests/test_extension_points.py", "tests/experiments/test_table1.py")


def pytest_collection_modifyitems(items):
  """Longest files first (stable: tests keep their order within a file)."""
  rank = {path: i for i, path in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
