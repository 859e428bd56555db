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

import ml_collections
import numpy as np
import skimage.color
import skimage.feature
from sklearn import ensemble, svm

CHANNEL_MODES = ("grey", "max", "concat")


def _flat(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x)
  return x.reshape(len(x), -1)


def ocsvm_scores(train, test, *, nu: float = 0.15, gamma="auto",
                 cache_mb: float = 1000.0) -> np.ndarray:
  """RBF one-class SVM on flattened inputs; score = -decision_function."""
  model = svm.OneClassSVM(kernel="rbf", nu=nu, gamma=gamma,
                          cache_size=cache_mb)
  model.fit(_flat(train))
  return -model.decision_function(_flat(test))


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
  model = ensemble.IsolationForest(n_estimators=n_estimators,
                                   max_samples=max_samples, random_state=seed)
  model.fit(_flat(train))
  return -model.score_samples(_flat(test))


def run(method: str, train: np.ndarray, test: np.ndarray,
        cfg: ml_collections.ConfigDict, seed: int = 0) -> np.ndarray:
  """Scores of `method` (trained on `train`) on `test`, higher = more abnormal.

  The images ([N, H, W, C]) come preprocessed as `cfg.preprocessing` says;
  OCSVM and HOG are deterministic, so `seed` only reaches the Isolation Forest.
  """
  if method == "ocsvm":
    return ocsvm_scores(train, test, nu=cfg.ocsvm_nu, gamma=cfg.ocsvm_gamma,
                        cache_mb=cfg.ocsvm_cache_mb)
  if method == "hog_ocsvm":
    ppc, cpb = cfg.hog_pixels_per_cell, cfg.hog_cells_per_block
    return hog_ocsvm_scores(
        train, test, nu=cfg.ocsvm_nu, gamma=cfg.ocsvm_gamma,
        cache_mb=cfg.ocsvm_cache_mb, orientations=cfg.hog_orientations,
        pixels_per_cell=(ppc, ppc), cells_per_block=(cpb, cpb),
        block_norm=cfg.hog_block_norm, channel_mode=cfg.hog_channel_mode)
  if method == "iforest":
    return iforest_scores(train, test, n_estimators=cfg.iforest_trees,
                          max_samples=cfg.iforest_max_samples, seed=seed)
  raise ValueError(f"not a classical method: {method!r}")
