"""Capacity study: does the AUC of dsplit and nnwds grow with the
classifier's width and training steps, and does the gain of dsplit over nnwds?

  python -m experiments.study_capacity --stage=run --workdir=W      # the cells, resumable
  python -m experiments.study_capacity --stage=report --workdir=W   # table and figure

Each variant scales the preset's classifier: every convolution and dense width times
`width`, `train.steps` times `steps`. The splitting autoencoder is not touched, so all
variants of a (class, seed) share one cached autoencoder and one split, and each
dsplit - nnwds difference is a clean pair (BUILD_NOTES.md, "Results": the split alone
moves a class by up to 7 points). The cells are cells of the Table 1 grid
(`experiments.table1`): same work dir, records and resuming; x1 is Table 1's own cell.
The report reads records only, so it runs while a cell trains.
"""

from __future__ import annotations

import collections
import os
import sys

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from dsplit_jax import api
from dsplit_jax import configs
from dsplit_jax import workdir as workdir_lib
from experiments import study_distance
from experiments import table1

# (width factor, steps factor), cheapest first, so a study cut short has the
# informative cells. x4 width is the "if time allows", on one class.
VARIANTS = ((1, 1), (2, 1), (1, 2), (2, 2), (4, 1))
# Ours and the classifier without distance constraints, paired per job.
METHODS = ("dsplit", study_distance.BASELINE)
DATASET, CLASSES, WIDE_CLASSES = "fashion_mnist", (2, 4, 8), (8,)


def variant_name(width: int, steps: int) -> str:
  return f"width x{width}, steps x{steps}"


def overrides(preset: str, width: int, steps: int, extra=()) -> list[str]:
  """`--set` items scaling the preset's classifier (none for x1: Table 1's cell).

  `extra` (the study's own `--set` items) comes first and is what gets scaled, so
  `--set=train.steps=1000` makes steps x2 2000."""
  c = configs.override(configs.get_preset(preset), extra)
  out = list(extra)
  if width != 1:
    for key in ("conv_features", "dense_features"):
      scaled = ",".join(str(width * n) for n in c.model[key])
      out.append(f"model.{key}=({scaled},)")
  if steps != 1:
    out.append(f"train.steps={steps * c.train.steps}")
  return out


def cells(preset, data_dir, *, dataset=DATASET, classes=CLASSES, wide_classes=WIDE_CLASSES,
          variants=VARIANTS, num_seeds=1, extra=()):
  """(variant, table1.Cell) for every variant and method; x4 width on `wide_classes`."""
  out = []
  for width, steps in variants:
    chosen = wide_classes if width >= 4 else classes
    for method in METHODS:
      for cell in table1.make_cells(
          datasets=[dataset], methods=method, preset=preset,
          classes=",".join(map(str, chosen)), num_seeds=num_seeds, data_dir=data_dir,
          overrides=overrides(preset, width, steps, extra)):
        out.append(((width, steps), cell))
  return out


def summarize(by_cell: dict) -> list[dict]:
  """One row per variant: per (class, seed) dsplit, nnwds, their difference, and the
  classifier's wall time per job (the mean of the records' `wall_time_s`)."""
  rows = []
  for variant in sorted({v for v, _ in by_cell}, key=lambda v: (v[0] * v[1], v)):
    auc = {m: {(r["normal_class"], r["seed"]): 100 * r["auc"]
               for r in by_cell.get((variant, m), [])} for m in METHODS}
    ours, base = (auc[m] for m in METHODS)
    jobs = sorted(set(ours) | set(base))
    pairs = [j for j in jobs if j in ours and j in base]
    diffs = [ours[j] - base[j] for j in pairs]
    seconds = {m: [r["wall_time_s"] for r in by_cell.get((variant, m), [])
                   if r.get("wall_time_s") is not None] for m in METHODS}
    rows.append(dict(
        variant=variant, jobs=jobs, auc=auc, pairs=len(pairs),
        **{m: float(np.mean([auc[m][j] for j in pairs])) if pairs else None
           for m in METHODS},
        gain=float(np.mean(diffs)) if diffs else None,
        gain_se=(float(np.std(diffs, ddof=1) / np.sqrt(len(diffs)))
                 if len(diffs) > 1 else None),
        **{f"{m}_s_per_job": float(np.mean(seconds[m])) if seconds[m] else None
           for m in METHODS}))
  return rows


def _f(value, fmt=".2f"):
  return "-" if value is None else format(value, fmt)


