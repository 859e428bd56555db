"""The capacity study: its variants scale only the classifier, and its summary maths."""

import numpy as np
import pytest

from dsplit_jax import configs
from experiments import study_capacity as study
from experiments import table1


def test_variants_scale_the_classifier_and_share_the_autoencoder():
  base = configs.get_preset("test")
  cells = study.cells("test", None)
  assert [(v, c.method) for v, c in cells[:4]] == [
      ((1, 1), "dsplit"), ((1, 1), "nnwds"), ((2, 1), "dsplit"), ((2, 1), "nnwds")]
  for (width, steps), cell in cells:
    c = cell.config
    assert c.model.conv_features == tuple(width * n for n in base.model.conv_features)
    assert c.model.dense_features == tuple(width * n for n in base.model.dense_features)
    assert c.train.steps == steps * base.train.steps
    assert c.model.ae_conv_features == base.model.ae_conv_features
    # One autoencoder (and so one split) per job across variants: clean pairs.
    assert configs.autoencoder_hash(c) == configs.autoencoder_hash(cells[0][1].config)
    wanted = study.WIDE_CLASSES if width >= 4 else study.CLASSES
    assert sorted(k for k, _ in cell.jobs()) == sorted(wanted)
  # x1 is Table 1's own cell: the grid's records serve both.
  plain = table1.make_cells(datasets=[study.DATASET], methods="dsplit", preset="test",
                            classes="2,4,8")[0]
  assert configs.config_hash(cells[0][1].config) == configs.config_hash(plain.config)
  hashes = {configs.config_hash(c.config) for _, c in cells}
  assert len(hashes) == len(cells)


def _rec(c, s, auc, wall):
  return dict(normal_class=c, seed=s, auc=auc, wall_time_s=wall)


def test_summary_pairs_dsplit_with_nnwds_per_variant():
  by_cell = {
      ((1, 1), "dsplit"): [_rec(2, 0, 0.80, 100), _rec(4, 0, 0.90, 110)],
      ((1, 1), "nnwds"): [_rec(2, 0, 0.78, 40), _rec(4, 0, 0.91, 50)],
      ((2, 1), "dsplit"): [_rec(2, 0, 0.85, 300)],  # class 4 not run yet
      ((2, 1), "nnwds"): [_rec(2, 0, 0.80, 90), _rec(4, 0, 0.93, 95)],
  }
  rows = study.summarize(by_cell)
  assert [r["variant"] for r in rows] == [(1, 1), (2, 1)]
  x1, x2 = rows
  assert x1["pairs"] == 2 and x1["gain"] == pytest.approx(np.mean([2.0, -1.0]))
  assert x1["gain_se"] == pytest.approx(np.std([2.0, -1.0], ddof=1) / np.sqrt(2))
  assert x1["dsplit_s_per_job"] == pytest.approx(105)
  # Only complete pairs enter the means: x2 has one.
  assert x2["pairs"] == 1 and x2["gain"] == pytest.approx(5.0) and x2["gain_se"] is None
  assert x2["nnwds"] == pytest.approx(80.0)
  text = study.report_markdown(rows)
  assert "| width x2, steps x1 | 85.00 / 80.00 | - / 93.00 | 85.00 | 80.00 | +5.00 (-, 1) |" in text
  assert "+0.50 (1.50, 2)" in text


def test_bad_classes_are_a_one_line_error(capsys):
  assert study.main(["--workdir=/nonexistent", "--stage=report", "--classes=2,x",
                     "--preset=test"]) == 2
  assert "classes must be a comma list of integers" in capsys.readouterr().err


def test_set_items_apply_to_every_cell_and_are_what_gets_scaled(capsys):
  # --set reproduces cells of another config, e.g. ones with a 750-step autoencoder.
  extra = ["ae.steps=30", "train.steps=20", "model.dense_features=(5,6)"]
  cells = study.cells("test", None, extra=extra)
  for (width, steps), cell in cells:
    c = cell.config
    assert c.ae.steps == 30
    assert c.train.steps == 20 * steps
    assert c.model.dense_features == (5 * width, 6 * width)
  assert configs.config_hash(cells[0][1].config) != configs.config_hash(
      study.cells("test", None)[0][1].config)
  assert study.main(["--workdir=/nonexistent", "--stage=report", "--set=ae.nope=1"]) == 2
  assert "ae.nope" in capsys.readouterr().err
