"""CIFAR-10 end to end on files the test writes: every layout, every method, the grid.

The real images are not on this machine; these files have CIFAR-10's layouts and
formats (random pixels, 12 train and 4 test images per class), so that nothing between
the reader and the records breaks on the real files. The benchmark's class counts
(50000/10000) are replaced by the written ones in the child process, or for the
duration of an in-process run: the count check itself still runs. One test runs the
command line in a child process (its exit code); the others call the same `main`
functions in this process, which saves a Python and JAX start-up each.
"""

import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_data import replace_datasets
from test_data import write_cifar
from test_extension_points import main_exit_code

TRAIN_PER_CLASS, TEST_PER_CLASS = 12, 4

# Runs a command-line entry point with the written counts in place of the benchmark's.
_CHILD = r"""
import dataclasses, runpy, sys
from dsplit_jax.data import datasets
datasets.DATASETS["cifar10"] = dataclasses.replace(
    datasets.DATASETS["cifar10"], class_counts={{"train": ({train},) * 10, "test": ({test},) * 10}})
module = sys.argv[1]
sys.argv = [module] + sys.argv[2:]
runpy.run_module(module, run_name="__main__")
"""


def _batches(seed=0):
  """Five train batches and a test batch, every class equally often (shuffled)."""
  rng = np.random.default_rng(seed)
  train_labels = rng.permutation(np.repeat(np.arange(10), TRAIN_PER_CLASS))
  test_labels = rng.permutation(np.repeat(np.arange(10), TEST_PER_CLASS))
  out = [(rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8), y)
         for y in np.array_split(train_labels, 5)]
  return out + [(rng.integers(0, 256, (len(test_labels), 32, 32, 3), dtype=np.uint8),
                 test_labels)]


def _run(module, *args):
  code = _CHILD.format(train=TRAIN_PER_CLASS, test=TEST_PER_CLASS)
  env = dict(os.environ, DSPLIT_DOWNLOAD="0")
  env.pop("DSPLIT_DATA_DIR", None)
  return subprocess.run([sys.executable, "-c", code, module, *args], capture_output=True,
                        text=True, timeout=900, env=env)


@contextlib.contextmanager
def _as_child():
  """This process as `_run`'s child sees it: the written class counts, no download and
  no $DSPLIT_DATA_DIR; all undone on exit."""
  with pytest.MonkeyPatch.context() as mp:
    replace_datasets(mp, ["cifar10"], class_counts={"train": (TRAIN_PER_CLASS,) * 10,
                                                    "test": (TEST_PER_CLASS,) * 10})
    mp.setenv("DSPLIT_DOWNLOAD", "0")
    mp.delenv("DSPLIT_DATA_DIR", raising=False)
    yield


def _cli_in_process(*args) -> int:
  """`python -m dsplit_jax.main ARGS` in this process (as `_run`'s child): its exit code."""
  with _as_child():
    return main_exit_code(*args)


def _records(workdir):
  with open(os.path.join(workdir, "results.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  write_cifar(root / "cifar10", "bin_tar", _batches())
  return root


@pytest.fixture(scope="module")
def ocsvm_aucs(cifar_root, tmp_path_factory):
  """OCSVM's AUC of every class from the binary archive: the layouts' reference."""
  return _ocsvm_all_classes(cifar_root, tmp_path_factory.mktemp("ref"))


def _ocsvm_all_classes(data_dir, workdir):
  code = _cli_in_process("--preset=test", "--dataset=cifar10", "--normal_class=all",
                         "--method=ocsvm", f"--data_dir={data_dir}", f"--workdir={workdir}")
  assert code == 0
  return {r["normal_class"]: r["auc"] for r in _records(workdir)}


@pytest.mark.long
def test_every_method(cifar_root, tmp_path):
  # The one true child process of this file: the command line's exit code.
  out = _run("dsplit_jax.main", "--preset=test", "--dataset=cifar10", "--normal_class=0",
             "--method=all", f"--data_dir={cifar_root}", f"--workdir={tmp_path}")
  assert out.returncode == 0, out.stderr[-3000:]
  recs = _records(tmp_path)
  assert sorted(r["method"] for r in recs) == sorted(
      ["dsplit", "naive_nn", "nnwds", "ssim", "dsvdd", "ocsvm", "hog_ocsvm", "iforest"])
  assert all(r["dataset"] == "cifar10" and r["normal_class"] == 0 and 0 <= r["auc"] <= 1
             for r in recs)
  # Every record names the archive it read.
  assert all("cifar-10-binary.tar.gz" in json.dumps(r["data_files"]) for r in recs)


def test_all_classes_from_the_archive(ocsvm_aucs):
  assert sorted(ocsvm_aucs) == list(range(10))
  assert len(set(ocsvm_aucs.values())) > 1  # Ten different one-class tasks, not one.


@pytest.mark.parametrize("layout", ["bin", "py", "py_tar"])
def test_other_layouts_give_the_same_aucs(ocsvm_aucs, tmp_path, layout):
  """The binary archive, its unpacked folder and the python pickles hold the same
  images, so every class gives the same AUC from each."""
  root = tmp_path / "data"
  write_cifar(root / "cifar10", layout, _batches())
  assert _ocsvm_all_classes(root, tmp_path / "work") == ocsvm_aucs


def test_grid_cell_and_table(cifar_root, tmp_path):
  work = tmp_path / "grid"
  args = ["--preset=test", "--datasets=cifar10", "--methods=dsplit", "--classes=0,1",
          "--num_seeds=1", f"--data_dir={cifar_root}", f"--workdir={work}"]
  # `python -m experiments.table1` and `.render` exit with what their main returns.
  from experiments import render
  from experiments import table1
  with _as_child():
    assert table1.main(args) == 0
    recs = _records(work)
    assert sorted((r["method"], r["normal_class"]) for r in recs) == [("dsplit", 0),
                                                                      ("dsplit", 1)]
    assert table1.main(args) == 0  # Every cell has its records: nothing runs.
    assert len(_records(work)) == len(recs)
    assert render.main([f"--workdir={work}", f"--data_dir={cifar_root}"]) == 0
  table = (work / "report" / "table1.md").read_text()
  assert "cifar" in table.lower()
