"""The Table 1 grid: cells, flag errors, skipping finished cells, a real MNIST cell."""

import importlib
import json
import os
import pathlib
import re

import pytest

from dsplit_jax import configs
from dsplit_jax import methods
from dsplit_jax import records
from dsplit_jax import runner
from experiments import render
from experiments import table1


def _names(cells):
  return [c.name for c in cells]


def test_cells_table1_first_then_rho_sweep():
  cells = table1.make_cells(datasets=["mnist", "fashion_mnist"], methods="dsplit,ocsvm,nnwds",
                            rhos=[5, 10, 20], preset="test", classes="0,1", num_seeds=2)
  table = [f"{d} {m} rho=10" for d in ("mnist", "fashion_mnist")
           for m in ("dsplit", "ocsvm", "nnwds")]
  sweep = [f"{d} {m} rho={r}" for d in ("mnist", "fashion_mnist") for m in ("dsplit", "nnwds")
           for r in (5, 20)]
  assert _names(cells) == table + sweep
  assert cells[0].jobs() == {(0, 0), (0, 1), (1, 0), (1, 1)}
  assert all(c.config.preset == "test" for c in cells)
  # Without --rhos every method runs once, at the preset's rho.
  cells = table1.make_cells(datasets=["mnist"], methods="all", preset="test", classes="3")
  assert _names(cells) == [f"mnist {m} rho=10" for m in methods.NAMES]


@pytest.mark.parametrize("argv,message", [
    (["--datasets=nope"], "unknown dataset 'nope'"),
    (["--methods=dsplit,nope"], "unknown method 'nope'"),
    (["--rhos=5,x"], "--rhos wants comma-separated numbers"),
    (["--rhos=100"], "rho=100.0 is not allowed: must be"),
    (["--classes=10"], "normal class 10 out of range"),
    (["--set=train.nope=1"], "unknown config field 'train.nope'"),
    (["--num_seeds=0"], "--num_seeds=0 is not allowed"),
    (["--bogus=1"], "unrecognized arguments"),
])
def test_bad_flags_fail_in_one_line_before_training(argv, message, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("trained despite bad flags"))
  code = table1.main([f"--workdir={tmp_path}", "--datasets=mnist", "--preset=test", *argv])
  err = capsys.readouterr().err
  assert code == 2
  assert message in err and err.count("\n") == 1, err


def _fake_run(calls, fail=()):
  """Stands in for runner.run: logs the call, writes one record per job, or raises."""
  def run(config, workdir, progress=None):
    calls.append(f"{config.dataset} {config.method} rho={config.rho:g}")
    if config.method in fail:
      raise RuntimeError(f"{config.method} broke\nsecond line")
    for c in config.normal_classes:
      for s in config.seeds:
        records.append_record(os.path.join(workdir, "results.jsonl"), records.make_record(
            dataset=config.dataset, normal_class=c, method=config.method, seed=s,
            rho=config.rho, auc=0.5, config=config, wall_time_s=0.0,
            config_hash=configs.config_hash(config), preset=config.preset))
    return []
  return run


