"""Pinned results: refactors must not change a single number.

Runs a few methods with the `test` preset on real MNIST (normal classes 0 and 1, seed 0:
two jobs in one program, run one after another on CPU) through `runner.run`, and
compares each job's AUC, test scores and training split with `tests/pinned_scores.json`.

What holds on any x86-64 CPU is pinned exactly: the config hashes, the score counts and
dtypes, and the split's training indices. The rest depends on how XLA:CPU compiles for
the CPU at hand (vector width, fused multiply-adds), so it is compared in two ways:

- against the reference values (`scores`) within per-method tolerances (`TOLERANCES`),
  each set from the differences measured between two CPUs (an AVX2 machine against the
  one that made the reference) with a margin that a real regression would still break;
- bit for bit (sha256 of every score, AUC to the last bit, the final losses) against
  the values stored for this machine's CPU (`exact`, keyed by `machine()`), when the
  file holds them: the same machine gives the same numbers every time.

The reference values were made by the code of main at 9dbace0 (dsplit, nnwds and ssim
pinned again for `job_map=map` at cc28463; BUILD_NOTES.md, "Tests") with

    DSPLIT_DATA_DIR=DIR python -m tests.test_pinned_results --write

(DIR holding mnist/), which now adds or replaces this machine's `exact` entry only.
Regenerate the reference only for a change that is meant to change the numbers, and say
so in BUILD_NOTES.md.
"""

import hashlib
import json
import os
import pathlib
import platform
import re
import sys

import jax
import numpy as np
import pytest

from dsplit_jax import configs
from dsplit_jax import runner

PINNED = pathlib.Path(__file__).with_name("pinned_scores.json")
METHODS = ("dsplit", "nnwds", "ssim", "ocsvm", "hog_ocsvm", "iforest", "dsvdd")
ALL_METHODS = ("dsplit", "naive_nn", "nnwds", "ssim", "dsvdd", "ocsvm", "hog_ocsvm", "iforest")
CLASSES = (0, 1)
PICKED = (0, 1, 2, 3, 1234, 5678, 9999)  # test images whose raw scores are stored
STUDY = pathlib.Path(__file__).parents[1] / "studies" / "cpu" / "results.jsonl"
# Per method: the largest AUC difference and relative score difference (on the picked
# test images) accepted against the reference on another CPU, and for the trained
# classifiers the largest final-loss difference. Measured between two CPUs (AVX2 + FMA
# against the reference's): classical baselines, AUC equal and scores within 1.4e-14
# (float64); ssim, AUC 1.7e-7, scores 1.5e-6 (float32 SSIM); Deep SVDD, AUC 1.3e-5,
# scores 3.7e-4. dsplit and nnwds train their classifier 60 steps with Adam, whose
# per-coordinate normalisation turns rounding differences into different updates:
# AUC 0.055, scores up to 0.5 apart, final losses 0.023; so across CPUs they are held
# to their AUC and losses only, which still breaks on a flipped score, a lost loss or
# a broken split, while the bit-for-bit comparison (`exact`) guards the rest.
TOLERANCES = {
    "dsplit": dict(auc=0.1, losses=0.05), "nnwds": dict(auc=0.1, losses=0.05),
    "ssim": dict(auc=1e-5, scores=1e-4),
    "ocsvm": dict(auc=0.0, scores=1e-9), "hog_ocsvm": dict(auc=0.0, scores=1e-9),
    "iforest": dict(auc=0.0, scores=1e-9),
    "dsvdd": dict(auc=2e-3, scores=1e-2),
}
# What the CPU model cannot change.
_STABLE = ("config_hash", "num_scores", "scores_dtype", "train_split_index_sha256")


def machine() -> str:
  """The CPU (model name and the vector extensions and FMA XLA:CPU compiles for) and
  the jax version: machines with the same key give the same numbers."""
  flags, model = set(), ""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name") and not model:
          model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
          flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  # The model name too: two CPUs with the same flags may still be tuned differently.
  vector = sorted(f for f in flags if re.fullmatch(r"(avx|avx2|fma|avx512\w*|amx\w*)", f))
  return " ".join([platform.machine(), model, *vector, f"jax{jax.__version__}"])


def _config(method, data_dir):
  config = configs.get_preset("test")
  config.dataset, config.data_dir, config.method = "mnist", str(data_dir), method
  config.normal_classes, config.seeds = CLASSES, (0,)
  return config


def _digest(array) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _summary(method, record, workdir) -> dict:
  """What is pinned of one job: AUC, score hash and a few raw scores, split, losses."""
  c, chash = record["normal_class"], record["config_hash"]
  scores = np.load(os.path.join(workdir, "scores",
                                f"mnist-c{c}-{method}-rho10-s0-{chash}.npz"))["scores"]
  out = {"auc": record["auc"], "config_hash": chash, "num_scores": int(scores.size),
         "scores_dtype": str(scores.dtype), "scores_sha256": _digest(scores),
         "picked_scores": [float(scores[i]) for i in PICKED]}
  if "final_losses" in record:
    out["final_losses"] = record["final_losses"]
  split = os.path.join(workdir, "splits", f"mnist-c{c}-s0.npz")
  if method in ("dsplit", "nnwds", "ssim"):
    with np.load(split) as f:
      out["ssim_train_sha256"] = _digest(f["ssim_train"])
      out["train_split_index_sha256"] = _digest(f["train_split_index"].astype(np.int64))
  return out


def compute(data_dir, workdir) -> dict:
  """Every pinned method's summary per normal class, from one shared work dir (the
  split methods share their autoencoders there)."""
  out = {}
  for method in METHODS:
    recs = runner.run(_config(method, data_dir), str(workdir))
    out[method] = {str(r["normal_class"]): _summary(method, r, workdir)
                   for r in sorted(recs, key=lambda r: r["normal_class"])}
  return out


