"""The detector's PyOD and scikit-learn contract, as PyOD's `BaseDetector` documents it.

Fast: the classical OCSVM (deterministic, fit in milliseconds) on tiny arrays of dark
normal images and bright abnormal ones. What is tested here is computed by the API
from the scores, the same for every method. PyOD places the threshold on the training
scores, so these detectors do too (`threshold_holdout=0`); the held-out threshold,
the default, is tested in test_api_thresholds.py.
"""

import pickle

import numpy as np
import pytest
import scipy.special
import scipy.stats
import sklearn.base
import sklearn.preprocessing
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import dsplit_jax
from dsplit_jax import api
from dsplit_jax import configs
from dsplit_jax import metrics

pyod_base = pytest.importorskip("pyod.models.base", reason="pyod is in the test extra")
pyod_utility = pytest.importorskip("pyod.utils.utility", reason="pyod is in the test extra")

N_TRAIN, CONTAMINATION = 60, 0.1


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  train = rng.uniform(0.0, 0.4, (N_TRAIN, 28, 28, 1)).astype(np.float32)
  normal = rng.uniform(0.0, 0.4, (20, 28, 28, 1)).astype(np.float32)
  abnormal = rng.uniform(0.3, 1.0, (20, 28, 28, 1)).astype(np.float32)
  return train, np.concatenate([normal, abnormal]), np.repeat([0, 1], 20)


def _detector(**kw):
  kw.setdefault("contamination", CONTAMINATION)
  kw.setdefault("threshold_holdout", 0.0)
  return dsplit_jax.OneClassClassifier("test", method="ocsvm", verbose=False, **kw)


@pytest.fixture(scope="module")
def clf(images):
  return _detector().fit(images[0])


class _Oracle(pyod_base.BaseDetector):
  """PyOD's own BaseDetector over fixed scores: X is a list of indices into `scores`,
  the first N_TRAIN of which are the training scores."""

  def __init__(self, scores, contamination=0.1):
    super().__init__(contamination=contamination)
    self.scores = scores

  def fit(self, X, y=None):
    self._set_n_classes(y)
    self.decision_scores_ = self.scores[np.asarray(X)]
    self._process_decision_scores()
    return self

  def decision_function(self, X):
    return self.scores[np.asarray(X)]


@pytest.fixture(scope="module")
def oracle(clf, images):
  scores = np.concatenate([clf.decision_scores_, clf.decision_function(images[1])])
  return _Oracle(scores, CONTAMINATION).fit(np.arange(N_TRAIN)), \
      np.arange(N_TRAIN, len(scores))


def test_fitted_attributes(clf, images):
  scores = clf.decision_scores_
  assert scores.shape == (N_TRAIN,) and len(np.unique(scores)) == N_TRAIN
  assert clf.threshold_ == pytest.approx(np.percentile(scores, 100 * (1 - CONTAMINATION)))
  np.testing.assert_array_equal(clf.labels_, scores > clf.threshold_)
  assert clf.labels_.sum() == N_TRAIN * CONTAMINATION  # 60 distinct scores: 6 above
  assert clf._mu == pytest.approx(scores.mean()) and clf._sigma == pytest.approx(scores.std())
  np.testing.assert_allclose(clf.decision_function(images[0]), scores, rtol=1e-6)


def test_scores_labels_and_y_ignored(clf, images):
  scores = clf.decision_function(images[1])
  assert scores.shape == (40,)
  assert metrics.auc(images[2], scores) > 0.9
  labels = clf.predict(images[1])
  assert labels.dtype == np.int64 and labels.shape == (40,)
  np.testing.assert_array_equal(labels, scores > clf.threshold_)
  with_y = _detector().fit(images[0], np.ones(N_TRAIN))
  np.testing.assert_array_equal(with_y.decision_scores_, clf.decision_scores_)


def test_linear_probability_is_min_max_scaling_by_the_training_scores(clf, images):
  proba = clf.predict_proba(images[1])  # "linear" is the default
  scaler = sklearn.preprocessing.MinMaxScaler().fit(clf.decision_scores_[:, None])
  want = np.clip(scaler.transform(clf.decision_function(images[1])[:, None])[:, 0], 0, 1)
  np.testing.assert_allclose(proba[:, 1], want, rtol=1e-6)
  np.testing.assert_allclose(proba.sum(axis=1), 1.0)
  assert proba[images[2] == 1, 1].mean() > proba[images[2] == 0, 1].mean()


def test_unify_probability_is_the_erf_of_pyods_standardised_scores(clf, images):
  train, test = clf.decision_scores_, clf.decision_function(images[1])
  _, z = pyod_utility.standardizer(train[:, None], test[:, None])
  want = np.clip(scipy.special.erf(z[:, 0] / np.sqrt(2)), 0, 1)
  proba = clf.predict_proba(images[1], method="unify")
  np.testing.assert_allclose(proba[:, 1], want, rtol=1e-6, atol=1e-12)
  np.testing.assert_allclose(proba[:, 0], 1 - want, rtol=1e-6, atol=1e-12)
  assert np.any((proba[:, 1] > 0) & (proba[:, 1] < 1))  # not all clipped


