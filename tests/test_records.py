"""Result records: JSON lines that survive concurrent writers and crashes."""

import json
import multiprocessing

import numpy as np
import pytest

from dsplit_jax import records


def record(seed=0, auc=0.9, method="dsplit", normal_class=0, rho=0.5, **extra):
  return records.make_record(dataset="mnist", normal_class=normal_class, method=method,
                             seed=seed, rho=rho, auc=auc,
                             config={"lr": 1e-3, "widths": (8, 16)}, wall_time_s=1.5,
                             **extra)


def test_make_record():
  r = record(loss=np.float32(0.25))
  assert tuple(r)[:len(records.RECORD_KEYS)] == records.RECORD_KEYS
  assert r["loss"] == np.float32(0.25)
  versions = r["versions"]
  for key in ("python", "jax", "jaxlib", "flax", "optax", "numpy", "sklearn", "skimage",
              "dsplit_jax", "platform", "device_kind"):
    assert key in versions
  assert versions["numpy"] == np.__version__
  assert r["time"].endswith("+00:00")
  with pytest.raises(ValueError, match="overwrite"):
    record(versions={})


def test_round_trip_and_filters(tmp_path):
  path = tmp_path / "sub" / "results.jsonl"
  assert records.read_records(path) == []
  assert not records.has_record(path, seed=0)
  for seed in range(3):
    records.append_record(path, record(seed=seed))
  records.append_record(path, record(seed=0, method="ocsvm", rho=None))
  back = records.read_records(path)
  assert len(back) == 4 and back[0]["config"] == {"lr": 1e-3, "widths": [8, 16]}
  assert [r["seed"] for r in records.read_records(path, method="dsplit")] == [0, 1, 2]
  assert records.has_record(path, method="ocsvm", seed=0, rho=None)
  assert not records.has_record(path, method="ocsvm", seed=1)
  assert path.read_text().count("\n") == 4


def test_non_finite_auc_is_refused(tmp_path):
  with pytest.raises(ValueError):
    records.append_record(tmp_path / "r.jsonl", record(auc=float("nan")))


def test_corrupt_trailing_line_is_skipped(tmp_path):
  path = tmp_path / "results.jsonl"
  records.append_record(path, record(seed=0))
  with open(path, "a") as f:
    f.write('{"dataset": "mni')  # An older writer died mid-line.
  with pytest.warns(UserWarning, match="results.jsonl:2"):
    assert [r["seed"] for r in records.read_records(path)] == [0]
  records.append_record(path, record(seed=1))  # Starts on a new line.
  with pytest.warns(UserWarning):
    assert [r["seed"] for r in records.read_records(path)] == [0, 1]


def _append_many(path, worker, count):
  # Lines of up to ~8 KB, so a torn or interleaved write would show. Plain dicts:
  # make_record would import jax in every worker, which is all the cost.
  for i in range(count):
    records.append_record(path, {"seed": i, "method": f"w{worker}",
                                 "padding": "x" * (1000 * (i % 9))})


def test_concurrent_writers(tmp_path):
  path = str(tmp_path / "results.jsonl")
  ctx = multiprocessing.get_context("spawn")  # Safe even if jax is loaded.
  procs = [ctx.Process(target=_append_many, args=(path, w, 200)) for w in range(4)]
  for p in procs:
    p.start()
  for p in procs:
    p.join(timeout=120)
    assert p.exitcode == 0
  with open(path) as f:
    lines = f.read().split("\n")
  assert lines[-1] == "" and len(lines) == 801
  parsed = [json.loads(line) for line in lines[:-1]]
  for w in range(4):
    assert sorted(r["seed"] for r in parsed if r["method"] == f"w{w}") == list(range(200))


def test_summarize_and_table():
  rs = [record(seed=s, auc=a) for s, a in [(2, 0.8), (0, 0.9), (1, 1.0)]]
  rs += [record(seed=0, auc=0.7, method="ocsvm", rho=None)]
  rs += [record(seed=0, auc=0.6, normal_class=1)]
  with pytest.warns(UserWarning, match="seed 0 logged twice"):
    rows = records.summarize(rs + [record(seed=0, auc=0.6, normal_class=1)])
  assert [(r["normal_class"], r["method"]) for r in rows] == [
      (0, "dsplit"), (0, "ocsvm"), (1, "dsplit")]
  first = rows[0]
  assert first["mean"] == pytest.approx(0.9) and first["n"] == 3
  assert first["std"] == pytest.approx(np.std([0.8, 0.9, 1.0]))  # ddof=0
  assert first["seeds"] == [0, 1, 2] and rows[2]["n"] == 1
  table = records.format_table(rows)
  lines = table.splitlines()
  assert lines[0] == "| dataset | class | dsplit (rho=0.5) | ocsvm |"
  assert lines[2] == "| mnist | 0 | 90.0 ± 8.2 | 70.0 ± 0.0 |"
  assert lines[3] == "| mnist | 1 | 60.0 ± 0.0 | - |"
