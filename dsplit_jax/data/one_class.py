"""One-class tasks: train on one class of a dataset, test on all of its test set."""

from __future__ import annotations

import dataclasses

import numpy as np

from dsplit_jax.data import preprocessing as prep
from dsplit_jax.data import sources

PREPROCESSING = ("none", "gcn_minmax")


@dataclasses.dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous.
class OneClassTask:
  """A normal class's training images and the labelled full test split.

  test_labels: 1 = abnormal (any other class), 0 = normal, the orientation of
  `dsplit_jax.metrics.auc`. test_classes keeps the original labels for per-class
  breakdowns.
  """
  dataset: str
  normal_class: int
  train_images: np.ndarray  # float32 [n, H, W, C], normal class of the train split
  test_images: np.ndarray  # float32 [M, H, W, C], whole test split
  test_labels: np.ndarray  # int32 [M]
  test_classes: np.ndarray  # int64 [M]
  class_names: list[str]


def one_class_task(name, normal_class, data_dir=None, preprocessing="none",
                   image_size=None):
  """Builds the task; `preprocessing` is "none" (x / 255) or "gcn_minmax" (Ruff)."""
  if preprocessing not in PREPROCESSING:
    raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {preprocessing!r}")
  names = sources.class_names(name, data_dir)
  if not 0 <= normal_class < len(names):
    raise ValueError(f"normal_class {normal_class} out of range for {name} "
                     f"({len(names)} classes)")
  train_x, train_y = sources.load(name, "train", data_dir, image_size)
  test_x, test_y = sources.load(name, "test", data_dir, image_size)
  train_x = train_x[train_y == normal_class]
  if len(train_x) == 0:
    raise ValueError(f"{name}: no training images of class {normal_class} "
                     f"({names[normal_class]})")
  train_x, test_x = prep.unit_interval(train_x), prep.unit_interval(test_x)
  if preprocessing == "gcn_minmax":
    train_x, test_x = prep.gcn_minmax(train_x, test_x)
  return OneClassTask(
      dataset=name,
      normal_class=int(normal_class),
      train_images=train_x,
      test_images=test_x,
      test_labels=(test_y != normal_class).astype(np.int32),
      test_classes=test_y.astype(np.int64),
      class_names=names,
  )
