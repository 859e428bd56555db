"""Input preprocessing of Ruff et al. 2018 (Deep SVDD) for one-class benchmarks.

Their pipeline: pixels in [0, 1], global contrast normalisation (GCN) with the L1
norm per image, then min-max scaling with the smallest and largest GCN'd value of
the normal training class, so that the training data spans exactly [0, 1]. The
same two scalars are applied to the test set (which may leave [0, 1]). Ruff's code
hard-codes those scalars per class; here they are computed from the data.
"""

from __future__ import annotations

import numpy as np


def unit_interval(images) -> np.ndarray:
  """uint8 pixels as float32 in [0, 1]: x / 255, the scale every method starts from."""
  return np.asarray(images).astype(np.float32) / 255.0


def global_contrast_normalization(x, scale="l1"):
  """Per image: subtract its mean, divide by its mean absolute deviation (L1).

  `scale="l2"` divides by sqrt(sum of squares) / n_features, which is what Ruff's
  code computes (not the RMS). GCN is invariant to the input's scale, so uint8
  or [0, 1] inputs give the same result. Constant images (zero scale) map to 0
  instead of NaN.
  """
  if scale not in ("l1", "l2"):
    raise ValueError(f"scale must be 'l1' or 'l2', got {scale!r}")
  x = np.asarray(x)
  x = x.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
  axes = tuple(range(1, x.ndim))
  x = x - x.mean(axis=axes, keepdims=True)
  if scale == "l1":
    norm = np.abs(x).mean(axis=axes, keepdims=True)
  else:
    norm = np.sqrt((x ** 2).sum(axis=axes, keepdims=True)) / np.prod(x.shape[1:])
  return x / np.where(norm > 0, norm, 1).astype(x.dtype)


def minmax_bounds(x):
  """(lo, hi): the global min and max of `x`, as Python floats."""
  x = np.asarray(x)
  return float(x.min()), float(x.max())


def gcn_minmax(train, test):
  """GCN-L1 both sets, then scale both with the bounds of the GCN'd train set."""
  train = global_contrast_normalization(train, "l1")
  test = global_contrast_normalization(test, "l1")
  lo, hi = minmax_bounds(train)
  if not hi > lo:
    raise ValueError(f"min-max scaling undefined: GCN'd training data is constant ({lo})")
  span = np.asarray(hi - lo, train.dtype)
  return (train - lo) / span, (test - lo) / span
