"""The threshold's meaning: a held-out share of the normal images places it, or a
labelled calibration set. Fast: the classical OCSVM on tiny random images."""

import numpy as np
import pytest

import dsplit_jax
from dsplit_jax import api


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(1)
  train = rng.uniform(0.0, 0.4, (50, 28, 28, 1)).astype(np.float32)
  normal = rng.uniform(0.0, 0.4, (30, 28, 28, 1)).astype(np.float32)
  abnormal = rng.uniform(0.2, 0.8, (30, 28, 28, 1)).astype(np.float32)
  return train, np.concatenate([normal, abnormal]), np.repeat([0, 1], 30)


def _detector(**kw):
  return dsplit_jax.OneClassClassifier("test", method="ocsvm", verbose=False, **kw)


@pytest.fixture(scope="module")
def held(images):
  return _detector(contamination=0.1).fit(images[0])


def test_holdout_split_is_seeded_disjoint_and_whole():
  fit, out = api.holdout_split(50, 0.2, 0)
  assert len(out) == 10 and len(fit) == 40
  assert sorted(np.r_[fit, out].tolist()) == list(range(50))
  np.testing.assert_array_equal(api.holdout_split(50, 0.2, 0)[1], out)
  assert not np.array_equal(api.holdout_split(50, 0.2, 1)[1], out)
  assert len(api.holdout_split(3, 0.01, 0)[1]) == 1  # at least one image
  assert len(api.holdout_split(50, 0.0, 0)[1]) == 0


def test_the_threshold_comes_from_the_held_out_images(held, images):
  fit, out = api.holdout_split(50, 0.2, 0)
  assert held.threshold_source_ == "holdout"
  np.testing.assert_allclose(held.holdout_scores_, held.decision_scores_[out])
  assert held.threshold_ == pytest.approx(np.percentile(held.decision_scores_[out], 90))
  np.testing.assert_array_equal(held.labels_, held.decision_scores_ > held.threshold_)
  # Fit on the other 40 only: the same detector as one fit on them in-sample.
  alone = _detector(threshold_holdout=0.0).fit(images[0][fit])
  np.testing.assert_allclose(alone.decision_function(images[1]),
                             held.decision_function(images[1]), rtol=1e-6)
  # The OCSVM scores its own training images lower than new normal ones: the held-out
  # threshold lies above the in-sample one.
  assert held.threshold_ > alone.threshold_


def test_calibrate_for_a_false_positive_rate_and_for_best_f1(images):
  x, y = images[1], images[2]
  clf = _detector().fit(images[0])
  scores = clf.decision_function(x)
  clf.calibrate(x, y, target="fpr", fpr=0.1)
  assert clf.threshold_source_ == "calibrated fpr"
  assert clf.threshold_ == pytest.approx(np.percentile(scores[y == 0], 90))
  assert np.mean(clf.predict(x)[y == 0]) == pytest.approx(0.1)
  np.testing.assert_array_equal(clf.labels_, clf.decision_scores_ > clf.threshold_)
  clf.calibrate(x, y, target="f1")
  labels = clf.predict(x)
  tp = np.sum(labels & y)
  f1 = 2 * tp / (labels.sum() + y.sum())
  # Brute force over every cut between sorted scores: none beats it.
  best = max(2 * np.sum((scores > t) & (y == 1)) / (np.sum(scores > t) + y.sum())
             for t in np.r_[scores, scores.min() - 1])
  assert f1 == pytest.approx(best) and clf.threshold_source_ == "calibrated f1"


def test_best_f1_threshold_by_hand():
  # Flagging the top two (both abnormal) gives F1 = 2*2/(2+2) = 1.
  assert api.best_f1_threshold([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]) == pytest.approx(0.5)
  # Ties: the cut cannot split equal scores.
  t = api.best_f1_threshold([1.0, 1.0, 0.0], [1, 0, 0])
  assert t == pytest.approx(0.5)


def test_a_calibrated_threshold_survives_save_and_load(images, tmp_path):
  clf = _detector().fit(images[0]).calibrate(images[1], images[2], target="f1")
  clf.save(str(tmp_path / "det"))
  loaded = dsplit_jax.OneClassClassifier.load(str(tmp_path / "det"))
  assert loaded.threshold_ == clf.threshold_ and loaded.threshold_source_ == "calibrated f1"
  assert loaded.threshold_holdout == 0.2
  np.testing.assert_array_equal(loaded.holdout_scores_, clf.holdout_scores_)
  np.testing.assert_array_equal(loaded.predict(images[1]), clf.predict(images[1]))


@pytest.mark.parametrize("kw, message", [
    (dict(threshold_holdout=0.5), r"threshold_holdout .* in \[0, 0.5\); got 0.5"),
    (dict(threshold_holdout=-0.1), r"threshold_holdout .* in \[0, 0.5\)"),
])
def test_bad_holdout_is_refused(kw, message):
  with pytest.raises(ValueError, match=message):
    _detector(**kw)


def test_bad_calibration_is_refused(held, images):
  x, y = images[1], images[2]
  for kw, message in [(dict(target="auc"), "target must be one of fpr, f1"),
                      (dict(fpr=0), r"fpr .* in \(0, 1\)"), (dict(fpr=1.5), r"in \(0, 1\)")]:
    with pytest.raises(ValueError, match=message):
      held.calibrate(x, y, **kw)
  with pytest.raises(ValueError, match="0 \\(normal\\) and 1"):
    held.calibrate(x, y * 2)
  with pytest.raises(ValueError, match="60 images but y has 3"):
    held.calibrate(x, y[:3])
  with pytest.raises(ValueError, match="needs both"):
    held.calibrate(x, np.zeros(60, int), target="f1")
  with pytest.raises(ValueError, match="needs normal images"):
    held.calibrate(x, np.ones(60, int))


def test_too_few_images_left_to_fit():
  with pytest.raises(ValueError, match="got 3 .4 less 1 held out"):
    _detector().fit(np.zeros((4, 28, 28), np.uint8))


def test_the_command_line_refuses_a_bad_threshold_before_any_work(tmp_path, capsys):
  from dsplit_jax import cli
  from dsplit_jax import configs
  code = cli.run(configs.get_preset("test"), ["dsplit"], workdir=str(tmp_path / "w"),
                 score_dir=str(tmp_path), threshold_holdout=0.7)
  err = capsys.readouterr().err
  assert code == 2 and err.count("\n") == 1 and "threshold_holdout" in err
  assert not (tmp_path / "w").exists()
