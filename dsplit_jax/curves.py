"""Loss curves: one line per window of steps in a run dir's `loss_curves.jsonl`.

Below `loop` (which writes them) and `train` (whose steps report `NOT_RUN` for a loss
that did not run); records, the grid and the renderer read them. Needs no JAX.
"""

from __future__ import annotations

import json
import os

import numpy as np

CURVES_FILE = "loss_curves.jsonl"
CURVE_WINDOW = 25  # steps averaged into one point of a saved loss curve


def run_dirs_with_curves(workdir) -> list[str]:
  """Run dirs of `workdir/runs` that saved loss curves."""
  runs = os.path.join(workdir, "runs")
  names = sorted(os.listdir(runs)) if os.path.isdir(runs) else []
  return [os.path.join(runs, n) for n in names
          if os.path.isfile(os.path.join(runs, n, CURVES_FILE))]


# The value a loss reports on a step where it did not run (train.schedule="epochs").
# No loss of the method is negative, so it cannot be a real value; NaN and +inf stay
# what they are, a loss that diverged. (Here, not in losses.py: reading records and
# curves needs no JAX.)
NOT_RUN = float("-inf")


def mean_where_run(values, axis=None):
  """The mean over the steps where the loss ran (not `NOT_RUN`), NaN where it ran
  on none; a NaN or inf where it ran stays in (a diverged loss stays non-finite)."""
  values = np.asarray(values, np.float64)
  ran = values != NOT_RUN
  count = ran.sum(axis=axis)
  total = np.where(ran, values, 0.0).sum(axis=axis)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def append_curves(path: str, phase: str, start: int, metrics: dict, job_names, writer=None):
  """Appends one line per window of CURVE_WINDOW steps: each metric's mean per job.

  A chunk that runs again after a resume appends its windows again; `read_curves`
  keeps the last line of each (phase, step). `writer` (a clu MetricWriter, see
  writers.py) gets the same points as scalars named `phase/metric/job`."""
  steps = next(iter(metrics.values())).shape[1]
  window = min(CURVE_WINDOW, steps)
  lines = []
  for w in range(steps // window):
    values = {k: mean_where_run(np.asarray(v, np.float64)[:len(job_names),
                                                  w * window:(w + 1) * window], axis=1)
              .round(6).tolist() for k, v in metrics.items()}
    lines.append(json.dumps({"phase": phase, "step": start + (w + 1) * window,
                             "jobs": list(job_names), "values": values}))
    if writer is not None:
      writer.write_scalars(start + (w + 1) * window,
                           {f"{phase}/{k}/{job}": v[j] for k, v in values.items()
                            for j, job in enumerate(job_names)})
  with open(path, "a") as f:
    f.write("\n".join(lines) + "\n")


def read_curves(run_dir: str) -> dict[str, dict[str, dict[str, list[tuple[int, float]]]]]:
  """phase -> job -> metric -> [(step, value)] from a run dir's loss curves."""
  path = os.path.join(run_dir, CURVES_FILE)
  latest = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          entry = json.loads(line)
        except json.JSONDecodeError:
          continue  # a line torn by a kill
        latest[(entry["phase"], entry["step"])] = entry
  out: dict = {}
  for (phase, step), entry in sorted(latest.items()):
    for metric, values in entry["values"].items():
      for job, v in zip(entry["jobs"], values):
        out.setdefault(phase, {}).setdefault(job, {}).setdefault(metric, []).append((step, v))
  return out


def final_losses(run_dir: str, phase: str) -> dict[str, dict[str, float]]:
  """job -> each metric's last saved window in which it ran (a job without a curve is
  absent; a window without a step of a loss holds NaN for it, `train.schedule="epochs"`).

  The curves file is read once for all jobs of a run."""
  def last(points):
    ran = [v for _, v in points if not (isinstance(v, float) and np.isnan(v))]
    return ran[-1] if ran else points[-1][1]
  return {job: {metric: last(points) for metric, points in by_metric.items()}
          for job, by_metric in read_curves(run_dir).get(phase, {}).items()}