def test_probability_method_must_be_known(clf, images):
  with pytest.raises(ValueError, match="linear, unify"):
    clf.predict_proba(images[1], method="something")


def test_confidence_is_exceed(clf, images):
  """ExCeed written out: P(Binomial(n, p) > n - floor(n * contamination)) with
  p = (1 + #training scores <= s) / (2 + n), flipped for a "normal" label."""
  scores = clf.decision_function(images[1])
  n = N_TRAIN
  p = np.array([(1 + np.sum(clf.decision_scores_ <= s)) / (2 + n) for s in scores])
  outlier = scipy.stats.binom.sf(n - int(n * CONTAMINATION), n, p)
  want = np.where(scores > clf.threshold_, outlier, 1 - outlier)
  np.testing.assert_allclose(clf.predict_confidence(images[1]), want, rtol=1e-9, atol=1e-12)
  labels, conf = clf.predict(images[1], return_confidence=True)
  np.testing.assert_array_equal(labels, clf.predict(images[1]))
  np.testing.assert_allclose(conf, want, rtol=1e-9, atol=1e-12)
  proba, conf = clf.predict_proba(images[1], method="unify", return_confidence=True)
  assert proba.shape == (40, 2) and conf.shape == (40,)
  assert 0 <= conf.min() and conf.max() <= 1


def test_everything_agrees_with_pyods_base_detector_on_the_same_scores(clf, images, oracle):
  pyod, test = oracle
  x = images[1]
  assert clf.threshold_ == pytest.approx(pyod.threshold_)
  np.testing.assert_array_equal(clf.labels_, pyod.labels_)
  np.testing.assert_array_equal(clf.predict(x), pyod.predict(test))
  for method in ("linear", "unify"):
    np.testing.assert_allclose(clf.predict_proba(x, method=method),
                               pyod.predict_proba(test, method=method), atol=1e-12)
  np.testing.assert_allclose(clf.predict_confidence(x), pyod.predict_confidence(test),
                             atol=1e-12)
  for normalized in (False, True):
    np.testing.assert_allclose(clf.predict_rank(x, normalized=normalized),
                               pyod._predict_rank(test, normalized=normalized))
  for T in (32, 1):
    np.testing.assert_array_equal(clf.predict_with_rejection(x, T=T),
                                  pyod.predict_with_rejection(test, T=T, c_r=CONTAMINATION))
  with pytest.warns(UserWarning):  # PyOD warns that it sets c_r to the contamination
    _, want = pyod.predict_with_rejection(test, return_stats=True)
  _, got = clf.predict_with_rejection(x, return_stats=True)
  np.testing.assert_allclose(got, want, rtol=1e-9)


def test_rejection_and_rank(clf, images):
  assert api.REJECTED in clf.predict_with_rejection(images[1])  # T=32 rejects nearly all
  labels = clf.predict_with_rejection(images[1], T=1)
  assert set(np.unique(labels)) <= {api.REJECTED, 0, 1}
  kept = labels != api.REJECTED
  assert kept.any() and np.all(labels[kept] == clf.predict(images[1])[kept])
  _, (rate, upper_rate, upper_cost) = clf.predict_with_rejection(images[1], return_stats=True)
  assert 0 <= rate <= 1 and 0 <= upper_rate and upper_cost >= 0
  ranks = clf.predict_rank(images[1])
  assert ranks.min() >= 0 and ranks.max() <= N_TRAIN
  order = np.argsort(clf.decision_function(images[1]))
  assert np.all(np.diff(ranks[order]) >= 0) and ranks.max() > ranks.min()
  assert clf.predict_rank(images[1], normalized=True).max() == 1.0
  with pytest.raises(ValueError, match="delta"):
    clf.predict_with_rejection(images[1], delta=0)


def test_fit_predict_and_fit_predict_score(images):
  clf = _detector()
  np.testing.assert_array_equal(clf.fit_predict(images[0]), clf.labels_)
  np.testing.assert_array_equal(clf.labels_, clf.predict(images[0]))
  x, y = images[1], images[2]
  assert _detector().fit_predict_score(x, y) == pytest.approx(
      metrics.auc(y, _detector().fit(x).decision_scores_))
  assert 0.5 < _detector().fit_predict_score(x, y, scoring="prc_n_score") <= 1
  with pytest.raises(NotImplementedError):
    _detector().fit_predict_score(x, y, scoring="something")


def test_get_set_params_and_clone(clf, images):
  params = clf.get_params()
  assert params == dict(preset="test", method="ocsvm", rho=10.0, seed=0,
                        contamination=CONTAMINATION, threshold_holdout=0.0, config=None,
                        verbose=False)
  copy = sklearn.base.clone(clf)
  assert copy.get_params() == params and copy is not clf
  with pytest.raises(NotFittedError):
    copy.predict(images[1])
  copy.set_params(method="iforest", contamination=0.2).fit(images[0])
  assert copy.config_.method == "iforest" and copy.labels_.sum() == 12
  assert clf.config_.method == "ocsvm"  # the original is untouched
  copy.set_params(method="svm")
  with pytest.raises(ValueError, match="unknown method 'svm'"):
    copy.fit(images[0])


