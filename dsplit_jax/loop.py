"""Chunked training loop: compiled chunks of steps, progress and checkpoints between them.

The step loop itself lives inside `chunk_fn` (a `lax.scan`, jitted and vmapped over
jobs); the host only sees one call per chunk, which is where progress is printed,
the state is checkpointed and non-finite losses stop the run.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Callable

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from dsplit_jax import curves
from dsplit_jax import workdir as workdir_lib
from dsplit_jax import writers


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN or infinite; training stops rather than wasting the budget."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C during a phase, raised once its checkpoints are written; says where."""


BAR_WIDTH = 20


def bar(step: int, total: int, width: int = BAR_WIDTH) -> str:
  """A text progress bar, `[#####...............]`: one line per chunk keeps logs and
  notebooks readable where a redrawn bar would not be."""
  filled = int(width * min(max(step / total, 0.0), 1.0)) if total > 0 else width
  return "[" + "#" * filled + "." * (width - filled) + "]"


def duration(seconds: float) -> str:
  """`42s`, `3m05s`, `1h02m`; `?` when unknown."""
  if seconds != seconds or seconds < 0:
    return "?"
  s = int(round(seconds))
  if s < 60:
    return f"{s}s"
  if s < 3600:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
  """Prints phase, a bar, step, losses, steps/s and ETA; also keeps them for tests.

  A phase's first chunk includes its compilation (seconds to minutes): a `compiling`
  line comes before it, its time is printed on its own, and the rate and ETA are
  measured from the end of that chunk. `printer` takes one line of text (`print` by
  default; `lambda line: None` is silent). clu's `periodic_actions.ReportProgress`
  reports to absl logging and work-unit notes, not to a caller's stream, so the bar
  is drawn here.
  """

  def __init__(self, printer: Callable[[str], None] | None = None,
               clock: Callable[[], float] = time.time):
    self.printer = printer or (lambda line: print(line, flush=True))
    self.history: list[dict[str, Any]] = []
    self.first_chunk_s: dict[str, float] = {}  # phase -> seconds, compilation included
    self._clock = clock
    self._start: dict[str, tuple[float, int]] = {}
    self._compiled: set[str] = set()

  def __call__(self, phase: str, step: int, total: int, metrics: dict[str, float]):
    now = self._clock()
    t0, s0 = self._start.setdefault(phase, (now, step))
    self.history.append(dict(phase=phase, step=step, total=total, **metrics))
    losses = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    head = f"[{phase}] {bar(step, total)} {step}/{total} {losses}"
    if phase not in self._compiled:
      self._compiled.add(phase)
      self._start[phase] = (now, step)
      self.first_chunk_s[phase] = now - t0
      self.printer(f"{head} (first chunk {now - t0:.1f}s, compilation included)")
      return
    rate = (step - s0) / (now - t0) if now > t0 and step > s0 else float("nan")
    eta = (total - step) / rate if rate == rate and rate > 0 else float("nan")
    self.printer(f"{head} ({rate:.2f} steps/s, ETA {duration(eta)})")

  def restart_clock(self, phase: str, step: int, total: int | None = None):
    """Called before a phase's first chunk (a fresh start or a resume); says that the
    chunk compiles first, the step where the wait is longest."""
    self._start[phase] = (self._clock(), step)
    self._compiled.discard(phase)
    if total is not None and step < total:
      self.printer(f"[{phase}] compiling ... ({total - step} steps to run after it)")


def _manager(ckpt_dir: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(ckpt_dir),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))


def _summary(metrics: dict) -> dict[str, float]:
  """Mean of each metric over jobs and steps; with several jobs also the worst job's
  mean, so that one job stuck on a plateau is not hidden by the average. Steps where a
  loss did not run (`curves.NOT_RUN`, `train.schedule="epochs"`) are left out, and a
  loss that ran on none of the chunk's steps is left out of the summary."""
  out = {}
  for k, v in metrics.items():
    v = np.asarray(v, np.float64)
    ran = v != curves.NOT_RUN
    if not ran.any():
      continue
    out[k] = float(curves.mean_where_run(v))
    if v.ndim == 2 and v.shape[0] > 1:
      out[f"{k}_max_job"] = float(np.max(curves.mean_where_run(v, axis=1)[ran.any(axis=1)]))
  return out


