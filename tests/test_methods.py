"""The methods table: what each method does, and that nothing else lists methods."""

import pathlib
import re

import pytest

from dsplit_jax import api
from dsplit_jax import methods
from dsplit_jax import paper
from dsplit_jax import runner

ROOT = pathlib.Path(__file__).parents[1]


def test_table_says_what_each_method_does():
  assert methods.NAMES == ("dsplit", "naive_nn", "nnwds", "ssim", "dsvdd", "ocsvm",
                           "hog_ocsvm", "iforest")
  assert methods.names(uses_rho=True) == ("dsplit", "nnwds")
  assert methods.names(needs_split=True) == ("dsplit", "nnwds", "ssim")
  assert methods.names(trains_classifier=True) == ("dsplit", "naive_nn", "nnwds")
  assert methods.names(uses_distance_head=True) == ("dsplit",)
  assert methods.names(scorer="classical") == ("ocsvm", "hog_ocsvm", "iforest")
  assert methods.get("dsplit").losses == ("closeness", "intra_class", "dispersion")
  assert {n: methods.get(n).fitted_params for n in ("dsplit", "ssim", "dsvdd", "ocsvm")} == {
      "dsplit": "params", "ssim": "ae_params", "dsvdd": None, "ocsvm": None}
  # The paper's column order and headers (Table 1).
  assert methods.PAPER_ORDER == ("ocsvm", "hog_ocsvm", "iforest", "ssim", "dsvdd",
                                 "naive_nn", "nnwds", "dsplit")
  assert [paper.PAPER_METHOD_NAMES[m] for m in methods.PAPER_ORDER] == [
      "OCSVM", "HOG", "IF", "SSIM", "DSVDD", "NaiveNN", "NNwDS", "Ours"]
  with pytest.raises(ValueError, match="unknown method 'svm'; choose one of dsplit"):
    methods.get("svm")


def test_no_other_module_lists_methods_by_name():
  """Two method names as string literals on one line is a list of methods: it belongs
  in methods.py; elsewhere code asks the table."""
  quoted = re.compile(r"""["'](%s)["']""" % "|".join(methods.NAMES))
  offenders = []
  for path in sorted([*ROOT.glob("dsplit_jax/**/*.py"), *ROOT.glob("experiments/*.py")]):
    if path.name == "methods.py":
      continue
    for number, line in enumerate(path.read_text().splitlines(), 1):
      if len(set(quoted.findall(line))) > 1:
        offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
  assert not offenders, "\n".join(offenders)


def test_every_table_keyed_by_scorer_has_every_scorer():
  assert {m.scorer for m in methods.METHODS.values()} <= set(methods.SCORERS)
  assert set(runner.RUNS) == set(api._KINDS) == set(methods.SCORERS)
  assert set(runner.SCORES) == {s.name for s in methods.SCORERS.values() if s.fitted_params}
  with pytest.raises(ValueError, match="unknown scorer"):
    methods.Method("toy", "Toy", 8, scorer="nope")
