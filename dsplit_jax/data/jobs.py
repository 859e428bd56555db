"""Jobs: (normal class, seed) pairs of one dataset over one shared pool of images.

All jobs of a method train in one program (`pipeline`: one after another on CPU, vmapped
on accelerators, see `job_map`); each sees the pool through its own padded row of
indices (`train_idx`, `train_count` valid entries), so stacking jobs never copies an
image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dsplit_jax.data import datasets
from dsplit_jax.data import preprocessing
from dsplit_jax.data import sources
from dsplit_jax.data.errors import DataError


@dataclasses.dataclass
class Jobs:
  """Jobs (class, seed) over one shared image pool of their training images."""
  dataset: str
  classes: list[int]
  seeds: list[int]
  pool: np.ndarray                 # float32 [P, H, W, C] in [0, 1]
  pool_split_index: np.ndarray     # [P] position of each pool image in the train split
  train_idx: np.ndarray            # int32 [J, Nmax] pool indices of each job's images
  train_count: np.ndarray          # int32 [J]
  test_images: np.ndarray | None   # float32 [M, H, W, C], the whole test split
  test_classes: np.ndarray | None  # [M] original labels

  @classmethod
  def of_images(cls, images: np.ndarray, seed: int) -> "Jobs":
    """One job over `images` (float32 in [0, 1]), all normal, without a test split."""
    n = len(images)
    return cls("custom", [0], [int(seed)], images, np.arange(n),
               np.arange(n, dtype=np.int32)[None], np.array([n], np.int32), None, None)

  @property
  def keys(self):
    """One PRNG key per job from its (seed, class) only (`job_keys`)."""
    return job_keys(self.seeds, self.classes)

  @property
  def names(self) -> list[str]:
    """`c<class>s<seed>` per job: the loss curves' and the records' job names."""
    return [f"c{c}s{s}" for c, s in zip(self.classes, self.seeds)]

  def test_labels(self, j: int) -> np.ndarray:
    """1 = abnormal (any other class) for job j, the orientation of `metrics.auc`."""
    return (self.test_classes != self.classes[j]).astype(np.int32)

  def subset(self, rows) -> "Jobs":
    return dataclasses.replace(self, classes=[self.classes[r] for r in rows],
                               seeds=[self.seeds[r] for r in rows],
                               train_idx=self.train_idx[rows], train_count=self.train_count[rows])


def job_keys(seeds, classes) -> np.ndarray:
  """One key per job from (seed, class) only, so a job's randomness never depends on
  which other jobs run beside it."""
  # JAX on first use: reading and laying out the data (and the download command) need
  # none.
  import jax  # pylint: disable=g-import-not-at-top
  return np.stack([np.asarray(jax.random.fold_in(jax.random.PRNGKey(s), c))
                   for s, c in zip(seeds, classes)])


def load_jobs(config) -> Jobs:
  """Reads the dataset once and lays out every (class, seed) job of `config` over it."""
  data_dir = config.data_dir or None
  user_folder = datasets.get(config.dataset).user_folder
  size = config.image_size if user_folder else None
  images, labels = sources.load(config.dataset, "train", data_dir, image_size=size)
  classes = sorted({int(c) for c in config.normal_classes})
  rows = [np.flatnonzero(labels == c) for c in classes]
  for c, r in zip(classes, rows):
    if len(r) < 4:
      raise DataError(f"normal class {c} of {config.dataset} has {len(r)} training images; "
                      "at least 4 are needed")
  pool_rows = np.concatenate(rows)
  pool = preprocessing.unit_interval(images[pool_rows])
  starts = np.cumsum([0] + [len(r) for r in rows])
  job_classes = [c for c in classes for _ in config.seeds]
  job_seeds = [int(s) for _ in classes for s in config.seeds]
  counts = np.array([len(rows[classes.index(c)]) for c in job_classes], np.int32)
  idx = np.zeros((len(job_classes), counts.max()), np.int32)
  for j, c in enumerate(job_classes):
    k = classes.index(c)
    idx[j, :counts[j]] = np.arange(starts[k], starts[k + 1])
  try:
    test_images, test_classes = sources.load(config.dataset, "test", data_dir, image_size=size)
    test_images = preprocessing.unit_interval(test_images)
  except DataError:
    if not user_folder:
      raise
    test_images = test_classes = None  # A flat folder of normal images has no test split.
  return Jobs(config.dataset, job_classes, job_seeds, pool, pool_rows, idx, counts,
              test_images, test_classes)


def describe_sources(config) -> list[dict]:
  """The files a run of `config` read (path, bytes, mtime, sha256), for its records."""
  data_dir = config.data_dir or None
  return sources.describe_files(list(dict.fromkeys(
      f for split in ("train", "test")
      for f in sources.source_files(config.dataset, split, data_dir))))
