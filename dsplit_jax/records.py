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
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import warnings

import numpy as np

from dsplit_jax import configs
from dsplit_jax import workdir as workdir_lib

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
      try:
        written = os.write(fd, data)
        while written < len(data):  # Short writes are rare; still under the lock.
          written += os.write(fd, data[written:])
        os.fsync(fd)
      except OSError as e:  # A full disk: no half line is left behind.
        os.ftruncate(fd, size)
        raise OSError(e.errno, e.strerror, path) from None
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


# ------------------------------------------------------------- the work dir's files
# Every file a run writes into its work dir is named here, written here and found here:
#   results.jsonl                                  one record per job (above)
#   scores/<dataset>-c<class>-<method>-rho<rho>-s<seed>-<config hash>.npz   test scores
#   splits/<dataset>-c<class>-s<seed>.npz          training SSIM (Figure 1)
#   autoencoders/<dataset>-<ae hash>-<HxWxC>/c<class>-s<seed>.msgpack   (and ckpt-*)
#   runs/<run>/config.json, loss_curves.jsonl, <phase>/   one run's config, curves,
#                                                  orbax checkpoints
# The renderer finds scores and splits through the records that name them.

RESULTS_FILE = "results.jsonl"
RUN_CONFIG_FILE = "config.json"
EVAL_SCORES_DIR = "eval_scores"  # test scores of a run's checkpoints (`protocols`)


def results_path(workdir) -> str:
  return os.path.join(workdir, RESULTS_FILE)


def scores_path(workdir, dataset, cls, method, rho, seed, config_hash=None) -> str:
  """Test scores and labels of one job (`save_scores`); without `config_hash` the
  name records written before hashes existed have."""
  tail = f"-{config_hash}" if config_hash else ""
  return os.path.join(workdir, "scores",
                      f"{dataset}-c{cls}-{method}-rho{float(rho):g}-s{seed}{tail}.npz")


def split_path(workdir, dataset, cls, seed) -> str:
  """Training SSIM of one job's splitting autoencoder (`save_split`)."""
  return os.path.join(workdir, "splits", f"{dataset}-c{cls}-s{seed}.npz")


def run_dir(workdir, config, classes, seeds, config_hash) -> str:
  """Checkpoints, loss curves and config of one run of a method over its jobs."""
  return os.path.join(workdir, "runs", (
      f"{config.dataset}-{config.method}-rho{config.rho:g}-"
      f"c{'_'.join(map(str, sorted(set(classes))))}-"
      f"s{'_'.join(map(str, sorted(set(seeds))))}-{config_hash}"))


def eval_scores_path(run_dir, method, step) -> str:
  """Test scores [jobs, images] of a run's classifiers at training step `step`."""
  return os.path.join(run_dir, EVAL_SCORES_DIR, f"{method}-step{int(step):07d}.npz")


def read_eval_scores(run_dir, method) -> dict[int, np.ndarray]:
  """step -> test scores [jobs, images] saved by `eval_scores_path`'s writer."""
  folder = os.path.join(run_dir, EVAL_SCORES_DIR)
  out = {}
  for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
    match = re.fullmatch(rf"{re.escape(method)}-step(\d+)\.npz", name)
    if match:
      with np.load(os.path.join(folder, name)) as f:
        out[int(match.group(1))] = f["scores"]
  return out


def autoencoder_dir(workdir, dataset, autoencoder_hash, image_shape) -> str:
  return os.path.join(workdir, "autoencoders",
                      f"{dataset}-{autoencoder_hash}-{'x'.join(map(str, image_shape))}")


def autoencoder_path(ae_dir, cls, seed) -> str:
  return os.path.join(ae_dir, f"c{cls}-s{seed}.msgpack")


def autoencoder_ckpt_dir(ae_dir, classes, seeds) -> str:
  """Checkpoints of the autoencoders being trained for these jobs."""
  tag = "-".join(f"c{c}s{s}" for c, s in zip(classes, seeds))
  return os.path.join(ae_dir, "ckpt-" + hashlib.sha256(tag.encode()).hexdigest()[:10])


def writer() -> bool:
  """On a multi-host run (jax.distributed) every process computes every result; only
  process 0 writes them, so files and records are not duplicated."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index() == 0


def atomic_write(path, payload: bytes):
  if not writer():
    return
  with workdir_lib.replacing(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(payload)


def save_npz(path, **arrays):
  if not writer():
    return
  with workdir_lib.replacing(path, suffix=".npz") as tmp:
    np.savez(tmp, **arrays)


def save_scores(path, scores, labels):
  save_npz(path, scores=scores, labels=labels)


def save_split(path, ssim_train, train_split_index):
  save_npz(path, ssim_train=ssim_train, train_split_index=train_split_index)


def load_split(path) -> tuple[np.ndarray, np.ndarray]:
  """(SSIM of each training image, its position in the train split)."""
  with np.load(path) as f:
    return f["ssim_train"], f["train_split_index"]


def scores_file(workdir, record) -> str | None:
  """The score file of a record, or None where there is none."""
  for chash in (record.get("config_hash"), None):
    path = scores_path(workdir, record["dataset"], record["normal_class"], record["method"],
                       record["rho"], record["seed"], chash)
    if os.path.exists(path):
      return path
  return None


def split_file(workdir, record) -> str | None:
  """The training split saved by a record's job, or None where there is none."""
  path = split_path(workdir, record["dataset"], record["normal_class"], record["seed"])
  return path if os.path.exists(path) else None


def check_run_dir(run_dir, fields: dict) -> None:
  """A run dir belongs to one config (`fields`: its hashed fields and method):
  resuming with another would mix two runs. A garbled `config.json` is set aside
  and written again; its checkpoints are kept, the run-dir name holds the config hash."""
  path = os.path.join(run_dir, RUN_CONFIG_FILE)
  current = json.loads(json.dumps(fields, default=list))
  saved = None
  if os.path.exists(path):
    try:
      with open(path) as f:
        saved = json.load(f)
      if not isinstance(saved, dict):
        raise ValueError(f"a JSON {type(saved).__name__}, not an object")
    except ValueError as e:
      saved = None
      aside = workdir_lib.set_aside(path)
      print(f"warning: {path} is not a saved config ({e}); set aside as {aside} and "
            "written again")
  if saved is not None:
    if saved != current:
      diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
      raise configs.ConfigError(
          f"work dir {run_dir} holds a checkpoint of a different config (differs in: "
          f"{', '.join(diff)}); use another --workdir or delete it")
  else:
    os.makedirs(run_dir, exist_ok=True)
    atomic_write(path, json.dumps(current, indent=2, sort_keys=True).encode())