def report_markdown(rows) -> str:
  jobs = sorted({j for r in rows for j in r["jobs"]})
  head = ["variant"] + [f"class {c} s{s}: dsplit / nnwds" for c, s in jobs] + [
      "mean dsplit", "mean nnwds", "dsplit - nnwds (SE, pairs)", "s per job dsplit / nnwds"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    per_job = [" / ".join(_f(r["auc"][m].get(j)) for m in METHODS) for j in jobs]
    gain = (f"{r['gain']:+.2f} ({_f(r['gain_se'])}, {r['pairs']})"
            if r["gain"] is not None else "-")
    secs = " / ".join(_f(r[f"{m}_s_per_job"], ".0f") for m in METHODS)
    lines.append("| " + " | ".join([variant_name(*r["variant"]), *per_job,
                                    *(_f(r[m]) for m in METHODS), gain, secs]) + " |")
  lines.append("\nMeans and differences over the (class, seed) pairs that have both "
               "methods; a variant's classes differ where it ran on fewer (x4 width).")
  return "\n".join(lines) + "\n"


def write_figure(rows, png: str) -> None:
  """AUC against the classifier's cost (width^2 x steps, x1 = 1) for both methods, and
  the paired gain: whether more capacity helps, and whom."""
  fig = Figure(figsize=(10, 4))
  FigureCanvasAgg(fig)
  ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  for r in rows:
    w, s = r["variant"]
    cost = w * w * s
    for m, color in zip(METHODS, ("C0", "C1")):
      for (c, _), a in r["auc"][m].items():
        ax.plot(cost, a, ".", color=color, alpha=0.4)
      if r[m] is not None:
        ax.plot(cost, r[m], "o", color=color, ms=7)
        ax.annotate(variant_name(w, s), (cost, r[m]), fontsize=6)
    if r["gain"] is not None:
      bx.errorbar(cost, r["gain"], yerr=r["gain_se"] or 0, fmt="o", color="C2", capsize=3)
      bx.annotate(variant_name(w, s), (cost, r["gain"]), fontsize=6)
  for m, color in zip(METHODS, ("C0", "C1")):
    ax.plot([], [], "o", color=color, label=f"{m} (mean; dots: jobs)")
  ax.set(xscale="log", xlabel="classifier cost (width² x steps, x1 = 1)", ylabel="AUC (%)")
  ax.legend(fontsize=7)
  bx.axhline(0, color="k", lw=0.5)
  bx.set(xscale="log", xlabel="classifier cost", ylabel="dsplit − nnwds (AUC points, ± SE)")
  fig.tight_layout()
  fig.savefig(png, dpi=130)


def report(study_cells, workdir) -> str:
  by_variant = study_distance.cell_records(
      [((variant, cell.method), cell) for variant, cell in study_cells],
      os.path.join(workdir, "results.jsonl"))
  rows = summarize(by_variant)
  if not any(r["jobs"] for r in rows):
    return "no records yet\n"
  text = report_markdown(rows)
  out = os.path.join(workdir, "report")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "study_capacity.md"), "w") as f:
    f.write(text)
  png = os.path.join(out, "study_capacity.png")
  write_figure(rows, png)
  return text + f"\nfigure: {png}\n"


def _parser():
  p = table1.ArgumentParser(prog="python -m experiments.study_capacity", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--stage", default="run", choices=("run", "report"))
  p.add_argument("--dataset", default=DATASET)
  p.add_argument("--classes", default=",".join(map(str, CLASSES)))
  p.add_argument("--wide_classes", default=",".join(map(str, WIDE_CLASSES)),
                 help="Classes of the x4-width cells (the costliest).")
  p.add_argument("--num_seeds", type=int, default=1)
  p.add_argument("--preset", default=None, help="Default: paper on an accelerator, else cpu.")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="Config override for every cell before the variant's scaling, as "
                      "experiments.table1's (e.g. --set=ae.steps=750).")
  return p


def _ints(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(c) for c in text.split(",") if c.strip())
  except ValueError:
    raise ValueError(f"classes must be a comma list of integers, got {text!r}") from None


def main(argv=None) -> int:
  try:
    args = _parser().parse_args(argv)
    study_cells = cells(args.preset or api.default_preset(), args.data_dir,
                        dataset=args.dataset, classes=_ints(args.classes),
                        wide_classes=_ints(args.wide_classes), num_seeds=args.num_seeds,
                        extra=args.set)
    if args.stage == "run":
      table1.check_data([args.dataset], args.data_dir)
  except Exception as e:  # pylint: disable=broad-except
    if not isinstance(e, ValueError) and type(e).__name__ != "DataError":
      raise
    print(f"error: {e}", file=sys.stderr)
    return 2
  failed = []
  if args.stage == "run":
    try:
      with workdir_lib.lock(args.workdir):  # One run per work dir, as the CLI and the grid.
        failed = table1.run_grid([c for _, c in study_cells], args.workdir)
    except workdir_lib.WorkdirBusy as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
  print(report(study_cells, args.workdir))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