def test_a_config_is_not_changed_and_clones(images):
  config = configs.get_preset("test")
  clf = dsplit_jax.OneClassClassifier(config=config, method="iforest", seed=3,
                                      verbose=False).fit(images[0])
  assert config.method == "dsplit" and config.seeds == (0,)
  assert clf.config_.method == "iforest" and clf.config_.seeds == (3,)
  copy = sklearn.base.clone(clf)
  assert copy.config is not config and copy.config.to_dict() == config.to_dict()
  np.testing.assert_array_equal(copy.fit(images[0]).decision_scores_, clf.decision_scores_)


def test_repr_shows_the_parameters_that_differ_from_the_defaults(images):
  assert repr(_detector(contamination=0.2)) == (
      "OneClassClassifier(contamination=0.2, method='ocsvm', preset='test', "
      "threshold_holdout=0.0, verbose=False)")
  assert repr(dsplit_jax.OneClassClassifier(config=configs.get_preset("test"))) == (
      "OneClassClassifier(config=<ConfigDict of preset 'test'>)")


def test_unfitted_detector_raises_sklearns_not_fitted_error(images, tmp_path):
  clf = _detector()
  with pytest.raises(NotFittedError):
    check_is_fitted(clf)
  for call in (clf.decision_function, clf.predict, clf.predict_proba, clf.predict_confidence,
               clf.predict_with_rejection, clf.predict_rank):
    with pytest.raises(NotFittedError, match="fit"):
      call(images[1])
  with pytest.raises(NotFittedError):
    clf.save(str(tmp_path / "det"))
  check_is_fitted(clf.fit(images[0]))  # raises nothing once fitted


def test_verbose_and_progress(images, capsys):
  _detector().fit(images[0])
  assert capsys.readouterr().out == ""
  dsplit_jax.OneClassClassifier("test", method="ocsvm").fit(images[0])
  # The default holds a fifth out of the fit to place the threshold.
  held = N_TRAIN - N_TRAIN * 4 // 5
  assert capsys.readouterr().out == (
      f"[ocsvm] fit on {N_TRAIN * 4 // 5} images\n"
      f"[ocsvm] threshold placed on the {held} held-out normal images\n")
  _detector().fit(images[0], verbose=True)
  assert capsys.readouterr().out.startswith("[ocsvm]")
  lines = []
  dsplit_jax.OneClassClassifier("test", method="ocsvm", threshold_holdout=0.0).fit(
      images[0], progress=lines.append)
  assert lines == [f"[ocsvm] fit on {N_TRAIN} images"] and capsys.readouterr().out == ""
  with pytest.raises(TypeError, match="progress must be"):
    _detector().fit(images[0], progress=3, verbose=True)


def test_a_config_passed_in_is_left_as_it_was(images, tmp_path):
  given = configs.get_preset("test")
  before = given.to_dict()
  clf = dsplit_jax.OneClassClassifier(config=given, method="ocsvm", rho=5.0, seed=3,
                                      verbose=False).fit(images[0])
  clf.save(str(tmp_path / "det"))
  assert given.to_dict() == before  # not method=ocsvm, seeds=(3,), dataset=folder
  assert (clf.config_.method, clf.config_.seeds, clf.config_.dataset) == ("ocsvm", (3,), "folder")
  assert clf.config_ is not given and clf.get_params()["config"] is given


def test_a_classical_detector_gives_its_estimators_fitted_attributes(clf, images):
  """As PyOD's OCSVM and IForest wrappers: `support_vectors_`, `estimators_`, ... read
  on the detector are those of the fitted scikit-learn estimator (`estimator_`)."""
  svm = clf.estimator_
  assert type(svm).__name__ == "OneClassSVM"
  assert clf.support_vectors_ is svm.support_vectors_ and clf.offset_ == svm.offset_
  assert clf.n_features_in_ == 28 * 28
  forest = dsplit_jax.OneClassClassifier("test", method="iforest", threshold_holdout=0.0,
                                        verbose=False).fit(images[0])
  assert type(forest.estimator_).__name__ == "IsolationForest"
  assert len(forest.estimators_) == forest.config_.classical.iforest_trees
  assert len(forest.estimators_samples_) == len(forest.estimators_features_)
  assert forest.max_samples_ == min(N_TRAIN, 256) and forest.offset_ == forest.estimator_.offset_
  for name in ("support_vectors_", "coef", "_private_"):  # not the forest's, not fitted
    with pytest.raises(AttributeError, match=repr(name)):
      getattr(forest, name)
  unfitted, deep = _detector(), dsplit_jax.OneClassClassifier("test", verbose=False)
  for detector in (unfitted, deep):
    assert not hasattr(detector, "estimator_") and not hasattr(detector, "offset_")
  copy = pickle.loads(pickle.dumps(forest))  # unpickling looks attributes up before __init__
  np.testing.assert_array_equal(copy.decision_function(images[1]),
                                forest.decision_function(images[1]))
