"""Evaluation metric: area under the ROC curve, with the project's orientation.

Labels: 1 = abnormal, 0 = normal; scores: higher = more abnormal. The checks are
strict because a silently wrong AUC (a flipped sign, a NaN score, a test set with
one class) is the easiest way to publish a wrong table.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as sk_metrics


def auc(labels, scores):
  """ROC AUC as a Python float; raises ValueError instead of guessing."""
  labels = np.asarray(labels)
  scores = np.asarray(scores, dtype=np.float64)
  if labels.ndim != 1 or labels.shape != scores.shape:
    raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be "
                     "1-D and of the same length")
  bad = ~np.isfinite(scores)
  if bad.any():
    raise ValueError(f"{int(bad.sum())} of {scores.size} scores are not finite "
                     "(NaN/inf): the model probably diverged")
  present = set(np.unique(labels).tolist())
  if not present <= {0, 1}:
    raise ValueError(f"labels must be 0 (normal) or 1 (abnormal), got {sorted(present)}")
  if len(present) < 2:
    raise ValueError(f"only one class present in labels ({present.pop()}): "
                     "AUC needs normal and abnormal examples")
  return float(sk_metrics.roc_auc_score(labels, scores))
