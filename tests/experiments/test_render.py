"""The report from a work dir: Table 1 beside the paper, bold best, means, Fig. 4, Fig. 1, ROC."""

import csv

import matplotlib.image
import numpy as np
import pytest

from dsplit_jax import curves
from dsplit_jax import data
from dsplit_jax import records
from experiments import render

# (class, method, rho) -> AUC per seed. Chosen so that the best method differs per class.
AUCS = {
    (0, "dsplit", 10.0): [0.99, 0.98],
    (0, "ocsvm", 10.0): [0.97, 0.97],
    (1, "dsplit", 10.0): [0.90, 0.90],
    (1, "ocsvm", 10.0): [0.995, 0.995],
    (0, "dsplit", 20.0): [0.95, 0.95],
    (1, "dsplit", 20.0): [0.93, 0.93],
}


def _log(path, dataset="mnist", aucs=AUCS, preset="test", config_hash="abc"):
  for (cls, method, rho), values in aucs.items():
    for seed, auc in enumerate(values):
      records.append_record(path, records.make_record(
          dataset=dataset, normal_class=cls, method=method, seed=seed, rho=rho, auc=auc,
          config={"preset": preset}, wall_time_s=1.0, config_hash=config_hash, preset=preset))


@pytest.fixture
def workdir(tmp_path):
  _log(tmp_path / "results.jsonl")
  return tmp_path


def test_table1_rows_bold_and_means(workdir):
  rows, methods = render.table1_rows(render.load_records(str(workdir)))
  assert methods == ["ocsvm", "dsplit"]  # the paper's column order
  by = {(r["dataset"], r["normal_class"]): r for r in rows}
  c0 = by[("mnist", 0)]
  assert c0["class_name"] == "Digit 0"
  assert c0["cells"]["dsplit"]["mean"] == pytest.approx(98.5)
  assert c0["cells"]["dsplit"]["std"] == pytest.approx(0.5)
  assert c0["cells"]["dsplit"]["paper"] == 98.9
  assert c0["cells"]["dsplit"]["diff"] == pytest.approx(-0.4)
  assert c0["best"] == {"dsplit"} and c0["paper_best"] == {"dsplit"}
  c1 = by[("mnist", 1)]
  assert c1["best"] == {"ocsvm"}
  assert c1["paper_best"] == {"ssim", "dsplit"}  # 99.8 both; SSIM is not among our columns
  mean = by[("mnist", "mean")]
  assert mean["cells"]["dsplit"]["mean"] == pytest.approx((98.5 + 90.0) / 2)
  assert mean["cells"]["dsplit"]["paper"] == pytest.approx((98.9 + 99.8) / 2)  # same classes
  assert mean["cells"]["ocsvm"]["paper"] == pytest.approx((98.2 + 99.2) / 2)
  assert mean["best"] == {"ocsvm"} and mean["paper_best"] == {"dsplit"}
  # Mean absolute difference to the paper: -0.4 and -9.8 for ours, -1.2 and +0.3 for
  # OCSVM (whose mean difference, -0.45, hides both).
  mad = by[("mnist", "mad")]
  assert mad["cells"]["dsplit"]["mean"] == pytest.approx((0.4 + 9.8) / 2)
  assert mad["cells"]["ocsvm"]["mean"] == pytest.approx((1.2 + 0.3) / 2)
  assert mad["cells"]["dsplit"]["n"] == 2 and mad["best"] == set()
  assert [r["normal_class"] for r in rows] == [0, 1, "mean", "mad"]


def test_each_dataset_s_summary_rows_follow_its_classes(tmp_path):
  _log(tmp_path / "results.jsonl")
  _log(tmp_path / "results.jsonl", dataset="fashion_mnist")
  rows, _ = render.table1_rows(render.load_records(str(tmp_path)))
  assert [(r["dataset"], r["normal_class"]) for r in rows] == [
      ("mnist", 0), ("mnist", 1), ("mnist", "mean"), ("mnist", "mad"),
      ("fashion_mnist", 0), ("fashion_mnist", 1), ("fashion_mnist", "mean"),
      ("fashion_mnist", "mad")]


def test_a_mean_over_fewer_classes_says_so(tmp_path):
  _log(tmp_path / "results.jsonl", aucs={**AUCS, (0, "ssim", 10.0): [0.99]})
  rows, methods = render.table1_rows(render.load_records(str(tmp_path)))
  mean = next(r for r in rows if r["normal_class"] == "mean")
  line = next(l for l in render.table1_markdown(rows, methods).splitlines() if "| mean (2" in l)
  cells = dict(zip(methods, line.split(" | ")[2:]))
  assert mean["cells"]["ssim"]["n"] == 1 and "[1 classes]" in cells["ssim"]
  assert "classes]" not in cells["dsplit"]


