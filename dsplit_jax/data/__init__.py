"""Datasets for one-class experiments: loading, one-class tasks, preprocessing.

Offline first: explicit folder, $DSPLIT_DATA_DIR, Debian's packages, the download
cache; then a verified download of the original files (`download`), and only
then tensorflow-datasets (see `sources`). What each dataset is (its folders, files,
hashes, counts, reader) is one entry of the table `datasets.DATASETS` (name ->
`Dataset`), which `DATASETS` is.
"""

from dsplit_jax.data import datasets
from dsplit_jax.data import preprocessing
from dsplit_jax.data.datasets import DATASETS
from dsplit_jax.data.datasets import Dataset
from dsplit_jax.data.errors import DataError
from dsplit_jax.data.folder import iter_image_files
from dsplit_jax.data.folder import load_image_files
from dsplit_jax.data.jobs import Jobs
from dsplit_jax.data.jobs import describe_sources
from dsplit_jax.data.jobs import job_keys
from dsplit_jax.data.jobs import load_jobs
from dsplit_jax.data.one_class import OneClassTask
from dsplit_jax.data.one_class import one_class_task
from dsplit_jax.data.sources import class_names
from dsplit_jax.data.sources import describe_files
from dsplit_jax.data.sources import load
from dsplit_jax.data.sources import num_classes
from dsplit_jax.data.sources import source_files

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "Jobs",
    "OneClassTask",
    "class_names",
    "datasets",
    "describe_files",
    "describe_sources",
    "iter_image_files",
    "load",
    "load_image_files",
    "load_jobs",
    "num_classes",
    "one_class_task",
    "preprocessing",
    "source_files",
]
