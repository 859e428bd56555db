"""Results as JSON lines: one record per (dataset, class, method, seed, rho) run.

An append-only file is the resume log of a sweep (`has_record`) and the input of
the tables (`summarize`, `format_table`). Several processes may append to the
same file, so each record goes in with one locked write.
"""

from __future__ import annotations

import collections
import datetime
import fcntl
import functools
import importlib.metadata
import json
import os
import platform
import warnings

import numpy as np

RECORD_KEYS = ("dataset", "normal_class", "method", "seed", "rho", "auc", "config",
               "versions", "wall_time_s", "time")

# versions key -> distribution name.
_DISTRIBUTIONS = {
    "jax": "jax", "jaxlib": "jaxlib", "flax": "flax", "optax": "optax",
    "numpy": "numpy", "sklearn": "scikit-learn", "skimage": "scikit-image",
    "dsplit_jax": "dsplit_jax",
}


@functools.cache
def versions():
  """Library versions and the machine; read from package metadata, not imports."""
  out = {"python": platform.python_version()}
  for key, dist in _DISTRIBUTIONS.items():
    try:
      out[key] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      out[key] = None
  out["platform"] = platform.platform()
  try:
    import jax  # pylint: disable=g-import-not-at-top
    device = jax.devices()[0]
    out["backend"], out["device_kind"] = device.platform, device.device_kind
    out["device_count"] = jax.device_count()
  except Exception:  # A record must not fail for want of a device description.
    out["backend"] = out["device_kind"] = out["device_count"] = None
  return out


def _jsonable(obj):
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if hasattr(obj, "to_dict"):  # ml_collections.ConfigDict
    return obj.to_dict()
  if isinstance(obj, (tuple, set, frozenset)):
    return list(obj)
  raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def make_record(*, dataset, normal_class, method, seed, rho, auc, config, wall_time_s,
                **extra):
  """A record dict with RECORD_KEYS first, then `extra` (e.g. per-run losses)."""
  clash = set(extra) & set(RECORD_KEYS)
  if clash:
    raise ValueError(f"extra keys {sorted(clash)} would overwrite record fields")
  record = {
      "dataset": str(dataset),
      "normal_class": int(normal_class),
      "method": str(method),
      "seed": int(seed),
      "rho": None if rho is None else float(rho),
      "auc": float(auc),
      "config": dict(config.to_dict() if hasattr(config, "to_dict") else config),
      "versions": dict(versions()),
      "wall_time_s": float(wall_time_s),
      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  record.update(extra)
  return record


def append_record(path, record):
  """Appends one JSON line, atomically with respect to other appenders.

  The whole line is built first and written by one os.write on an O_APPEND file
  under an exclusive flock, then fsynced, so concurrent writers never interleave
  and a crash leaves either the full line or none of it. If an older writer left a
  half line at the end, a newline is put before ours so that only that line is
  lost.
  """
  line = json.dumps(record, default=_jsonable, allow_nan=False) + "\n"
  data = line.encode("utf-8")
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
      size = os.fstat(fd).st_size
      if size and os.pread(fd, 1, size - 1) != b"\n":
        data = b"\n" + data
      written = os.write(fd, data)
      while written < len(data):  # Short writes are rare; still under the lock.
        written += os.write(fd, data[written:])
      os.fsync(fd)
    finally:
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def read_records(path, **filters):
  """Records whose fields equal all `filters`; a missing file is an empty log.

  Unparsable lines (a crash of an older, non-atomic writer) are skipped with a
  warning rather than losing the whole sweep.
  """
  try:
    with open(path, "rb") as f:
      lines = f.read().decode("utf-8", errors="replace").split("\n")
  except FileNotFoundError:
    return []
  out = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
    except ValueError as e:
      warnings.warn(f"{path}:{number}: skipping corrupt record ({e})", stacklevel=2)
      continue
    if all(record.get(k) == v for k, v in filters.items()):
      out.append(record)
  return out


def has_record(path, **filters):
  """Whether a run matching `filters` is already logged (for resuming sweeps)."""
  return bool(read_records(path, **filters))


def _sort_key(values):
  # None (e.g. rho of a method without one) sorts after numbers.
  return tuple((v is None, v) for v in values)


def summarize(records, keys=("dataset", "normal_class", "method", "rho")):
  """Mean and population std (ddof=0) of AUC over seeds for each `keys` group.

  A seed logged twice in a group (a rerun job) counts once, with its latest AUC.
  """
  groups = collections.defaultdict(dict)
  for r in records:
    group = tuple(r.get(k) for k in keys)
    if r["seed"] in groups[group]:
      warnings.warn(f"{dict(zip(keys, group))}: seed {r['seed']} logged twice; "
                    "using the later record", stacklevel=2)
    groups[group][r["seed"]] = r["auc"]
  rows = []
  for group in sorted(groups, key=_sort_key):
    by_seed = groups[group]
    aucs = np.asarray(list(by_seed.values()), np.float64)
    rows.append({**dict(zip(keys, group)),
                 "mean": float(aucs.mean()), "std": float(aucs.std()),
                 "n": len(aucs), "seeds": sorted(by_seed)})
  return rows


def _column(row):
  rho = row.get("rho")
  return row["method"] if rho is None else f"{row['method']} (rho={rho:g})"


def format_table(rows, scale=100.0, digits=1):
  """Markdown table: one row per (dataset, class), one column per method.

  Cells are mean ± std of AUC times `scale` (percent, as in the papers); a missing
  run shows as "-".
  """
  columns = list(dict.fromkeys(_column(r) for r in rows))
  cells = collections.defaultdict(dict)
  for r in rows:
    cells[(r["dataset"], r["normal_class"])][_column(r)] = (
        f"{r['mean'] * scale:.{digits}f} ± {r['std'] * scale:.{digits}f}")
  lines = ["| dataset | class | " + " | ".join(columns) + " |",
           "|---|---:|" + "---:|" * len(columns)]
  for dataset, normal_class in sorted(cells, key=_sort_key):
    row = cells[(dataset, normal_class)]
    lines.append(f"| {dataset} | {normal_class} | "
                 + " | ".join(row.get(c, "-") for c in columns) + " |")
  return "\n".join(lines)