def test_ties_share_the_bold():
  assert render._best({"a": 99.81, "b": 99.79, "c": 99.7}) == {"a", "b"}
  assert render._best({"a": None}) == set()


def test_main_writes_markdown_csv_and_figures(workdir, capsys):
  rng = np.random.default_rng(0)
  labels = (np.arange(200) >= 20).astype(np.int32)  # 1 = abnormal
  (workdir / "scores").mkdir()
  for method in ("dsplit", "ocsvm"):
    for seed in (0, 1):
      np.savez(workdir / "scores" / f"mnist-c0-{method}-rho10-s{seed}.npz",
               scores=labels + rng.normal(size=200), labels=labels)
  np.savez(workdir / "scores" / "mnist-c0-dsplit-rho20-s0.npz", scores=labels, labels=labels)

  assert render.main([f"--workdir={workdir}", "--figure1=mnist:0"]) == 0
  out = capsys.readouterr().out
  report = workdir / "report"
  for name in ("table1.md", "table1.csv", "figure4.png", "figure4.csv", "roc_mnist_c0.png"):
    assert f"wrote {report / name}" in out
  assert "no splits" in out and "Traceback" not in out

  md = (report / "table1.md").read_text()
  assert "| dataset | class | OCSVM | Ours |" in md
  assert ("| mnist | 0 Digit 0 | 97.0 ± 0.0 / 98.2 (-1.2) | **98.5** ± 0.5 / **98.9** (-0.4) |"
          in md)
  assert ("| mnist | 1 Digit 1 | **99.5** ± 0.0 / 99.2 (+0.3) | 90.0 ± 0.0 / **99.8** (-9.8) |"
          in md)
  assert "| mnist | mean (2 classes) | **98.2** / 98.7 (-0.5) | 94.2 / **99.3** (-5.1) |" in md
  assert "| mnist | mean abs(ours − paper) | 0.7 | 5.1 |" in md or \
         "| mnist | mean abs(ours − paper) | 0.8 | 5.1 |" in md

  table = list(csv.DictReader(open(report / "table1.csv")))
  assert [r["normal_class"] for r in table] == ["0", "1", "mean", "mad"]
  assert table[0]["dsplit"] == "98.5" and table[0]["dsplit_paper"] == "98.9"
  assert table[0]["dsplit_n"] == "2" and table[1]["best"] == "ocsvm"
  assert table[1]["paper_best"] == "ssim;dsplit"

  fig4 = list(csv.DictReader(open(report / "figure4.csv")))
  assert [(r["rho"], r["auc"], r["n_classes"]) for r in fig4] == [
      ("10.0", "94.25", "2"), ("20.0", "94.0", "2")]
  assert float(fig4[0]["paper"]) == pytest.approx(94.23) and fig4[1]["paper"] == ""
  for name in ("figure4.png", "roc_mnist_c0.png"):
    assert matplotlib.image.imread(report / name).shape[-1] in (3, 4)


def test_figure1_from_a_saved_split(tmp_path, datasets_dir, mnist_dir, capsys):
  """The split file is the runner's format; its SSIM values are made up for the test."""
  images, labels = data.load("mnist", "train", datasets_dir)
  index = np.flatnonzero(labels == 3)
  ssim = np.linspace(0.2, 0.9, len(index))
  (tmp_path / "splits").mkdir()
  np.savez(tmp_path / "splits" / "mnist-c3-s0.npz", ssim_train=ssim, train_split_index=index)
  png = tmp_path / "fig1.png"
  render.write_figure1(str(tmp_path), "mnist", 3, 0, images, str(png), count=8)
  assert matplotlib.image.imread(png).ndim == 3
  _log(tmp_path / "results.jsonl", aucs={(3, "dsplit", 10.0): [0.9]})
  assert render.main([f"--workdir={tmp_path}", f"--data_dir={datasets_dir}", "--roc=none",
                      "--figure1=all"]) == 0
  assert f"wrote {tmp_path / 'report' / 'figure1_mnist_c3.png'}" in capsys.readouterr().out


