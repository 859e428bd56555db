"""What each dataset is: the one table the data layer, the download, the planner and the
paper read.

A dataset's folder names, Debian folders, tensorflow-datasets name, files with their
SHA-256, download hosts, images per class of each split, class names, image shape,
reader and how-to-get text are one `Dataset`; code asks `get(name)` for them instead
of keeping its own dict keyed by dataset names. A new dataset is one more entry
(`register`), in the style of `methods.METHODS`.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, Callable

from dsplit_jax.data import cifar
from dsplit_jax.data import idx

SPLITS = ("train", "test")


class File(typing.NamedTuple):
  """One file to fetch: its original name and the SHA-256 that makes it acceptable."""
  name: str
  sha256: str
  hashed: str  # "content": of the gunzipped bytes (IDX); "file": of the file as served.


@dataclasses.dataclass(frozen=True)
class Reader:
  """How a dataset's files are found in a folder and read.

  find: `directory -> handle`, or None where the folder holds none of its files; a
    folder with any one of them claims the dataset (sources.py says why).
  load: `(handle, split) -> (images uint8 [N, H, W, C], labels int64 [N])`.
  files: `(handle, split) -> [path]`, what `load` reads (for the records).
  """
  name: str
  find: Callable[[str], Any]
  load: Callable[[Any, str], tuple]
  files: Callable[[Any, str], list]


def _idx_find(directory):
  return directory if idx.has_any(directory) else None


def _idx_files(directory, split):
  return [idx.find_file(directory, stem) for stem in idx.SPLIT_FILES[split]]


def _cifar_load(hit, split):
  return cifar.load_split(*hit, split)


def _cifar_files(hit, split):
  del split  # One archive or folder holds both splits.
  return [hit[1]]


IDX = Reader("idx", find=_idx_find, load=idx.load_split, files=_idx_files)
CIFAR = Reader("cifar10", find=cifar.find, load=_cifar_load, files=_cifar_files)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One dataset.

  name: the command line's and the records' name.
  reader: how its files are found and read; None for `folder`, which is whatever
    folder `data_dir` names (folder.py's layouts: no lookup, its own class folders,
    images squashed to `image_size`).
  class_names: one per label; None: the folder's class folders.
  image_shape: [H, W, C] of its images; None: set by the config's `image_size`.
  class_counts: images per class of each split ("train", "test"). A copy that differs
    is another dataset or a damaged one (Fashion-MNIST's files have MNIST's names,
    sizes and format): refused, because a record would claim a result on a benchmark
    that was never read. A split without an entry is not checked.
  dir_names: folder names accepted under data_dir and $DSPLIT_DATA_DIR, in order.
  debian_dirs: where a Debian package installs it.
  tfds_name: its tensorflow-datasets name (the last resort); None: not in tfds.
  files: the original files a download fetches, each with its SHA-256.
  hosts: base URLs serving `files`, tried in order (the hash decides).
  how_to_get: the offline routes, for the not-found message.
  in_paper: the paper's Table 1 reports it.
  """
  name: str
  reader: Reader | None
  class_names: tuple[str, ...] | None = None
  image_shape: tuple[int, int, int] | None = None
  class_counts: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
  dir_names: tuple[str, ...] = ()
  debian_dirs: tuple[str, ...] = ()
  tfds_name: str | None = None
  files: tuple[File, ...] = ()
  hosts: tuple[str, ...] = ()
  how_to_get: str = ""
  in_paper: bool = False

  def __post_init__(self):
    for split, counts in self.class_counts.items():
      if split not in SPLITS:
        raise ValueError(f"{self.name}: class_counts of unknown split {split!r}; "
                         f"use {', '.join(SPLITS)}")
      if self.class_names is not None and len(counts) != len(self.class_names):
        raise ValueError(f"{self.name}: {len(counts)} {split} class counts for "
                         f"{len(self.class_names)} class names")
    if bool(self.files) != bool(self.hosts):
      raise ValueError(f"{self.name}: files to download need hosts, and hosts files")
    if (self.reader is None) != (self.class_names is None):
      raise ValueError(f"{self.name}: a dataset with a reader has class names; only the "
                       "folder dataset (no reader) takes its class folders'")

  @property
  def downloadable(self) -> bool:
    """Whether `python -m dsplit_jax.data.download` can fetch it."""
    return bool(self.files)

  @property
  def user_folder(self) -> bool:
    """Whether it is the folder `data_dir` names (`folder`), not a benchmark."""
    return self.reader is None


