"""The paper's reported numbers, to put beside ours (Schlachter et al., Table 1, Fig. 4).

`paper_results.csv` is Table 1 typed in once: AUC mean and std in percent over five
seeds, one row per (dataset, normal class), one column pair per method. Fig. 4 is a
plot without printed numbers; all the text gives is its rho range and that the AUC
varies by less than 1% over it, so `figure4()` returns that plus the rho = 10 point,
which is Table 1's "Ours" column.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources

from dsplit_jax import methods as methods_lib
from dsplit_jax.data import datasets as datasets_lib

# Our method names in the paper's column order, with the paper's column headers.
PAPER_METHOD_NAMES = {m: methods_lib.get(m).paper_name for m in methods_lib.PAPER_ORDER}
METHODS = methods_lib.PAPER_ORDER
DATASETS = datasets_lib.names(in_paper=True)  # Table 1's datasets, in its order
RHO = 10.0                       # the ratio behind Table 1 (section 3.1)
FIGURE4_RHO_RANGE = (5.0, 50.0)  # "not sensitive to rho in a wide range between 5% and 50%"
FIGURE4_MAX_STD = 1.0            # "... with a standard deviation of the AUC less than 1%"


@functools.cache
def _table1() -> tuple[dict, ...]:
  text = importlib.resources.files("dsplit_jax").joinpath("paper_results.csv").read_text()
  rows = []
  for raw in csv.DictReader(text.splitlines()):
    row = {"dataset": raw["dataset"], "normal_class": int(raw["normal_class"]),
           "class_name": raw["class_name"]}
    for m in METHODS:
      row[m], row[f"{m}_std"] = float(raw[m]), float(raw[f"{m}_std"])
    rows.append(row)
  return tuple(rows)


def table1() -> list[dict]:
  """Table 1 rows: dataset, normal_class, class_name, `<method>` and `<method>_std` in %."""
  return [dict(r) for r in _table1()]


def lookup(dataset: str, normal_class: int, method: str) -> tuple[float, float] | None:
  """(mean, std) in % for one cell of Table 1, or None where the paper has no such cell."""
  for r in _table1():
    if r["dataset"] == dataset and r["normal_class"] == int(normal_class):
      return (r[method], r[f"{method}_std"]) if method in METHODS else None
  return None


def dataset_means(dataset: str, classes=None) -> dict[str, float]:
  """Mean AUC (%) of each method over the dataset's classes (all ten unless given)."""
  rows = [r for r in _table1() if r["dataset"] == dataset
          and (classes is None or r["normal_class"] in set(classes))]
  if not rows:
    return {}
  return {m: sum(r[m] for r in rows) / len(rows) for m in METHODS}


def figure4() -> dict[str, dict[str, float]]:
  """Per dataset: the rho = 10 point of Fig. 4 (mean "Ours" AUC in %, from Table 1)."""
  return {d: {"rho": RHO, "auc": dataset_means(d)["dsplit"]} for d in DATASETS}
