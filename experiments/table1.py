"""Table 1 and the rho sweep of Fig. 4 as one resumable grid of runner calls.

  python -m experiments.table1 --datasets=mnist,fashion_mnist --methods=all \
      --num_seeds=5 --preset=cpu --workdir=W [--rhos=5,10,20,30,40,50]
  python -m experiments.render --workdir=W

A cell is (dataset, method, rho) and is one `runner.run`: every class and seed of it
trained in one vmapped program. rho only changes the methods that learn from the split
(dsplit, nnwds), so only those get one cell per --rhos value; the others run once at the
preset's rho (10, the paper's). Table 1 cells come first, the extra rhos after.

Resuming: a cell whose jobs all have records with the cell's config hash is skipped, a
half-done cell runs only its missing jobs (the runner skips the rest and resumes from
checkpoints), so the same command continues a killed grid. A failing cell prints one
line (traceback in W/grid_errors.log), the grid goes on, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import time
import traceback

import ml_collections

from dsplit_jax import api
from dsplit_jax import cli
from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import distributed
from dsplit_jax import loop
from dsplit_jax import methods as methods_lib
from dsplit_jax import records
from dsplit_jax import runner
from dsplit_jax import validation
from dsplit_jax import workdir as workdir_lib

# Methods whose result depends on rho (they train on the typical/atypical labels).
# `ssim` uses the split's autoencoder but scores by SSIM alone, so rho does not matter.
RHO_METHODS = methods_lib.names(uses_rho=True)


@dataclasses.dataclass
class Cell:
  """One runner call: a method on one dataset at one rho, over all classes and seeds."""
  config: ml_collections.ConfigDict

  @property
  def dataset(self) -> str:
    return self.config.dataset

  @property
  def method(self) -> str:
    return self.config.method

  @property
  def rho(self) -> float:
    return float(self.config.rho)

  @property
  def name(self) -> str:
    return f"{self.dataset} {self.method} rho={self.rho:g}"

  def jobs(self) -> set[tuple[int, int]]:
    return {(int(c), int(s)) for c in self.config.normal_classes for s in self.config.seeds}


def make_cells(*, datasets, methods="all", rhos=(), preset, classes="all", seed=0,
               num_seeds=1, data_dir=None, overrides=()) -> list[Cell]:
  """All cells of the grid, validated; raises ValueError (one line) on bad input."""
  table, sweep = [], []
  for dataset in dict.fromkeys(datasets):
    config, chosen = cli.config_from_flags(
        preset=preset, dataset=dataset, normal_class=classes, method=methods, rho=None,
        seed=seed, num_seeds=num_seeds, data_dir=data_dir, overrides=list(overrides))
    for method in dict.fromkeys(chosen):
      cell_rhos = (dict.fromkeys(rhos) if methods_lib.get(method).uses_rho and rhos
                   else [config.rho])
      for rho in cell_rhos:
        c = config.copy_and_resolve_references()
        c.method, c.rho = method, float(rho)
        validation.validate(c)
        (table if c.rho == config.rho else sweep).append(Cell(c))
  return table + sweep


def missing_jobs(cell: Cell, results: str) -> set[tuple[int, int]]:
  """(class, seed) jobs of the cell without a record of this exact config."""
  done = {(r["normal_class"], r["seed"]) for r in records.read_records(
      results, dataset=cell.dataset, method=cell.method, rho=cell.rho,
      config_hash=configs.config_hash(cell.config))}
  return cell.jobs() - done


def check_data(datasets, data_dir=None):
  """Reads each test split once, so a missing dataset fails before any training."""
  for name in dict.fromkeys(datasets):
    data.load(name, "test", data_dir or None)


def _clock(seconds) -> str:
  return "?" if seconds is None else str(datetime.timedelta(seconds=round(seconds)))


def _eta(left: dict[int, tuple[str, float]], took: dict[str, list[float]]) -> str:
  """Time for the cells left, from finished cells of the same method. Methods not timed
  yet are named rather than guessed: a deep cell can cost 1000x a classical one."""
  if not left:
    return _clock(0)
  if not took:
    return "?"
  per_cell = {m: sum(ts) / len(ts) for m, ts in took.items()}
  known = sum(fraction * per_cell[m] for m, fraction in left.values() if m in per_cell)
  untimed = list(dict.fromkeys(m for m, _ in left.values() if m not in per_cell))
  return _clock(known) + (f" + {', '.join(untimed)} (not timed yet)" if untimed else "")


def run_grid(cells: list[Cell], workdir: str, printer=None) -> list[Cell]:
  """Runs every unfinished cell in order; returns the cells that failed."""
  printer = printer or (lambda line: print(line, flush=True))
  results = os.path.join(workdir, "results.jsonl")
  errors = os.path.join(workdir, "grid_errors.log")
  # Share of each cell's jobs still to run, for the ETA.
  left = {i: (c.method, len(missing_jobs(c, results)) / len(c.jobs()))
          for i, c in enumerate(cells)}
  took: dict[str, list[float]] = {}  # method -> seconds of a whole cell
  failed, finished, start = [], 0, time.time()
  for i, cell in enumerate(cells):
    tag = f"[grid {i + 1}/{len(cells)}] {cell.name}"
    missing = missing_jobs(cell, results)
    if not missing:
      finished += 1
      left.pop(i)
      printer(f"{tag}: skip (all {len(cell.jobs())} jobs have records)")
      continue
    printer(f"{tag}: {len(missing)} of {len(cell.jobs())} jobs to run | "
            f"elapsed {_clock(time.time() - start)}, ETA {_eta(left, took)}")
    t0, fraction = time.time(), len(missing) / len(cell.jobs())
    try:
      runner.run(cell.config, workdir,
                 progress=loop.Progress(printer=lambda line: printer(f"  {line}")))
    except Exception as e:  # pylint: disable=broad-except
      # One line here, the whole traceback in the log; the grid goes on with the others.
      failed.append(cell)
      os.makedirs(workdir, exist_ok=True)
      with open(errors, "a") as f:
        f.write(f"--- {datetime.datetime.now().isoformat(timespec='seconds')} {cell.name}\n")
        f.write(traceback.format_exc())
      message = (str(e).splitlines() or [""])[0]
      printer(f"{tag}: FAILED: {type(e).__name__}: {message} (traceback in {errors})")
    else:
      took.setdefault(cell.method, []).append((time.time() - t0) / fraction)
      finished += 1
      printer(f"{tag}: done in {_clock(time.time() - t0)} | {finished}/{len(cells)} cells "
              f"finished, elapsed {_clock(time.time() - start)}, "
              f"ETA {_eta({j: v for j, v in left.items() if j != i}, took)}")
    left.pop(i)
  return failed


class ArgumentParser(argparse.ArgumentParser):
  """Raises ValueError on bad flags, so each experiment's main() prints one line."""

  def error(self, message):
    raise ValueError(message)


