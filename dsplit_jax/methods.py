"""What each method is: the one table every part of the library reads.

The paper's method (`dsplit`), its two ablations and the five baselines of Table 1.
Code asks this table what a method does (`get(name).trains_classifier`, ...) instead
of testing its name against lists of names.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Scorer:
  """How a method scores images; every place that differs by scorer reads this table
  or keys its own table of functions by `name` (runner.RUNS, api._KINDS).

  name: the key a `Method.scorer` names.
  fitted_params: which of `runner.fit`'s networks score new images ("params" of the
    classifier, "ae_params" of the autoencoder); None where the method is not fit by
    `runner.fit` (it fits and scores in one go).
  not_planned: why the planner (experiments/plan.py) leaves its cost out; None where
    its programs are the planned ones.
  """
  name: str
  fitted_params: str | None = None
  not_planned: str | None = None


SCORERS = {s.name: s for s in (
    # The classifier's logit.
    Scorer("classifier", fitted_params="params"),
    # Minus the SSIM of the splitting autoencoder's reconstruction.
    Scorer("ssim", fitted_params="ae_params"),
    # Deep SVDD (baselines/dsvdd.py): the distance to its centre.
    Scorer("dsvdd", not_planned=(
        "Deep SVDD trains its own LeNet-type networks (dsplit_jax/baselines/dsvdd.py), "
        "not the programs planned here; measured on this CPU at 1.59 s + 0.72 s per "
        "epoch for one MNIST class (BUILD_NOTES.md, \"Baselines\")")),
    # scikit-learn's estimators (baselines/classical.py).
    Scorer("classical", not_planned="scikit-learn on the host CPU, not on the accelerator"),
)}


@dataclasses.dataclass(frozen=True)
class Method:
  """One method of Table 1.

  name: the command line's and the records' name.
  paper_name: its column header in the paper's Table 1.
  paper_column: its column in the paper's Table 1 (0 = leftmost).
  needs_split: trains the splitting autoencoder and ranks the training images by SSIM
    (`splits/` of a work dir holds that ranking).
  trains_classifier: trains the classifier network of the paper's section 2.
  losses: the classifier's losses, applied in turn every iteration (train.py).
  labels_from_split: the intra-class loss labels atypical images 1 (dsplit, nnwds);
    without it every normal image is labelled 0 (naive_nn).
  scorer: its key in SCORERS: how its images are scored.
  """
  name: str
  paper_name: str
  paper_column: int
  needs_split: bool = False
  trains_classifier: bool = False
  losses: tuple[str, ...] = ()
  labels_from_split: bool = False
  scorer: str = "classifier"

  @property
  def uses_rho(self) -> bool:
    """Whether rho changes the result: only the typical/atypical labels depend on it."""
    return self.labels_from_split

  @property
  def uses_distance_head(self) -> bool:
    """The pair losses (closeness, dispersion) are the only users of the distance head
    and of `train.pairs`."""
    return bool({"closeness", "dispersion"} & set(self.losses))

  def __post_init__(self):
    if self.scorer not in SCORERS:
      raise ValueError(f"{self.name}: unknown scorer {self.scorer!r}; choose one of "
                       f"{', '.join(SCORERS)}")

  @property
  def fitted_params(self) -> str | None:
    """Which of `runner.fit`'s networks score new images (Scorer.fitted_params)."""
    return SCORERS[self.scorer].fitted_params


# Command-line order (`--method=all` runs them in this order).
METHODS = {m.name: m for m in (
    Method("dsplit", "Ours", 7, needs_split=True, trains_classifier=True,
           losses=("closeness", "intra_class", "dispersion"), labels_from_split=True),
    Method("naive_nn", "NaiveNN", 5, trains_classifier=True, losses=("intra_class",)),
    Method("nnwds", "NNwDS", 6, needs_split=True, trains_classifier=True,
           losses=("intra_class",), labels_from_split=True),
    Method("ssim", "SSIM", 3, needs_split=True, scorer="ssim"),
    Method("dsvdd", "DSVDD", 4, scorer="dsvdd"),
    Method("ocsvm", "OCSVM", 0, scorer="classical"),
    Method("hog_ocsvm", "HOG", 1, scorer="classical"),
    Method("iforest", "IF", 2, scorer="classical"),
)}
NAMES = tuple(METHODS)
PAPER_ORDER = tuple(sorted(METHODS, key=lambda m: METHODS[m].paper_column))


def get(name: str) -> Method:
  """The method called `name`; a ValueError names the choices."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; choose one of {', '.join(NAMES)}")
  return METHODS[name]


def names(**flags) -> tuple[str, ...]:
  """Names of the methods whose fields equal `flags`, e.g. names(scorer="classical")."""
  return tuple(n for n, m in METHODS.items()
               if all(getattr(m, k) == v for k, v in flags.items()))