def run_phase(name: str, state: Any, chunk_fn: Callable[..., tuple[Any, dict]],
              *, total_steps: int, chunk_steps: int, ckpt_dir: str | None,
              progress: Progress | None = None, curve_jobs=None,
              learning_rate: float | None = None,
              evaluate: Callable[[int, Any], None] | None = None, inputs: tuple = (),
              real_jobs: int | None = None) -> Any:
  """Runs `total_steps` steps as chunks of `chunk_steps`, resuming from `ckpt_dir`.

  `chunk_fn(state, start_step, *inputs) -> (state, metrics)` runs `chunk_steps` steps
  from `start_step`; its metrics are [jobs, steps] arrays (see `_summary`), of which the
  first `real_jobs` rows are real jobs (the rest pad the job axis to the devices and are
  left out). `total_steps` must be a multiple of `chunk_steps` so that a resumed run
  takes exactly the same steps.
  With `curve_jobs` (a name per job) and a `ckpt_dir`, every job's losses are appended
  to `ckpt_dir/loss_curves.jsonl` (`curves.read_curves`) and written through a clu
  metric writer (`writers.curve_writer`: the log, TensorBoard files when TensorFlow is
  there). `learning_rate` is only named in the error when a loss becomes non-finite.
  `evaluate(step, state)` sees the state at step 0 (on a fresh start) and after every
  chunk, before that chunk's checkpoint is saved, so a resumed run evaluates every step
  it has not evaluated yet (`protocols`: scores of checkpoints on the test split).
  """
  if total_steps % chunk_steps:
    raise ValueError(f"{name}: total_steps={total_steps} is not a multiple of "
                     f"chunk_steps={chunk_steps}")
  manager = _manager(os.path.join(ckpt_dir, name)) if ckpt_dir else None
  curve_out = None
  if ckpt_dir and curve_jobs:
    curve_out = (os.path.join(ckpt_dir, curves.CURVES_FILE), curve_jobs,
              writers.curve_writer(ckpt_dir, say=lambda line: _say(progress, line)))
  try:
    step = 0
    if manager is not None and manager.latest_step() is not None:
      step, state = _restore(name, manager, state, progress)
      logging.info("%s: resumed from step %d", name, step)
      _say(progress, f"[{name}] resumed at step {step}/{total_steps}" if step else
           f"[{name}] no checkpoint could be restored; starting the phase afresh")
    if progress is not None:
      progress.restart_clock(name, step, total_steps)
    if evaluate is not None and step == 0:
      evaluate(0, state)
    while step < total_steps:
      state, raw = chunk_fn(state, np.int32(step), *inputs)
      raw = jax.tree.map(lambda x: np.asarray(x)[:real_jobs], raw)
      metrics = _summary(raw)
      if curve_out is not None and np.all([np.isfinite(v) for v in metrics.values()]):
        curves.append_curves(curve_out[0], name, step, raw, curve_out[1], writer=curve_out[2])
      step += chunk_steps
      bad = [k for k, v in metrics.items() if not np.isfinite(v)]
      if bad:
        lr = "" if learning_rate is None else f" with learning rate {learning_rate:g}"
        raise NonFiniteLossError(f"{name}: non-finite {', '.join(bad)} by step {step}/"
                                 f"{total_steps}{lr}; a lower learning rate may help")
      if evaluate is not None:
        evaluate(step, state)
      if manager is not None:
        manager.save(step, args=ocp.args.StandardSave(state))
      if progress is not None:
        progress(name, step, total_steps, metrics)
    return state
  except KeyboardInterrupt:
    done = 0
    if manager is not None:
      manager.wait_until_finished()  # The resume point is the last finished save.
      done = manager.latest_step() or 0
    raise Interrupted(f"interrupted at {name} step {done}/{total_steps}; run the same "
                      "command to resume") from None
  finally:
    if curve_out is not None:
      curve_out[2].close()
    # Also when interrupted (an exception, Ctrl-C): orbax saves in the background, and
    # a save still in flight would otherwise be lost and the resume start earlier.
    if manager is not None:
      manager.wait_until_finished()
      manager.close()


def _say(progress, line):
  (progress.printer if progress is not None else print)(line)


def _restore(name, manager, state, progress):
  """(step, state) of the newest checkpoint that can be read, else (0, state).

  A step that cannot be restored (a truncated file, a full disk during the save) is
  set aside as `<step>.corrupt-<time>`, named in one line, and the step before it is
  tried; with none left the phase starts afresh.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return step, manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax and tensorstore raise many types for a bad file.
      path = os.path.join(os.fspath(manager.directory), str(step))
      aside = workdir_lib.set_aside(path)
      manager.reload()
      files = re.findall(r'local file "([^"]+)"', str(e))  # tensorstore names the bad file
      detail = f"cannot read {files[-1]}" if files else " ".join(str(e).split())[:160]
      _say(progress, f"[{name}] checkpoint {path} cannot be restored ({type(e).__name__}: "
                     f"{detail}); set aside as {aside}")
  return 0, state


def phase_done(name: str, ckpt_dir: str | None, total_steps: int) -> bool:
  """Whether a phase's checkpoint already holds the last step."""
  if not ckpt_dir or not os.path.isdir(os.path.join(ckpt_dir, name)):
    return False
  manager = _manager(os.path.join(ckpt_dir, name))
  try:
    return manager.latest_step() == total_steps
  finally:
    manager.close()
