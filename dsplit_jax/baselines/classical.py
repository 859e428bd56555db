"""Classical one-class baselines of Table 1: OCSVM, HOG + OCSVM, Isolation Forest.

Thin wrappers around scikit-learn and scikit-image. Every score is oriented
"higher = more abnormal", the convention of `dsplit_jax.metrics.auc`.

The defaults are the setting that reproduces the paper's columns (measured,
see notes/baselines.md): pixels scaled to [0, 1] without Ruff's GCN + min-max,
OCSVM with nu=0.15 and gamma = 1 / #features, HOG with L1 block normalisation
(scikit-image's default before 0.15; L2-Hys is the default now), Isolation
Forest with 100 trees and scikit-learn's sub-sample size 256.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections
import numpy as np
import skimage.color
import skimage.feature
from sklearn import ensemble, svm

CHANNEL_MODES = ("grey", "max", "concat")


def _flat(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x)
  return x.reshape(len(x), -1)


def _ocsvm(nu, gamma, cache_mb) -> svm.OneClassSVM:
  return svm.OneClassSVM(kernel="rbf", nu=nu, gamma=gamma, cache_size=cache_mb)


def _iforest(n_estimators, max_samples, seed) -> ensemble.IsolationForest:
  return ensemble.IsolationForest(n_estimators=n_estimators, max_samples=max_samples,
                                  random_state=seed)


def _anomaly_scores(estimator, features) -> np.ndarray:
  """Higher = more abnormal: minus the OCSVM's decision function, minus the Isolation
  Forest's path-length score (`score_samples`)."""
  if isinstance(estimator, svm.OneClassSVM):
    return -estimator.decision_function(features)
  return -estimator.score_samples(features)


def ocsvm_scores(train, test, *, nu: float = 0.15, gamma="auto",
                 cache_mb: float = 1000.0) -> np.ndarray:
  """RBF one-class SVM on flattened inputs; score = -decision_function."""
  model = _ocsvm(nu, gamma, cache_mb).fit(_flat(train))
  return _anomaly_scores(model, _flat(test))


def hog_features(images, *, orientations: int = 9, pixels_per_cell=(8, 8),
                 cells_per_block=(3, 3), block_norm: str = "L1",
                 channel_mode: str = "grey") -> np.ndarray:
  """HOG descriptor per image, [N, H, W, C] -> [N, D] float32.

  With 8x8 cells and 3x3-cell blocks a 28x28 image holds 3x3 cells and one
  block (D = 81), a 32x32 image 4x4 cells and 2x2 blocks (D = 324).

  `channel_mode` only matters for colour images (C > 1), where the paper does
  not say what was done:
    "grey":   HOG of `skimage.color.rgb2gray(image)` (default). scikit-image's
              `hog` took only grey images until `multichannel` appeared
              (0.14, 2018), and the L1 block norm that matches the paper
              points to a scikit-image of that time.
    "max":    scikit-image's multichannel HOG (`channel_axis=-1`): per pixel,
              the gradient of the channel with the largest magnitude
              (Dalal & Triggs); same D as grey.
    "concat": one HOG per channel, concatenated (C times D).
  """
  if channel_mode not in CHANNEL_MODES:
    raise ValueError(f"channel_mode must be one of {CHANNEL_MODES}, "
                     f"got {channel_mode!r}")
  images = np.asarray(images, dtype=np.float64)
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C], got {images.shape}")
  kw = dict(orientations=orientations,
            pixels_per_cell=tuple(pixels_per_cell),
            cells_per_block=tuple(cells_per_block),
            block_norm=block_norm, feature_vector=True)
  channels = images.shape[-1]

  def one(img):
    if channels == 1:
      return skimage.feature.hog(img[..., 0], **kw)
    if channel_mode == "grey":
      return skimage.feature.hog(skimage.color.rgb2gray(img), **kw)
    if channel_mode == "max":
      return skimage.feature.hog(img, channel_axis=-1, **kw)
    return np.concatenate(
        [skimage.feature.hog(img[..., k], **kw) for k in range(channels)])

  return np.stack([one(img) for img in images]).astype(np.float32)


def hog_ocsvm_scores(train, test, *, nu: float = 0.15, gamma="auto",
                     cache_mb: float = 1000.0, **hog_kwargs) -> np.ndarray:
  """OCSVM on HOG features; gamma="auto" is 1 / HOG length."""
  return ocsvm_scores(hog_features(train, **hog_kwargs),
                      hog_features(test, **hog_kwargs),
                      nu=nu, gamma=gamma, cache_mb=cache_mb)


def iforest_scores(train, test, *, n_estimators: int = 100,
                   max_samples="auto", seed: int = 0) -> np.ndarray:
  """Isolation Forest; score = -score_samples (the path-length anomaly score)."""
  model = _iforest(n_estimators, max_samples, seed).fit(_flat(train))
  return _anomaly_scores(model, _flat(test))


@dataclasses.dataclass
class Fitted:
  """A fitted classical detector: its scikit-learn estimator, and the HOG settings
  that turn images into its features (None: the flattened pixels)."""
  estimator: Any
  hog: dict | None = None

  def features(self, images) -> np.ndarray:
    return _flat(images) if self.hog is None else hog_features(images, **self.hog)

  def scores(self, images) -> np.ndarray:
    """Anomaly scores of [N, H, W, C] images, higher = more abnormal."""
    return _anomaly_scores(self.estimator, self.features(images))


def make(method: str, cfg: ml_collections.ConfigDict, seed: int = 0) -> Fitted:
  """`method`'s unfitted estimator and features, as `cfg` (`config.classical`) says.
  OCSVM and HOG are deterministic, so `seed` only reaches the Isolation Forest."""
  if method == "ocsvm":
    return Fitted(_ocsvm(cfg.ocsvm_nu, cfg.ocsvm_gamma, cfg.ocsvm_cache_mb))
  if method == "hog_ocsvm":
    ppc, cpb = cfg.hog_pixels_per_cell, cfg.hog_cells_per_block
    return Fitted(_ocsvm(cfg.ocsvm_nu, cfg.ocsvm_gamma, cfg.ocsvm_cache_mb),
                  hog=dict(orientations=cfg.hog_orientations, pixels_per_cell=(ppc, ppc),
                           cells_per_block=(cpb, cpb), block_norm=cfg.hog_block_norm,
                           channel_mode=cfg.hog_channel_mode))
  if method == "iforest":
    return Fitted(_iforest(cfg.iforest_trees, cfg.iforest_max_samples, seed))
  raise ValueError(f"not a classical method: {method!r}")


def fit(method: str, train: np.ndarray, cfg: ml_collections.ConfigDict,
        seed: int = 0) -> Fitted:
  """`method` (`make`) trained on `train` ([N, H, W, C], preprocessed as
  `cfg.preprocessing` says)."""
  model = make(method, cfg, seed)
  model.estimator.fit(model.features(train))
  return model


def run(method: str, train: np.ndarray, test: np.ndarray,
        cfg: ml_collections.ConfigDict, seed: int = 0) -> np.ndarray:
  """Scores of `method` (trained on `train`) on `test`, higher = more abnormal."""
  return fit(method, train, cfg, seed).scores(test)