def test_failed_cell_reruns_finished_cells_skip(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(table1, "check_data", lambda *a: None)  # no dataset is read here
  argv = [f"--workdir={tmp_path}", "--datasets=mnist", "--methods=naive_nn,ocsvm,dsplit",
          "--rhos=10,20", "--classes=0,1", "--num_seeds=1", "--preset=test"]
  calls = []
  monkeypatch.setattr(runner, "run", _fake_run(calls, fail=("ocsvm",)))
  assert table1.main(argv) == 1
  out, err = capsys.readouterr()
  assert calls == ["mnist naive_nn rho=10", "mnist ocsvm rho=10", "mnist dsplit rho=10",
                   "mnist dsplit rho=20"]
  failed = [l for l in out.splitlines() if "FAILED" in l]
  assert failed == [f"[grid 2/4] mnist ocsvm rho=10: FAILED: RuntimeError: ocsvm broke "
                    f"(traceback in {tmp_path}/grid_errors.log)"]
  assert "second line" in (tmp_path / "grid_errors.log").read_text()
  assert "1 of 4 cells failed: mnist ocsvm rho=10" in err
  assert "[grid 3/4] mnist dsplit rho=10: done in" in out and "ETA" in out

  calls.clear()
  monkeypatch.setattr(runner, "run", _fake_run(calls))
  assert table1.main(argv) == 0
  out = capsys.readouterr().out
  assert calls == ["mnist ocsvm rho=10"]
  assert "[grid 1/4] mnist naive_nn rho=10: skip (all 2 jobs have records)" in out

  calls.clear()
  assert table1.main(argv) == 0
  assert calls == []


def test_half_done_cell_and_other_config_run_again(tmp_path, monkeypatch):
  cells = table1.make_cells(datasets=["mnist"], methods="iforest", preset="test",
                            classes="0,1", num_seeds=1)
  results = str(tmp_path / "results.jsonl")
  calls, lines = [], []
  _fake_run(calls)(cells[0].config.copy_and_resolve_references(), str(tmp_path))
  assert table1.missing_jobs(cells[0], results) == set()
  cells = table1.make_cells(datasets=["mnist"], methods="iforest", preset="test",
                            classes="0,1,2", num_seeds=1)
  assert table1.missing_jobs(cells[0], results) == {(2, 0)}
  other = table1.make_cells(datasets=["mnist"], methods="iforest", preset="test",
                            classes="0,1", overrides=["train.learning_rate=0.01"])
  assert table1.missing_jobs(other[0], results) == {(0, 0), (1, 0)}  # another config hash
  monkeypatch.setattr(runner, "run", _fake_run(calls))
  assert table1.run_grid(cells + other, str(tmp_path), printer=lines.append) == []
  assert lines[0].startswith("[grid 1/2] mnist iforest rho=10: 1 of 3 jobs to run")


def test_real_mnist_cell_resumes_and_renders(tmp_path, datasets_dir, mnist_dir, monkeypatch,
                                             capsys):
  argv = [f"--workdir={tmp_path}", "--datasets=mnist", "--methods=naive_nn", "--classes=0",
          "--num_seeds=1", "--preset=test", f"--data_dir={datasets_dir}"]
  assert table1.main(argv) == 0
  recs = records.read_records(tmp_path / "results.jsonl")
  assert [(r["method"], r["normal_class"], r["seed"], r["preset"]) for r in recs] == [
      ("naive_nn", 0, 0, "test")]
  assert 0.0 <= recs[0]["auc"] <= 1.0
  assert set(recs[0]["final_losses"]) == {"intra_class"}  # from the run's saved curve
  assert "ae_plateau_ratio" not in recs[0]  # naive_nn has no split, no autoencoder
  # Score files carry the config hash, so two configs of one cell never overwrite each other.
  assert os.path.isfile(records.scores_path(tmp_path, "mnist", 0, "naive_nn", 10.0, 0,
                                            recs[0]["config_hash"]))
  assert records.scores_path(tmp_path, "mnist", 0, "naive_nn", 10.0, 0, "abc").endswith(
      "/scores/mnist-c0-naive_nn-rho10-s0-abc.npz")

  real_run, calls = runner.run, []
  monkeypatch.setattr(runner, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
  capsys.readouterr()
  assert table1.main(argv) == 0
  assert calls == [] and ": skip (all 1 jobs have records)" in capsys.readouterr().out

  assert render.main([f"--workdir={tmp_path}"]) == 0
  out = capsys.readouterr().out
  assert "no splits" in out
  run_dirs = list((tmp_path / "runs").iterdir())
  assert len(run_dirs) == 1
  for name in ("table1.md", "table1.csv", "roc_mnist_c0.png", f"losses_{run_dirs[0].name}.png"):
    assert f"wrote {tmp_path / 'report' / name}" in out
  assert "| mnist | 0 Digit 0 | **" in (tmp_path / "report" / "table1.md").read_text()


def test_colab_notebook_commands_exist():
  """Every `python -m` line of the notebook names a module of this repo and its flags."""
  root = pathlib.Path(__file__).resolve().parents[2]
  nb = json.loads((root / "experiments" / "colab_tpu.ipynb").read_text())
  assert nb["nbformat"] == 4 and nb["metadata"]["accelerator"] == "TPU"
  commands = [line for cell in nb["cells"] if cell["cell_type"] == "code"
              for line in "".join(cell["source"]).splitlines() if "python -m " in line]
  assert any("--preset=paper" in c and "--methods=all" in c for c in commands)
  assert any("--rhos=5,10,20,30,40,50" in c for c in commands)
  modules = set()
  for command in commands:
    module, *args = command.split("python -m ", 1)[1].split()
    source = (root / (module.replace(".", "/") + ".py")).read_text()
    defined = set(re.findall(r'add_argument\(\s*"--(\w+)"', source))
    defined |= set(re.findall(r'DEFINE_\w+\(\s*"(\w+)"', source))
    if module == "dsplit_jax.data.download":  # Dataset names, then nothing else.
      from dsplit_jax.data import datasets
      assert args and all(a in datasets.names(downloadable=True) for a in args), command
      modules.add(module)
      continue
    assert all(a.startswith("--") for a in args), command
    for flag in [a[2:].split("=")[0] for a in args]:
      assert flag in defined, f"{module} defines no --{flag}"
    filled = [a.replace("{WORKDIR}", "/tmp/w").replace("{DATA_DIR}", "") for a in args]
    importlib.import_module(module)._parser().parse_args(filled)  # raises on a bad flag
    modules.add(module)
  assert modules == {"experiments.table1", "experiments.render", "dsplit_jax.data.download"}


def test_eta_names_methods_not_timed_yet():
  # After one dsplit cell (1000 s), a half-done dsplit cell costs 500 s; a classical
  # cell is not guessed from the deep one (the old mean-of-all ETA said 1000 s each).
  left = {1: ("dsplit", 0.5), 2: ("ocsvm", 1.0), 3: ("iforest", 1.0), 4: ("ocsvm", 1.0)}
  assert table1._eta(left, {"dsplit": [1000.0]}) == "0:08:20 + ocsvm, iforest (not timed yet)"
  assert table1._eta(left, {"dsplit": [1000.0, 2000.0], "ocsvm": [10.0],
                            "iforest": [4.0]}) == "0:12:54"  # 750 + 2 x 10 + 4 s
  assert table1._eta(left, {}) == "?"
  assert table1._eta({}, {}) == "0:00:00"


def test_a_second_grid_on_a_busy_workdir_stops_in_one_line(tmp_path, monkeypatch, capsys):
  from dsplit_jax import workdir as workdir_lib
  from experiments import study_distance
  monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("ran on a busy work dir"))
  monkeypatch.setattr(table1, "check_data", lambda *a: None)  # No data needed to refuse.
  with workdir_lib.lock(str(tmp_path)):  # Another run holds it (same rule across processes).
    code = table1.main([f"--workdir={tmp_path}", "--datasets=mnist", "--preset=test",
                        "--methods=ocsvm", "--classes=0", "--num_seeds=1"])
    err = capsys.readouterr().err
    assert code == 2 and "is in use by process" in err and err.count("\n") == 1, err
    code = study_distance.main([f"--workdir={tmp_path}", "--stage=report", "--preset=test"])
    err = capsys.readouterr().err
    assert code == 2 and "is in use by process" in err, err
