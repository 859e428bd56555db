"""A user's own images beyond the benchmarks: folders of real photographs (scikit-image's
bundled samples) cut to squares, any side from 32 to 128 px and any channel count; on
aligned objects the splitting autoencoder either beats the mean image or the fit says
in one line why its split is unreliable and what to use instead."""

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

import dsplit_jax
from dsplit_jax import api
from dsplit_jax import configs
from dsplit_jax import data
from experiments.aligned_photos import OTHERS, photo_crops


def write_folder(folder, images):
  folder.mkdir(parents=True)
  for i, im in enumerate(images):
    Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(folder / f"{i:03d}.png")
  return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  """64x64 colour PNGs: the astronaut's face (normal), and other photographs."""
  rng = np.random.default_rng(0)
  root = tmp_path_factory.mktemp("photos")
  good = write_folder(root / "good", photo_crops("astronaut", 40, 64, rng))
  test_good = write_folder(root / "test_good", photo_crops("astronaut", 12, 64, rng))
  bad = write_folder(root / "bad", np.concatenate([
      photo_crops(name, 3, 64, rng, at=(20, 20))
      for name in OTHERS]))
  return good, test_good, bad


def _auc(clf, test_good, bad):
  scores = np.concatenate([clf.score(test_good), clf.score(bad)])
  return roc_auc_score([0] * len(test_good) + [1] * len(bad), scores)


def test_aligned_photographs_fit_or_say_why_the_split_is_unreliable(folders):
  """The folder start, then either a trained autoencoder or one line saying why the
  split is unreliable. Restarts escape the plateau of varied images (their mean image a
  weak reconstruction); on aligned objects falling short of the mean image is not that
  plateau, a new start costs a fit and changes nothing, so none is made."""
  good, test_good, bad = (data.load_image_files(f, 64, channels=3)[0] for f in folders)
  assert good.shape == (40, 64, 64, 3)
  config = configs.for_folder(configs.get_preset("test"))
  assert config.ae.output_bias == "mean_logit"  # the folder start
  config.method, config.ae.restarts = "ssim", 2
  lines = []
  clf = dsplit_jax.OneClassClassifier(config=config, threshold_holdout=0.0).fit(
      good, progress=lines.append)
  ratio = clf.plateau_ratio_
  if ratio <= clf.config_.ae.plateau_ratio:
    assert clf.split_warning_ is None
  else:  # the test preset's 20 steps do not beat the mean image: it must say so
    said = [line for line in lines if line == clf.split_warning_]
    assert len(said) == 1 and "\n" not in said[0], lines
    assert "method='iforest'" in said[0] and "compare" in said[0]
    assert "never beat the mean image" in said[0]
    assert not any("training them again" in line for line in lines), lines
    assert sum(line.startswith("[autoencoder] not restarted") for line in lines) == 1
  # What the line recommends works on these images.
  iforest = dsplit_jax.OneClassClassifier("test", method="iforest", verbose=False).fit(good)
  assert iforest.split_warning_ is None and _auc(iforest, test_good, bad) > 0.9


def test_split_warning_tells_noise_from_a_coarse_reconstruction():
  config = configs.get_preset("test")
  config.method = "dsplit"
  assert api.split_warning(config, 0.5, 0.01, 0.02, 0.1) is None
  noise = api.split_warning(config, 15.0, 0.09, 0.006, 0.1)  # 94% of the way to flat
  assert noise.startswith("[dsplit] the split is noise") and "method='iforest'" in noise
  coarse = api.split_warning(config, 3.0, 0.03, 0.01, 0.1)
  assert coarse.startswith("[dsplit] the split is unreliable") and "10% of a flat" in coarse
  varied = api.split_warning(config, 1.5, 0.3, 0.2, 0.5)  # the mean image is weak here
  assert "unreliable" in varied and "aligned" not in varied
  config.method = "ssim"
  assert api.split_warning(config, 3.0, 0.03, 0.01, 0.1).startswith(
      "[ssim] the SSIM score is unreliable")


@pytest.mark.parametrize("size,channels", [(32, 1), (64, 4), (128, 3)])
def test_square_images_of_any_side_and_channel_count(size, channels):
  rng = np.random.default_rng(size)
  photo = photo_crops("camera" if channels == 1 else "astronaut", 20, size, rng)
  good = np.concatenate([photo] * channels, axis=-1)[..., :channels]
  clf = dsplit_jax.OneClassClassifier("test", method="iforest", verbose=False).fit(good)
  assert clf.image_shape_ == (size, size, channels) and clf.score(good).shape == (20,)
  with pytest.raises(ValueError, match="the detector was fit on"):
    clf.score(good[:, :, :, :1] if channels > 1 else np.repeat(good, 3, axis=-1))
