"""Evaluation protocols on constructed scores, and through the runner at the test preset."""

import json
import os

import ml_collections
import numpy as np
import pytest

from dsplit_jax import configs
from dsplit_jax import metrics
from dsplit_jax import protocols
from dsplit_jax import records
from dsplit_jax import validation


def _eval(protocol="authors_selection", fraction=0.3):
  return ml_collections.ConfigDict(dict(protocol=protocol, every=100,
                                        selection_fraction=fraction, curves=False))


def test_selection_mask_takes_the_first_share_of_each_class_in_file_order():
  labels = np.array([0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0])  # 7 normals, 5 anomalies
  mask = protocols.selection_mask(labels, 0.3)
  # int(0.3 * 7) = 2 normals (positions 0, 2), int(0.3 * 5) = 1 anomaly (position 1).
  assert np.flatnonzero(mask).tolist() == [0, 1, 2]


def test_select_picks_the_best_selection_auc_and_reports_the_other_images():
  rng = np.random.default_rng(0)
  labels = rng.permutation(np.repeat([0, 1], [60, 40]))
  chosen = protocols.selection_mask(labels, 0.3)
  good = labels + rng.normal(0, 0.8, labels.size)        # informative everywhere
  # Perfect on the selection images only, random on the rest: selected, and its
  # reported AUC is the poor held-out one, not the perfect selection AUC.
  cheat = np.where(chosen, labels, rng.normal(0, 1, labels.size))
  out = protocols.select(labels, {0: -good, 100: cheat, 200: good}, 0.3)
  assert out["selected_step"] == 100
  assert out["selection_auc"] == 1.0
  assert out["auc"] == pytest.approx(metrics.auc(labels[~chosen], cheat[~chosen]))
  assert out["auc"] < 0.8
  assert [p["step"] for p in out["curve"]] == [0, 100, 200]


def test_select_keeps_the_earliest_of_equal_checkpoints():
  labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1] * 4)
  scores = labels.astype(float)
  out = protocols.select(labels, {300: scores, 100: scores, 200: scores * 2}, 0.3)
  assert out["selected_step"] == 100


def test_select_refuses_a_selection_without_both_classes():
  labels = np.array([0] * 10 + [1] * 2)
  with pytest.raises(ValueError, match="without normals or anomalies"):
    protocols.select(labels, {0: np.arange(12.0)}, 0.3)  # int(0.3 * 2) = 0 anomalies


def test_full_test_last_reports_the_final_model_on_every_image():
  labels = np.array([0, 1] * 20)
  final = np.linspace(0, 1, 40) + labels
  out = protocols.evaluate(_eval("full_test_last"), labels, final, 750,
                           {0: -final, 100: final})
  assert out["auc"] == metrics.auc(labels, final)
  assert out["protocol"] == "full_test_last"
  assert [s for s, _ in out["auc_curve"]] == [0, 100, 750]


def test_authors_selection_considers_the_final_model_as_a_candidate():
  labels = np.array([0, 1] * 20)
  final = labels + np.linspace(0, 0.1, 40)
  out = protocols.evaluate(_eval(), labels, final, 750, {0: -final})
  assert out["selected_step"] == 750
  assert out["auc_full_test_last"] == 1.0


def test_eval_steps_include_zero_and_the_last_step():
  assert protocols.eval_steps(100, 750) == [0, 100, 200, 300, 400, 500, 600, 700, 750]
  assert protocols.eval_steps(100, 800) == [0, 100, 200, 300, 400, 500, 600, 700, 800]


def test_the_default_protocol_keeps_every_config_hash():
  """The eval section at its defaults stays out of the hash (committed records stay
  valid); any other protocol is a different hash."""
  for preset in configs.PRESETS:
    base = configs.load(preset)
    with base.unlocked():
      del base["eval"]
    assert configs.config_hash(configs.load(preset)) == configs.digest(
        configs._drop_compatible_defaults({k: v for k, v in base.to_dict().items()
                                           if k not in configs._JOB_FIELDS}))
  assert configs.config_hash(configs.load("cpu", ["eval.protocol=authors_selection"])) != (
      configs.config_hash(configs.load("cpu")))


@pytest.mark.parametrize("item", ["eval.protocol=best", "eval.selection_fraction=1",
                                  "eval.selection_fraction=0"])
def test_bad_eval_values_are_refused(item):
  with pytest.raises(configs.ConfigError):
    validation.validate(configs.load("test", [item]), check_dataset=False)


def test_checkpoints_must_fall_on_chunk_boundaries():
  with pytest.raises(configs.ConfigError, match="a multiple of train.chunk_steps"):
    validation.validate(configs.load("test", ["eval.protocol=authors_selection",
                                           "eval.every=15"]), check_dataset=False)


def _run(tmp_path, name, overrides):
  from dsplit_jax import runner  # pylint: disable=g-import-not-at-top
  data_dir = os.environ.get("DSPLIT_DATA_DIR")
  if not data_dir or not os.path.isdir(os.path.join(data_dir, "mnist")):
    pytest.skip("needs MNIST: set DSPLIT_DATA_DIR to a folder holding mnist/")
  config = configs.load("test", ["dataset=mnist", "normal_classes=(0, 1)",
                                 f"data_dir={data_dir}", *overrides])
  workdir = str(tmp_path / name)
  return runner.run(config, workdir, progress=_Quiet()), workdir


class _Quiet:
  def __init__(self):
    self.printer = lambda line: None
    self.history, self.first_chunk_s = [], {}

  def __call__(self, *args):
    pass

  def restart_clock(self, *args):
    pass


@pytest.mark.long
def test_the_runner_selects_from_saved_checkpoint_scores_and_keeps_the_final_auc(tmp_path):
  plain, _ = _run(tmp_path, "plain", [])
  curves, _ = _run(tmp_path, "curves", ["eval.curves=True", "eval.every=10"])
  chosen, workdir = _run(tmp_path, "chosen", ["eval.protocol=authors_selection",
                                             "eval.every=10"])
  for a, b, c in zip(plain, curves, chosen):
    # Scoring checkpoints does not touch training: the final AUC is the same bit for bit.
    assert a["auc"] == b["auc"] == c["auc_full_test_last"]
    assert a["protocol"] == b["protocol"] == "full_test_last" and "auc_curve" not in a
    assert [p[0] for p in b["auc_curve"]] == [0, 10, 20]
    assert c["protocol"] == "authors_selection"
  run_dir, = [os.path.join(workdir, "runs", d) for d in os.listdir(os.path.join(workdir, "runs"))]
  step_scores = records.read_eval_scores(run_dir, "dsplit")
  assert sorted(step_scores) == [0, 10, 20]
  for j, rec in enumerate(chosen):
    labels = np.load(records.scores_file(workdir, rec))["labels"]
    expect = protocols.select(labels, {s: v[j] for s, v in step_scores.items()}, 0.3)
    assert rec["selected_step"] == expect["selected_step"]
    assert rec["auc"] == expect["auc"]
  with open(records.results_path(workdir)) as f:
    assert all(json.loads(line)["protocol"] == "authors_selection" for line in f)


def test_the_detector_api_refuses_selection_with_test_labels():
  with pytest.raises(configs.ConfigError, match="labelled test images"):
    validation.validate(configs.load("test", ["eval.protocol=authors_selection"]),
                     check_dataset=False)
