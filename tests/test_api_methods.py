"""Every method behind the detector API: fit, save, load, and the same scores after.

The network methods train the `test` preset's tiny networks for a few steps on tiny
random images (no dataset needed); the classical ones are also checked on MNIST.
"""

import os

import numpy as np
import pytest
from sklearn import ensemble
from sklearn import preprocessing

import dsplit_jax
from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import methods
from dsplit_jax import metrics
from dsplit_jax import paper

skops_io = pytest.importorskip("skops.io", reason="skops saves the classical estimators")


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  return (rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8),
          rng.integers(0, 256, (10, 28, 28, 1), dtype=np.uint8))


def _fitted_attributes(clf) -> dict:
  """The public fitted attributes (`name_`) and PyOD's `_mu`, `_sigma`."""
  return {name: value for name, value in vars(clf).items()
          if name in ("_mu", "_sigma") or (name.endswith("_") and not name.startswith("_"))}


@pytest.mark.parametrize("method", methods.NAMES)
def test_every_method_fits_saves_loads_and_scores_the_same(method, images, tmp_path):
  clf = dsplit_jax.OneClassClassifier("test", method=method, verbose=False).fit(images[0])
  scores = clf.decision_function(images[1])
  assert scores.shape == (10,) and np.all(np.isfinite(scores))
  assert len(np.unique(clf.decision_scores_)) > 1  # not a constant score
  clf.save(str(tmp_path / "det"))
  loaded = dsplit_jax.OneClassClassifier.load(str(tmp_path / "det"))
  assert loaded.config_.method == method and loaded.image_shape == (28, 28, 1)
  np.testing.assert_array_equal(loaded.decision_function(images[1]), scores)
  np.testing.assert_array_equal(loaded.decision_scores_, clf.decision_scores_)
  assert loaded.threshold_ == clf.threshold_
  np.testing.assert_array_equal(loaded.predict(images[1]), clf.predict(images[1]))
  # Every fitted attribute a user reads comes back (split_warning_, plateau_ratio_, ...).
  fitted, back = _fitted_attributes(clf), _fitted_attributes(loaded)
  assert back.keys() == fitted.keys()
  for name, value in fitted.items():
    if name == "config_":
      assert back[name].to_dict() == value.to_dict()
    elif isinstance(value, np.ndarray):
      np.testing.assert_array_equal(back[name], value, err_msg=name)
    else:
      assert back[name] == value, name
  if methods.get(method).needs_split:
    assert isinstance(clf.plateau_ratio_, float)  # set by fit, so the check above bites
  classical = methods.get(method).scorer == "classical"
  assert os.path.exists(tmp_path / "det" / "model.skops") == classical


@pytest.mark.parametrize("preprocessing_", ["none", "gcn_minmax"])
def test_classical_preprocessing_is_kept_for_new_images(preprocessing_, images, tmp_path):
  """With GCN + min-max the bounds of the training images scale new images too: the
  detector's scores equal the benchmarks' path (`classical.run` on `gcn_minmax`)."""
  from dsplit_jax.baselines import classical
  config = configs.get_preset("test")
  config.classical.preprocessing = preprocessing_
  # Every image fits the model (no held-out fifth), as in the benchmarks' path.
  clf = dsplit_jax.OneClassClassifier(config=config, method="ocsvm", verbose=False,
                                      threshold_holdout=0.0)
  clf.fit(images[0])
  train, test = (data.preprocessing.unit_interval(x) for x in images)
  if preprocessing_ == "gcn_minmax":
    train, test = data.preprocessing.gcn_minmax(train, test)
  want = classical.run("ocsvm", train, test, config.classical)
  np.testing.assert_allclose(clf.decision_function(images[1]), want, rtol=1e-6)
  clf.save(str(tmp_path / "det"))
  np.testing.assert_allclose(
      dsplit_jax.OneClassClassifier.load(str(tmp_path / "det")).decision_function(images[1]),
      want, rtol=1e-6)


def test_a_classical_detector_loads_only_what_it_saved(images, tmp_path):
  clf = dsplit_jax.OneClassClassifier("test", method="ocsvm", verbose=False).fit(images[0])
  clf.save(str(tmp_path / "det"))
  model = tmp_path / "det" / "model.skops"
  # A function is no scikit-learn type: skops refuses to build it.
  skops_io.dump(preprocessing.FunctionTransformer(func=os.getcwd), str(model))
  with pytest.raises(ValueError, match=f"{model}: cannot be read"):
    dsplit_jax.OneClassClassifier.load(str(tmp_path / "det"))
  skops_io.dump(ensemble.IsolationForest(n_estimators=2).fit(np.zeros((4, 2))), str(model))
  with pytest.raises(ValueError, match="holds a IsolationForest, but ocsvm uses a OneClassSVM"):
    dsplit_jax.OneClassClassifier.load(str(tmp_path / "det"))
  os.remove(model)
  with pytest.raises(FileNotFoundError, match="model.skops: no saved ocsvm estimator"):
    dsplit_jax.OneClassClassifier.load(str(tmp_path / "det"))


@pytest.mark.parametrize("method", methods.names(scorer="classical"))
def test_classical_methods_separate_mnist_ones_from_other_digits(method, mnist_dir):
  x, y = data.load("mnist", "train", str(mnist_dir))
  xt, yt = data.load("mnist", "test", str(mnist_dir))
  clf = dsplit_jax.OneClassClassifier("test", method=method, verbose=False).fit(x[y == 1][:300])
  auc = metrics.auc((yt[:1000] != 1).astype(int), clf.decision_function(xt[:1000]))
  # Table 1's AUC for digit 1 on full data (OCSVM 99.2, HOG 72.7, IF 99.4); 300 training
  # images and 1,000 test images leave a margin of 15 points.
  assert 100 * auc > paper.lookup("mnist", 1, method)[0] - 15


def test_folder_cli_fits_a_classical_method_quietly_and_scores_with_it(images, tmp_path):
  import csv
  import subprocess
  import sys
  from PIL import Image
  good, new = tmp_path / "good", tmp_path / "new"
  good.mkdir(), new.mkdir()
  for i, im in enumerate(images[0]):
    Image.fromarray(im[..., 0]).save(good / f"{i}.png")
  for i, im in enumerate(images[1][:5]):
    Image.fromarray(im[..., 0]).save(new / f"n{i}.png")

  def fit(*extra):
    return subprocess.run(
        [sys.executable, "-m", "dsplit_jax.main", "--preset=test", "--dataset=folder",
         "--method=iforest", f"--data_dir={good}", f"--score_dir={new}",
         f"--workdir={tmp_path / 'w'}", f"--scores_csv={tmp_path / 's.csv'}",
         "--set=image_size=28", *extra], capture_output=True, text=True, timeout=300)
  loud, quiet = fit(), fit("--quiet")
  assert loud.returncode == 0 and quiet.returncode == 0, quiet.stderr[-2000:]
  assert "[iforest] fit on 32 images" in loud.stdout  # a fifth held out for the threshold
  assert "threshold placed on the 8 held-out" in loud.stdout
  assert "[iforest]" not in quiet.stdout and "5 scores" in quiet.stdout
  fitted = list(csv.DictReader(open(tmp_path / "s.csv")))
  out = subprocess.run(
      [sys.executable, "-m", "dsplit_jax.main", f"--detector={tmp_path / 'w' / 'detector'}",
       f"--score_dir={new}", f"--scores_csv={tmp_path / 'again.csv'}"],
      capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert list(csv.DictReader(open(tmp_path / "again.csv"))) == fitted