def test_missing_and_ambiguous_inputs(tmp_path, capsys):
  assert render.main([f"--workdir={tmp_path}"]) == 1
  err = capsys.readouterr().err
  assert err.startswith("error: no records in") and err.count("\n") == 1
  _log(tmp_path / "results.jsonl", aucs={(0, "ocsvm", 10.0): [0.9]}, preset="cpu")
  _log(tmp_path / "results.jsonl", aucs={(0, "ocsvm", 10.0): [0.8]}, preset="paper")
  assert render.main([f"--workdir={tmp_path}"]) == 1
  assert "mixes presets cpu, paper; pass --preset" in capsys.readouterr().err
  assert render.main([f"--workdir={tmp_path}", "--preset=paper", "--figure1=mnist:x"]) == 1
  assert "want dataset:class" in capsys.readouterr().err
  assert render.main([f"--workdir={tmp_path}", "--preset=paper", "--figure1=mnist:0"]) == 0
  out = capsys.readouterr().out
  assert "Fig. 4: no dsplit records" in out and "no splits" in out and "ROC: no score" in out
  table = list(csv.DictReader(open(tmp_path / "report" / "table1.csv")))
  assert table[0]["ocsvm"] == "80.0"


def test_only_the_latest_config_of_a_cell_counts(tmp_path, capsys):
  _log(tmp_path / "results.jsonl", aucs={(0, "ocsvm", 10.0): [0.5, 0.5]}, config_hash="old")
  _log(tmp_path / "results.jsonl", aucs={(0, "ocsvm", 10.0): [0.9]}, config_hash="new")
  recs = render.load_records(str(tmp_path))
  assert [r["auc"] for r in recs] == [0.9]
  assert "2 records of older configs ignored" in capsys.readouterr().out


def test_loss_curves_are_drawn_for_every_run_that_saved_them(tmp_path, capsys):
  _log(tmp_path / "results.jsonl")
  run = tmp_path / "runs" / "mnist-dsplit-rho10-c0_1-s0-abc"
  run.mkdir(parents=True)
  steps = np.arange(50, dtype=np.float64)
  curves.append_curves(str(run / curves.CURVES_FILE), "dsplit", 0,
                        {"closeness": np.stack([0.7 - steps / 100, 0.69 + 0 * steps]),
                         "dispersion": np.stack([0.7 - steps / 200, 0.69 + 0 * steps])},
                        ["c0s0", "c1s0"])
  (tmp_path / "runs" / "no-curves").mkdir()
  assert render.main([f"--workdir={tmp_path}", "--figure1=none", "--roc=none"]) == 0
  png = tmp_path / "report" / f"losses_{run.name}.png"
  assert f"wrote {png}" in capsys.readouterr().out
  assert matplotlib.image.imread(png).shape[1] > 500  # two panels side by side
  assert not (tmp_path / "report" / "losses_no-curves.png").exists()
  assert render.main([f"--workdir={tmp_path}", "--figure1=none", "--roc=none",
                      "--loss_curves=none", f"--out={tmp_path / 'other'}"]) == 0
  assert not list((tmp_path / "other").glob("losses_*"))


def test_loss_figures_are_titled_by_dataset_method_and_class_names(tmp_path):
  run = tmp_path / "mnist-dsplit-rho10-c0_1-s0-abc"
  assert render.run_title(str(run), "dsplit") == "dsplit: mnist-dsplit-rho10-c0_1-s0-abc"
  run.mkdir()
  (run / records.RUN_CONFIG_FILE).write_text(
      '{"dataset": "fashion_mnist", "method": "dsplit", "rho": 10.0, "preset": "cpu"}')
  assert render.run_title(str(run), "dsplit") == (
      "dsplit losses: fashion_mnist, dsplit, ρ = 10, preset cpu")
  (run / records.RUN_CONFIG_FILE).write_text(
      '{"dataset": "mnist", "method": "naive_nn", "rho": 10.0}')
  assert render.run_title(str(run), "naive_nn") == "naive_nn losses: mnist, naive_nn"
  assert render.job_label("cifar10", "c3s1") == "3 (Cat), seed 1"
  assert render.job_label(None, "c3s1") == "c3s1"