# Images per class of MNIST's splits (the other benchmarks are balanced).
_MNIST_TRAIN = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
_MNIST_TEST = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


def _idx_files_of(*sha256):
  """The four IDX files, hashed uncompressed: mirrors re-compress them (a re-gzipped
  copy has other bytes, the same images)."""
  names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
           "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
  return tuple(File(n, h, "content") for n, h in zip(names, sha256))


# In command-line order. Hashes: SHA-256 of the uncompressed IDX files (checked against
# the offline data's README and Debian's dataset-fashion-mnist) and of the CIFAR-10
# archive (the value published with tensorflow-datasets and torchvision; its MD5 is the
# one on the Toronto page). Hosts: the authors' first, then copies kept by other
# projects. Debian packages only Fashion-MNIST (no mnist or cifar package exists). The
# offline routes paste into any shell: an argument a shell could expand (zsh globs
# [...]) is in double quotes, which sh, zsh, fish, cmd and PowerShell all read alike.
DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset(
        "mnist", IDX, class_names=tuple(str(i) for i in range(10)),
        image_shape=(28, 28, 1),
        class_counts={"train": _MNIST_TRAIN, "test": _MNIST_TEST},
        dir_names=("mnist",), tfds_name="mnist",
        files=_idx_files_of(
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        hosts=("http://yann.lecun.com/exdb/mnist/",
               "https://ossci-datasets.s3.amazonaws.com/mnist/",
               "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        how_to_get="pass --data_dir (or set DSPLIT_DATA_DIR to a folder with mnist/) "
                   "holding the four IDX files",
        in_paper=True),
    Dataset(
        "fashion_mnist", IDX,
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                     "Shirt", "Sneaker", "Bag", "Ankle boot"),
        image_shape=(28, 28, 1),
        class_counts={"train": (6000,) * 10, "test": (1000,) * 10},
        dir_names=("fashion_mnist", "fashion-mnist"),
        debian_dirs=("/usr/share/datasets/fashion-mnist",), tfds_name="fashion_mnist",
        files=_idx_files_of(
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        hosts=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
               "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/"
               "master/data/fashion/"),
        how_to_get="run: apt-get install dataset-fashion-mnist; or pass --data_dir (or "
                   "set DSPLIT_DATA_DIR to a folder with fashion_mnist/) holding the four "
                   "IDX files",
        in_paper=True),
    Dataset(
        "cifar10", CIFAR,
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                     "horse", "ship", "truck"),
        image_shape=(32, 32, 3),
        class_counts={"train": (5000,) * 10, "test": (1000,) * 10},
        dir_names=("cifar10", "cifar-10"), tfds_name="cifar10",
        files=(File(cifar.BIN_ARCHIVE,
                    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                    "file"),),
        hosts=("https://www.cs.toronto.edu/~kriz/",
               "https://storage.googleapis.com/s4tf-hosted-binaries/datasets/CIFAR10/"),
        how_to_get="pass --data_dir (or set DSPLIT_DATA_DIR to a folder with cifar10/) "
                   "holding cifar-10-binary.tar.gz, cifar-10-python.tar.gz or their "
                   "extracted folder",
        in_paper=True),
    Dataset("folder", None),
)}


def get(name: str) -> Dataset:
  """The dataset called `name`; a ValueError names the choices."""
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; choose from {tuple(DATASETS)}")
  return DATASETS[name]


def names(**flags) -> tuple[str, ...]:
  """Names of the datasets whose fields (or properties) equal `flags`, in table order,
  e.g. names(in_paper=True)."""
  return tuple(n for n, d in DATASETS.items()
               if all(getattr(d, k) == v for k, v in flags.items()))


def register(dataset: Dataset) -> Dataset:
  """Adds `dataset` to the table; a name already there is refused, so an entry is never
  replaced unseen (tests replace one with `monkeypatch.setitem`)."""
  if dataset.name in DATASETS:
    raise ValueError(f"dataset {dataset.name!r} is already in the table")
  if not dataset.name or os.sep in dataset.name:
    raise ValueError(f"dataset name {dataset.name!r} is not a folder name")
  DATASETS[dataset.name] = dataset
  return dataset