def _parser() -> argparse.ArgumentParser:
  p = ArgumentParser(prog="python -m experiments.table1", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="Records, scores, splits, checkpoints.")
  p.add_argument("--datasets", default=",".join(data.datasets.names(in_paper=True)),
                 help="Comma list (default: Table 1's).")
  p.add_argument("--methods", default="all",
                 help=f"Comma list of {', '.join(methods_lib.NAMES)}, or all.")
  p.add_argument("--rhos", default="",
                 help=f"Comma list of rho (%%) for {', '.join(RHO_METHODS)}; "
                      "default: the preset's rho only (Table 1). Fig. 4: 5,10,20,30,40,50.")
  p.add_argument("--classes", default="all", help="Normal classes: all or a comma list.")
  p.add_argument("--seed", type=int, default=0, help="First seed.")
  p.add_argument("--num_seeds", type=int, default=5, help="Seeds per class (paper: 5).")
  p.add_argument("--preset", default=None,
                 help="paper, cpu or test; default: paper on an accelerator, else cpu.")
  p.add_argument("--data_dir", default=None, help="Where the datasets are.")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="Config override for every cell, e.g. --set=train.steps=200.")
  return p


def _floats(text: str, what: str) -> list[float]:
  try:
    return [float(t) for t in text.split(",") if t.strip()]
  except ValueError:
    raise ValueError(f"--{what} wants comma-separated numbers, got {text!r}") from None


def main(argv=None) -> int:
  try:
    distributed.maybe_initialize()  # Several hosts only; before any JAX backend starts.
    args = _parser().parse_args(argv)
    preset = args.preset or api.default_preset()
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if not datasets:
      raise ValueError("--datasets is empty")
    cells = make_cells(datasets=datasets, methods=args.methods,
                       rhos=_floats(args.rhos, "rhos"), preset=preset, classes=args.classes,
                       seed=args.seed, num_seeds=args.num_seeds, data_dir=args.data_dir,
                       overrides=args.set)
    check_data(datasets, args.data_dir)
  except (ValueError, data.DataError, distributed.InitError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  first = cells[0].config
  print(f"[grid] {len(cells)} cells ({', '.join(dict.fromkeys(c.dataset for c in cells))}; "
        f"{len(dict.fromkeys(c.method for c in cells))} methods; "
        f"rho {', '.join(f'{r:g}' for r in dict.fromkeys(c.rho for c in cells))}), each "
        f"{len(first.normal_classes)} classes x {len(first.seeds)} seeds; preset {preset}; "
        f"records in {os.path.join(args.workdir, 'results.jsonl')}", flush=True)
  try:
    with workdir_lib.lock(args.workdir):  # One run per work dir, as the CLI.
      failed = run_grid(cells, args.workdir)
  except workdir_lib.WorkdirBusy as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if failed:
    print(f"[grid] {len(failed)} of {len(cells)} cells failed: "
          f"{'; '.join(c.name for c in failed)}", file=sys.stderr)
    return 1
  print(f"[grid] all {len(cells)} cells have records; report: "
        f"python -m experiments.render --workdir={args.workdir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
