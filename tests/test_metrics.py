"""AUC orientation and refusals."""

import numpy as np
import pytest

from dsplit_jax import metrics


def test_orientation():
  labels = np.array([0, 0, 0, 1, 1])
  scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
  assert metrics.auc(labels, scores) == 1.0  # Higher score = more abnormal.
  assert metrics.auc(labels, -scores) == 0.0
  assert metrics.auc(labels, np.zeros(5)) == 0.5
  assert isinstance(metrics.auc([0, 1], [0.0, 1.0]), float)
  assert metrics.auc([False, True, True], np.array([1, 2, 3], np.float32)) == 1.0


@pytest.mark.parametrize("labels, scores, match", [
    ([1, 1, 1], [0.1, 0.2, 0.3], "one class"),
    ([0, 0], [0.1, 0.2], "one class"),
    ([0, 1, 1], [0.1, 0.2], "same length"),
    ([0, 1], [[0.1], [0.2]], "same length"),
    ([0, 1, 1], [0.1, np.nan, 0.3], "not finite"),
    ([0, 1, 1], [0.1, np.inf, 0.3], "not finite"),
    ([0, 1, 2], [0.1, 0.2, 0.3], "0 \\(normal\\) or 1"),
])
def test_refusals(labels, scores, match):
  with pytest.raises(ValueError, match=match):
    metrics.auc(labels, scores)