def test_table1_prefers_the_presets_default_config_and_says_preset_and_seeds(tmp_path, capsys):
  default = render.default_config_hash("cpu", "mnist", "dsplit", 10.0)
  # The default config first, then a study's variant logged later: Table 1 keeps the default.
  _log(tmp_path / "results.jsonl", aucs={(0, "dsplit", 10.0): [0.9, 0.92, 0.94],
                                          (1, "dsplit", 10.0): [0.8]},
       preset="cpu", config_hash=default)
  _log(tmp_path / "results.jsonl", aucs={(0, "dsplit", 10.0): [0.1]}, preset="cpu",
       config_hash="variant")
  recs = render.load_records(str(tmp_path))
  assert {r["config_hash"] for r in recs} == {default}
  assert "1 records of older configs ignored" in capsys.readouterr().out
  rows, methods = render.table1_rows(recs)
  text = render.table1_markdown(rows, methods, preset="cpu")
  assert "Preset: cpu. Seeds per cell: 1-3" in text
  assert "| mnist | 0 Digit 0 | **92.0** ± 1.6 / **98.9** (-6.9) |" in text
  assert "| mnist | 1 Digit 1 | **80.0** ± 0.0 [n=1] / **99.8** (-19.8) |" in text
  assert "†" not in text
  # Without default-config records the latest config is kept, as before.
  assert render.default_config_hash("nope", "mnist", "dsplit", 10.0) is None
  # ... and marked where other columns are at the preset's current config (records of
  # an older version of the preset, e.g. one with another autoencoder budget).
  _log(tmp_path / "results.jsonl", aucs={(0, "ocsvm", 10.0): [0.7]}, preset="cpu",
       config_hash="older")
  rows, methods = render.table1_rows(render.load_records(str(tmp_path)))
  text = render.table1_markdown(rows, methods, preset="cpu")
  assert "†: not the preset's current config" in text
  assert "| mnist | 0 Digit 0 | 70.0 ± 0.0 [n=1] † / 98.2 (-28.2) | **92.0** ± 1.6 /" in text
  assert "| mnist | 1 Digit 1 | – / 99.2 | **80.0** ± 0.0 [n=1] / **99.8** (-19.8) |" in text
  assert "| mnist | mean (2 classes) | 70.0 [1 classes] † /" in text
  # A table with no column at the current config says so once, in its header.
  only_old = tmp_path / "old"
  only_old.mkdir()
  _log(only_old / "results.jsonl", aucs={(0, "ocsvm", 10.0): [0.7]}, preset="cpu",
       config_hash="older")
  rows, methods = render.table1_rows(render.load_records(str(only_old)))
  text = render.table1_markdown(rows, methods, preset="cpu")
  assert "Preset: cpu (no column at its current config" in text and "†" not in text


def test_autoencoder_line_names_the_worst_and_the_stuck_autoencoders():
  def rec(method, c, s, ratio=None, rho=10.0):
    r = dict(dataset="mnist", normal_class=c, seed=s, method=method, rho=rho,
             config={"ae": {"plateau_ratio": 1.0}})
    if ratio is not None:
      r["ae_plateau_ratio"] = ratio
    return r
  recs = [rec("dsplit", 0, 0, 0.2), rec("nnwds", 0, 0, 0.2), rec("dsplit", 1, 0, 0.3),
          rec("dsplit", 2, 0), rec("ocsvm", 3, 0), rec("dsplit", 4, 0, 9.0, rho=50.0)]
  line = render.autoencoder_line(recs)
  assert line.startswith("Splitting autoencoders: 2 of 3 jobs record")
  assert "largest is 0.30 (mnist class 1 seed 0)" in line and "none is stuck" in line
  recs.append(rec("ssim", 5, 1, 2.34))
  line = render.autoencoder_line(recs)
  assert "**1 stuck** (ratio above the limit): mnist 5 s1" in line
  assert render.autoencoder_line([rec("ocsvm", 0, 0)]) == ""


def test_each_protocol_gets_its_own_table_and_an_auc_over_training_panel(tmp_path, capsys):
  path = tmp_path / "results.jsonl"
  _log(path, aucs={(0, "dsplit", 10.0): [0.90, 0.92]})
  for seed, (auc, step) in enumerate([(0.97, 100), (0.99, 0)]):
    records.append_record(path, records.make_record(
        dataset="mnist", normal_class=0, method="dsplit", seed=seed, rho=10.0, auc=auc,
        config={"preset": "test"}, wall_time_s=1.0, config_hash="sel", preset="test",
        protocol="authors_selection", selected_step=step,
        auc_curve=[[0, 0.5, 0.5, 0.5], [100, 0.96, 0.97, 0.97], [200, 0.9, 0.9, 0.9]]))
  plain = render.table1_rows(render.load_records(str(tmp_path)))[0]
  chosen = render.table1_rows(render.load_records(str(tmp_path), protocol="authors_selection"))[0]
  assert plain[0]["cells"]["dsplit"]["mean"] == pytest.approx(91.0)   # never mixed
  assert chosen[0]["cells"]["dsplit"]["mean"] == pytest.approx(98.0)
  assert render.main(["--workdir", str(tmp_path), "--figure1=none", "--roc=none"]) == 0
  report = tmp_path / "report"
  assert "selected with test labels" in (report / "table1_authors_selection.md").read_text()
  assert "selected with test labels" not in (report / "table1.md").read_text()
  assert matplotlib.image.imread(report / "auc_curves_mnist_authors_selection.png").shape[0] > 100
