"""The distance-head study: its cells, its choice of head and its summary maths."""

import math

import numpy as np
import pytest

from dsplit_jax import configs
from dsplit_jax import records
from experiments import study_distance as study


def test_screen_cells_cover_every_head_and_the_ablation_on_the_chosen_classes():
  cells = study.screen_cells("test", None)
  names = [v for v, _ in cells]
  assert names[:2] == ["nnwds", "nnwds"]
  assert [n for n in names if n.startswith("dsplit/")] == [
      f"dsplit/{h}" for h in study.SCREEN_HEADS for _ in range(2)]
  for variant, cell in cells:
    assert sorted(c for c, _ in cell.jobs()) == sorted(study.SCREEN_CLASSES[cell.dataset])
    if variant != "nnwds":
      assert cell.config.model.distance_head == variant.split("/")[1]
  # nnwds is the same cell whatever the head: the Table 1 grid reuses its records.
  first = cells[0][1].config
  assert configs.config_hash(first) == configs.config_hash(_with_head(first, "metric"))
  extra = study.screen_cells("test", None, heads=(), all_pairs_head="metric")
  assert [v for v, _ in extra] == ["nnwds", "nnwds", "dsplit/metric/all_pairs",
                                   "dsplit/metric/all_pairs"]
  assert extra[-1][1].config.train.pairs == "all"
  # Conv latents: their own variant name and config hash; nnwds is unchanged.
  conv = study.screen_cells("test", None, heads=("abs_difference",), latent="conv")
  assert [v for v, _ in conv] == ["nnwds", "nnwds", "dsplit/abs_difference/conv_z",
                                  "dsplit/abs_difference/conv_z"]
  assert conv[-1][1].config.model.latent == "conv"
  assert configs.config_hash(conv[0][1].config) == configs.config_hash(first)
  dense = study.screen_cells("test", None, heads=("abs_difference",))
  assert configs.config_hash(conv[-1][1].config) != configs.config_hash(dense[-1][1].config)


def _with_head(config, head):
  c = config.copy_and_resolve_references()
  c.model.distance_head = head
  return c


def _records(aucs):
  """aucs: variant -> {(class, seed): auc}."""
  out = {}
  for variant, by_job in aucs.items():
    out[variant] = [dict(dataset="mnist", normal_class=c, seed=s, auc=a,
                         final_losses={"closeness": 0.1 * (c + 1), "dispersion": 0.2})
                    for (c, s), a in by_job.items()]
  return out


def test_summary_means_over_seeds_and_paired_gain_with_its_standard_error():
  base = {(0, 0): 0.90, (1, 0): 0.80, (0, 1): 0.92, (1, 1): 0.82}
  mine = {(0, 0): 0.91, (1, 0): 0.83, (0, 1): 0.92, (1, 1): 0.86}
  rows = study.summarize(_records({"nnwds": base, "dsplit/metric": mine}))
  assert [r["variant"] for r in rows] == ["nnwds", "dsplit/metric"]
  nnwds, dsplit = rows
  # Mean over classes per seed (85.0, 87.0), then over seeds.
  assert nnwds["mean"] == pytest.approx(86.0)
  assert nnwds["std"] == pytest.approx(np.std([85.0, 87.0], ddof=1))
  diffs = [1.0, 3.0, 0.0, 4.0]
  assert dsplit["gain"] == pytest.approx(np.mean(diffs))
  assert dsplit["gain_se"] == pytest.approx(np.std(diffs, ddof=1) / math.sqrt(4))
  assert dsplit["pairs"] == 4 and "gain" not in nnwds
  assert dsplit["closeness_max"] == pytest.approx(0.2)
  assert dsplit["closeness_mean"] == pytest.approx(0.15)
  text = study.report_markdown(rows)
  assert "| mnist | dsplit/metric | 4 (2 x 2) | 88.00 |" in text
  assert "+2.00 (0.91, 4)" in text


def test_best_head_is_the_highest_mean_among_symmetric_heads():
  by_variant = _records({"dsplit/abs_difference": {(0, 0): 0.8, (1, 0): 0.9},
                         "dsplit/metric": {(0, 0): 0.9, (1, 0): 0.9},
                         "dsplit/paper_literal": {(0, 0): 0.99, (1, 0): 0.99}})
  assert study.best_head(by_variant) == "metric"
  assert study.best_head({}) is None


def test_cell_records_keep_only_the_cells_config_and_jobs(tmp_path):
  results = str(tmp_path / "results.jsonl")
  [(variant, cell)] = [c for c in study.screen_cells("test", None) if c[0] == "dsplit/metric"
                       and c[1].dataset == "mnist"]
  for head, cls in [("metric", 2), ("metric", 3), ("abs_difference", 2)]:
    config = _with_head(cell.config, head)
    records.append_record(results, records.make_record(
        dataset="mnist", normal_class=cls, method="dsplit", seed=0, rho=cell.rho, auc=0.5,
        config=config, wall_time_s=1.0, config_hash=configs.config_hash(config)))
  got = study.cell_records([(variant, cell)], results)
  assert [(r["normal_class"], r["config"]["model"]["distance_head"]) for r in got[variant]] \
      == [(2, "metric")]  # class 3 is not a screened class; the other head is another cell


def test_bad_flags_are_one_line_errors(capsys):
  assert study.main(["--workdir=w", "--heads=cosine"]) == 2
  assert "unknown distance head(s) cosine" in capsys.readouterr().err
  assert study.main(["--workdir=w", "--stage=seeds"]) == 2
  assert "--stage=seeds needs --heads" in capsys.readouterr().err


def test_report_writes_table_and_figure_from_the_cells_records(tmp_path):
  import matplotlib.image
  results = str(tmp_path / "results.jsonl")
  cells = [c for c in study.screen_cells("test", None) if c[0] in ("nnwds", "dsplit/metric")]
  for variant, cell in cells:
    for cls in study.SCREEN_CLASSES[cell.dataset]:
      records.append_record(results, records.make_record(
          dataset=cell.dataset, normal_class=cls, method=cell.method, seed=0, rho=cell.rho,
          auc=0.8 + 0.01 * cls + (0.02 if variant != "nnwds" else 0.0), config=cell.config,
          wall_time_s=1.0, config_hash=configs.config_hash(cell.config)))
  text = study.report(cells, str(tmp_path), "screen")
  assert "| fashion_mnist | dsplit/metric | 4 (4 x 1) |" in text
  assert "+2.00 (0.00, 4)" in text
  assert matplotlib.image.imread(tmp_path / "report" / "screen.png").shape[1] > 1000
  assert (tmp_path / "report" / "screen.md").read_text() in text


def test_set_items_reach_every_cell_of_both_stages(capsys):
  extra = ["ae.steps=30", "ae.warmup_steps=30"]
  cells = (study.screen_cells("test", None, all_pairs_head="metric", extra=extra)
           + study.seed_cells(["metric"], "test", None, num_seeds=1, extra=extra))
  assert {(c.config.ae.steps, c.config.ae.warmup_steps) for _, c in cells} == {(30, 30)}
  heads = {c.config.model.distance_head for v, c in cells if v.startswith("dsplit/")}
  assert heads == set(study.SCREEN_HEADS) | {"metric"}  # the variant's own items still apply
  plain = study.screen_cells("test", None)
  assert configs.config_hash(cells[0][1].config) != configs.config_hash(plain[0][1].config)
  assert study.main(["--workdir=w", "--set=train.nope=1"]) == 2
  assert "train.nope" in capsys.readouterr().err