def config_hashes() -> dict:
  """preset -> method -> config hash for MNIST at the preset's rho."""
  out = {}
  for preset in configs.PRESETS:
    out[preset] = {}
    for method in ALL_METHODS:
      config = configs.get_preset(preset)
      config.dataset, config.method = "mnist", method
      out[preset][method] = configs.config_hash(config)
  return out


@pytest.fixture(scope="module")
def pinned():
  return json.loads(PINNED.read_text())


@pytest.fixture(scope="module")
def computed(mnist_dir, tmp_path_factory):
  if jax.default_backend() != "cpu":
    pytest.skip(f"scores are pinned on CPU; this backend is {jax.default_backend()}")
  return compute(mnist_dir, tmp_path_factory.mktemp("pinned"))


@pytest.mark.parametrize("method", METHODS)
def test_scores_match_the_reference_on_any_cpu(method, computed, pinned):
  tol = TOLERANCES[method]
  for c in map(str, CLASSES):
    got, want = computed[method][c], pinned["scores"][method][c]
    where = f"{method} class {c}"
    for key in _STABLE:
      assert got.get(key) == want.get(key), (where, key)
    assert got["num_scores"] == 10000, where
    assert abs(got["auc"] - want["auc"]) <= tol["auc"], (where, got["auc"], want["auc"])
    if "scores" in tol:
      np.testing.assert_allclose(got["picked_scores"], want["picked_scores"],
                                 rtol=tol["scores"], err_msg=where)
    if "losses" in tol:
      assert got["final_losses"].keys() == want["final_losses"].keys(), where
      for name, value in want["final_losses"].items():
        assert abs(got["final_losses"][name] - value) <= tol["losses"], (where, name)


@pytest.mark.parametrize("method", METHODS)
def test_scores_are_bit_exact_on_a_pinned_machine(method, computed, pinned):
  exact = pinned.get("exact", {}).get(machine())
  if exact is None:
    pytest.skip(f"no exact values stored for this CPU ({machine()}); "
                "python -m tests.test_pinned_results --write adds them")
  for c in map(str, CLASSES):
    got, want = computed[method][c], exact[method][c]
    where = f"{method} class {c} on {machine()}"
    np.testing.assert_array_equal(got["picked_scores"], want["picked_scores"], err_msg=where)
    assert got["auc"] == want["auc"], (where, got["auc"], want["auc"])
    assert got == want, where  # hashes of every score, the split, the final losses


def test_config_hashes_are_the_pinned_ones(pinned):
  assert config_hashes() == pinned["config_hashes"]
  # Written out: the cpu preset's dsplit config for MNIST (its 250-step autoencoder;
  # "ef0beb88ef0c" with ae.steps=750). Its records in studies/cpu are reused
  # only while this holds.
  assert pinned["config_hashes"]["cpu"]["dsplit"] == "bb187536c3c1"


def test_committed_study_cells_keep_their_hashes():
  """Every record of the committed studies (distance heads, capacity) hashes as it did
  when written, rebuilt from the cpu preset and the studies' own overrides."""
  recs = [json.loads(line) for line in STUDY.read_text().splitlines() if line.strip()]
  assert len(recs) >= 40
  for r in recs:
    config = configs.get_preset(r["preset"])
    config.dataset, config.method, config.rho = r["dataset"], r["method"], r["rho"]
    config.model.distance_head = r["config"]["model"]["distance_head"]
    config.model.latent = r["config"]["model"].get("latent", "dense")  # added later
    config.train.pairs = r["config"]["train"]["pairs"]
    # The capacity study's classifier widths and steps (experiments.study_capacity).
    for key in ("conv_features", "dense_features"):
      config.model[key] = tuple(r["config"]["model"][key])
    config.train.steps = r["config"]["train"]["steps"]
    # The splitting autoencoder the record was made with (the records hold both the
    # 750-step and the 250-step `cpu` budgets; BUILD_NOTES.md, "Results").
    for key in ("steps", "warmup_steps", "chunk_steps"):
      config.ae[key] = r["config"]["ae"][key]
    config.ae.output_bias = r["config"]["ae"].get("output_bias", "zero")  # added later
    # The evaluation protocol and the chunk length its checkpoints need (added later).
    config.train.chunk_steps = r["config"]["train"]["chunk_steps"]
    for key, value in r["config"].get("eval", {}).items():
      config.eval[key] = value
    assert configs.config_hash(config) == r["config_hash"], (r["dataset"], r["method"],
                                                            config.model.distance_head,
                                                            config.model.latent)


if __name__ == "__main__":
  if sys.argv[1:] not in (["--write"], ["--write-reference"]):
    sys.exit("usage: DSPLIT_DATA_DIR=... python -m tests.test_pinned_results --write "
             "(this CPU's exact values) | --write-reference (a change meant to change "
             "the numbers)")
  import tempfile
  with tempfile.TemporaryDirectory() as tmp:
    scores = compute(pathlib.Path(os.environ["DSPLIT_DATA_DIR"]) / "mnist", tmp)
  result = json.loads(PINNED.read_text()) if PINNED.exists() else {}
  hashes = config_hashes()
  if sys.argv[1] == "--write-reference":
    result["scores"], result["exact"], result["config_hashes"] = scores, {}, hashes
  for preset, by_method in hashes.items():  # a new preset's; pinned ones stay
    result.setdefault("config_hashes", {}).setdefault(preset, by_method)
  result.setdefault("exact", {})[machine()] = scores
  PINNED.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
  print(f"wrote {PINNED} ({machine()})")
