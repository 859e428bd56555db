"""Evaluation protocols: which model is scored, on which test images, for the reported AUC.

  full_test_last     the final model on the whole test split (the paper's text; default)
  authors_selection  checkpoints at step 0 and every `eval.every` steps (the final one
                     too) score the test split; the first `eval.selection_fraction` of the
                     test normals and of the test anomalies, in file order, pick the
                     checkpoint with the best AUC (the earliest on a tie); the AUC on the
                     other images is reported. This is how the authors' public program
                     reports its numbers: SELECTION WITH TEST LABELS, never the default.

The facts of the authors' program and where we differ from it are in
BUILD_NOTES.md, "Evaluation protocols". Needs no JAX: records and tables use it too.
"""

from __future__ import annotations

import numpy as np

from dsplit_jax import metrics

PROTOCOLS = ("full_test_last", "authors_selection")
DEFAULT = "full_test_last"
# Shown beside every number measured under a protocol (tables, figures, logs).
LABELS = {"full_test_last": "final model, full test split",
          "authors_selection": "checkpoint selected with test labels (authors' protocol)"}


def needs_checkpoint_scores(eval_config) -> bool:
  """Whether a run scores the test split at its checkpoints (the curve of AUCs)."""
  return eval_config.protocol == "authors_selection" or bool(eval_config.curves)


def eval_steps(every: int, total_steps: int) -> list[int]:
  """The steps whose model is scored: 0, every, 2 every, ..., and the last step."""
  return sorted(set(range(0, total_steps + 1, every)) | {total_steps})


def selection_mask(labels, fraction: float) -> np.ndarray:
  """True for the selection images: the first int(fraction * n) normals and the first
  int(fraction * m) anomalies of the test split, each in file order (labels: 1 =
  anomaly, 0 = normal)."""
  labels = np.asarray(labels)
  mask = np.zeros(len(labels), bool)
  for value in (0, 1):
    where = np.flatnonzero(labels == value)
    mask[where[:int(fraction * len(where))]] = True
  return mask


def select(labels, step_scores: dict[int, np.ndarray], fraction: float) -> dict:
  """The authors' selection over `step_scores` (step -> scores of the whole test split,
  higher = more abnormal): the step with the best AUC on the selection images, the
  earliest among equals (their `>`), and the AUC of that step on the other images."""
  if not step_scores:
    raise ValueError("no checkpoint scores to select from")
  labels = np.asarray(labels)
  chosen = selection_mask(labels, fraction)
  if len(set(labels[chosen])) < 2 or len(set(labels[~chosen])) < 2:
    raise ValueError(f"selection_fraction={fraction} leaves a part of the test split "
                     "without normals or anomalies")
  best_step, best = None, -np.inf
  curve = []
  for step in sorted(step_scores):
    scores = np.asarray(step_scores[step])
    sel = metrics.auc(labels[chosen], scores[chosen])
    held_out = metrics.auc(labels[~chosen], scores[~chosen])
    curve.append({"step": int(step), "auc": metrics.auc(labels, scores),
                  "selection_auc": sel, "held_out_auc": held_out})
    if sel > best:
      best_step, best = step, sel
  reported = next(p["held_out_auc"] for p in curve if p["step"] == best_step)
  return {"selected_step": int(best_step), "selection_auc": float(best),
          "auc": float(reported), "curve": curve}


def evaluate(eval_config, labels, final_scores, final_step: int,
             step_scores: dict[int, np.ndarray] | None = None) -> dict:
  """The reported AUC of one job under `eval_config.protocol`, with what a record keeps.

  `step_scores` holds the test scores of the evaluated checkpoints (none for methods
  without training checkpoints: the final scores are then the one candidate)."""
  candidates = dict(step_scores or {})
  candidates[int(final_step)] = np.asarray(final_scores)
  out = {"protocol": eval_config.protocol}
  if eval_config.protocol == "full_test_last":
    out["auc"] = metrics.auc(labels, final_scores)
    if len(candidates) > 1:
      out["auc_curve"] = [[int(s), round(metrics.auc(labels, candidates[s]), 6)]
                          for s in sorted(candidates)]
    return out
  if eval_config.protocol != "authors_selection":
    raise ValueError(f"unknown eval.protocol {eval_config.protocol!r}")
  chosen = select(labels, candidates, eval_config.selection_fraction)
  out.update(auc=chosen["auc"], selected_step=chosen["selected_step"],
             selection_auc=round(chosen["selection_auc"], 6),
             auc_full_test_last=metrics.auc(labels, final_scores),
             auc_curve=[[p["step"], round(p["auc"], 6), round(p["selection_auc"], 6),
                         round(p["held_out_auc"], 6)] for p in chosen["curve"]])
  return out
