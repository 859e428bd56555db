"""The compile-only planner on the test preset with 4 host devices (experiments/plan.py).

The planner runs in a subprocess: XLA_FLAGS must name the device count before JAX
initialises, and the test process has already initialised it.
"""

import json
import os
import subprocess
import sys

import pytest

from experiments import plan

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _plan(tmp_path, jobs, *extra):
  out = tmp_path / f"plan{jobs}.json"
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.plan", "--preset=test", "--dataset=mnist",
       f"--jobs={jobs}", "--devices=4", f"--json={out}", *extra],
      cwd=_ROOT, env=env, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(out.read_text()), proc.stdout


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
  """8 jobs on 4 devices (2 per device); the planner also compiles 1 per device."""
  return _plan(tmp_path_factory.mktemp("plan"), 8)


@pytest.mark.long
def test_figures_are_positive_on_four_devices(planned):
  out, stdout = planned
  assert out["devices"] == 4 and out["jobs_per_device"] == 2
  assert set(out["programs"]) == {"autoencoder chunk", "classifier chunk (dsplit)",
                                  "classifier chunk (nnwds)", "classifier chunk (naive_nn)",
                                  "scoring (test split)"}
  for name, f in out["programs"].items():
    assert f["flops"] > 0, name
    assert f["state_bytes"] > 0, name
    assert f["memory"]["peak"] > 0 and f["memory"]["argument"] > 0, name
  # The classifier's dsplit iteration runs three losses, nnwds and naive_nn one.
  flops = {name: f["flops"] for name, f in out["programs"].items()}
  assert flops["classifier chunk (dsplit)"] > 2 * flops["classifier chunk (nnwds)"]
  assert "PREDICTED wall time" in stdout and "PLAN (compile only" in stdout


@pytest.mark.long
def test_figures_grow_with_the_job_count(planned):
  out, _ = planned
  small = out["second_job_count"]
  assert small["jobs"] == 4 and small["jobs_per_device"] == 1
  assert set(small["programs"]) == {"autoencoder chunk", "classifier chunk (dsplit)",
                                    "scoring (test split)"}
  for name, g in small["programs"].items():
    f = out["programs"][name]
    # Each device holds two jobs' states instead of one: exactly twice the bytes.
    assert f["state_bytes"] == 2 * g["state_bytes"] > 0, name
    assert f["flops"] > 1.5 * g["flops"] > 0, name
    assert f["memory"]["peak"] > g["memory"]["peak"] > 0, name
  assert out["memory_model"]["per_job"] > 0


@pytest.mark.long
def test_table1_totals_and_targets(planned):
  out, _ = planned
  parts = out["table1_flops"]
  assert len(parts) == 3 * 5 and all(v > 0 for v in parts.values())
  assert out["table1_total_flops"] == pytest.approx(sum(parts.values()))
  # CIFAR-10's 32x32x3 images cost more per step than MNIST's 28x28x1.
  assert parts["cifar10: autoencoders"] > parts["mnist: autoencoders"]
  assert parts["mnist: autoencoders"] == parts["fashion_mnist: autoencoders"]
  for t in out["targets"]:
    at_10, at_30 = t["seconds"]["0.1"], t["seconds"]["0.3"]
    assert at_10 == pytest.approx(3 * at_30) and at_30 > 0
    assert t["fits"] and t["max_jobs"] >= 8


def test_memory_model_and_step_conventions():
  assert plan.memory_model((3, 30.0), (1, 14.0)) == (6.0, 8.0)
  chunk = dict(flops=100.0, steps_in_program=10, loop_trips=10)
  assert plan.per_step(chunk, trips_counted=False) == 100.0
  assert plan.per_step(chunk, trips_counted=True) == 10.0
  scoring = dict(flops=100.0, steps_in_program=1, loop_trips=20)
  assert plan.per_step(scoring, trips_counted=False) == 2000.0
  assert plan.per_step(scoring, trips_counted=True) == 100.0
