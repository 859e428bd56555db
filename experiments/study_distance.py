"""The distance-head study: which distance subnetwork makes the paper's constraints work.

  python -m experiments.study_distance --stage=screen --workdir=W     # seed 0, 8 classes
  python -m experiments.study_distance --stage=seeds --heads=H1,H2 --workdir=W
  python -m experiments.study_distance --stage=report --workdir=W

screen: every distance head (models.DISTANCE_HEADS) with neighbour pairs, `nnwds` beside
them, on the classes where the paper's gain of Ours over NNwDS is largest (MNIST 2, 4, 5,
8; Fashion-MNIST trouser, pullover, coat, bag), seed 0; then the best symmetric head
with all pairs of a batch. seeds: the given heads, `nnwds` and `naive_nn` on every class
of MNIST and Fashion-MNIST, 3 seeds. Both are cells of the Table 1 grid
(`experiments.table1`): the same work dir, records and resuming, so a killed study
continues with the same command and Table 1 reuses its cells. Each stage ends with the
report: per dataset and variant the mean AUC (mean over classes per seed, then mean
+- std over seeds), the paired difference dsplit - nnwds over (class, seed) with its
standard error, and the last saved closeness and dispersion losses (mean and worst job).
"""

from __future__ import annotations

import collections
import math
import os
import sys

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from dsplit_jax import api
from dsplit_jax import configs
from dsplit_jax import methods
from dsplit_jax import models
from dsplit_jax import records
from dsplit_jax import workdir as workdir_lib
from experiments import table1

SCREEN_CLASSES = {"mnist": (2, 4, 5, 8), "fashion_mnist": (1, 2, 4, 8)}
# Screening order: symmetric heads first, the paper's literal head (measured at log 2
# in every earlier run) last, so that a study cut short has the informative cells.
SCREEN_HEADS = ("abs_difference", "metric_normalized", "squared_difference", "metric",
                "paper_literal")
SYMMETRIC_HEADS = tuple(h for h in models.DISTANCE_HEADS if h != "paper_literal")
LOG2 = math.log(2.0)
# The variant every dsplit variant is compared with, and the ablations run beside them:
# the classifiers without a distance head (nnwds first).
BASELINE = "nnwds"
ABLATIONS = tuple(sorted(methods.names(trains_classifier=True, uses_distance_head=False),
                         key=lambda m: m != BASELINE))


def variant_name(method: str, head: str | None = None, pairs: str = "neighbours",
                 latent: str = "dense") -> str:
  if not methods.get(method).uses_distance_head:
    return method
  return (f"dsplit/{head}" + ("/conv_z" if latent == "conv" else "")
          + ("/all_pairs" if pairs == "all" else ""))


def _cells(datasets, classes, method, *, head=None, pairs="neighbours", latent="dense",
           num_seeds=1, preset, data_dir, extra=()):
  """`extra`: `--set` items for every cell (e.g. an earlier preset's autoencoder budget),
  applied before the variant's own."""
  cells = []
  for dataset in datasets:
    overrides = list(extra)
    if head is not None:
      overrides += [f"model.distance_head={head}", f"train.pairs={pairs}"]
      if latent != "dense":
        overrides.append(f"model.latent={latent}")
    chosen = classes[dataset] if isinstance(classes, dict) else classes
    text = chosen if isinstance(chosen, str) else ",".join(map(str, chosen))
    for cell in table1.make_cells(datasets=[dataset], methods=method, preset=preset,
                                  classes=text, num_seeds=num_seeds, data_dir=data_dir,
                                  overrides=overrides):
      cells.append((variant_name(method, head, pairs, latent), cell))
  return cells


def screen_cells(preset, data_dir, heads=SCREEN_HEADS, all_pairs_head=None, latent="dense",
                 extra=()):
  datasets = list(SCREEN_CLASSES)
  cells = _cells(datasets, SCREEN_CLASSES, BASELINE, preset=preset, data_dir=data_dir,
                 extra=extra)
  for head in heads:
    cells += _cells(datasets, SCREEN_CLASSES, "dsplit", head=head, latent=latent,
                    preset=preset, data_dir=data_dir, extra=extra)
  if all_pairs_head:
    cells += _cells(datasets, SCREEN_CLASSES, "dsplit", head=all_pairs_head, pairs="all",
                    preset=preset, data_dir=data_dir, extra=extra)
  return cells


def seed_cells(heads, preset, data_dir, num_seeds=3, pairs="neighbours", latent="dense",
               extra=()):
  datasets = list(SCREEN_CLASSES)
  cells = []
  for head in heads:
    cells += _cells(datasets, "all", "dsplit", head=head, pairs=pairs, latent=latent,
                    num_seeds=num_seeds, preset=preset, data_dir=data_dir, extra=extra)
  for method in ABLATIONS:
    cells += _cells(datasets, "all", method, num_seeds=num_seeds, preset=preset,
                    data_dir=data_dir, extra=extra)
  return cells


def cell_records(cells, results: str) -> dict[str, list[dict]]:
  """variant -> records of exactly those cells' configs and jobs."""
  out = collections.defaultdict(list)
  for variant, cell in cells:
    jobs = cell.jobs()
    for r in records.read_records(results, dataset=cell.dataset, method=cell.method,
                                  rho=cell.rho, config_hash=configs.config_hash(cell.config)):
      if (r["normal_class"], r["seed"]) in jobs:
        out[variant].append(r)
  return out


def best_head(by_variant: dict[str, list[dict]], heads=SYMMETRIC_HEADS) -> str | None:
  """The symmetric head with the highest mean AUC over the screened jobs it has."""
  means = {h: np.mean([r["auc"] for r in by_variant[variant_name("dsplit", h)]])
           for h in heads if by_variant.get(variant_name("dsplit", h))}
  return max(means, key=means.get) if means else None


def summarize(by_variant: dict[str, list[dict]]) -> list[dict]:
  """One row per (dataset, variant): AUC over seeds, paired gain over nnwds, losses."""
  rows = []
  for variant, recs in by_variant.items():
    for dataset in sorted({r["dataset"] for r in recs}):
      mine = {(r["normal_class"], r["seed"]): r for r in recs if r["dataset"] == dataset}
      by_seed = collections.defaultdict(list)
      for (_, seed), r in mine.items():
        by_seed[seed].append(100 * r["auc"])
      seed_means = [np.mean(v) for _, v in sorted(by_seed.items())]
      row = dict(dataset=dataset, variant=variant, jobs=len(mine),
                 classes=len({c for c, _ in mine}), seeds=len(by_seed),
                 mean=float(np.mean(seed_means)),
                 std=float(np.std(seed_means, ddof=1)) if len(seed_means) > 1 else None)
      base = {(r["normal_class"], r["seed"]): r for r in by_variant.get(BASELINE, [])
              if r["dataset"] == dataset}
      diffs = [100 * (mine[k]["auc"] - base[k]["auc"]) for k in mine if k in base]
      if variant != BASELINE and diffs:
        row["gain"] = float(np.mean(diffs))
        row["gain_se"] = (float(np.std(diffs, ddof=1) / math.sqrt(len(diffs)))
                          if len(diffs) > 1 else None)
        row["pairs"] = len(diffs)
      for loss in ("closeness", "dispersion"):
        final = [r.get("final_losses", {}).get(loss) for r in mine.values()]
        final = [v for v in final if v is not None]
        if final:
          row[f"{loss}_mean"], row[f"{loss}_max"] = float(np.mean(final)), float(np.max(final))
      rows.append(row)
  return sorted(rows, key=lambda r: (r["dataset"], r["variant"] != BASELINE, r["variant"]))


def _fmt(value, digits=1):
  return "-" if value is None else f"{value:.{digits}f}"


def report_markdown(rows) -> str:
  lines = ["| dataset | variant | jobs (classes x seeds) | AUC mean | std over seeds | "
           "dsplit - nnwds (SE, pairs) | closeness last (mean / worst) | "
           "dispersion last (mean / worst) |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    gain = (f"{r['gain']:+.2f} ({_fmt(r.get('gain_se'), 2)}, {r['pairs']})"
            if "gain" in r else "")
    losses = [f"{_fmt(r.get(f'{k}_mean'), 3)} / {_fmt(r.get(f'{k}_max'), 3)}"
              if f"{k}_mean" in r else "" for k in ("closeness", "dispersion")]
    lines.append(f"| {r['dataset']} | {r['variant']} | {r['jobs']} ({r['classes']} x "
                 f"{r['seeds']}) | {r['mean']:.2f} | {_fmt(r['std'], 2)} | {gain} | "
                 f"{losses[0]} | {losses[1]} |")
  lines.append(f"\nlog 2 = {LOG2:.4f}: a pair loss that stays there does nothing.")
  return "\n".join(lines) + "\n"


def write_figure(by_variant: dict[str, list[dict]], png: str) -> None:
  """Per dataset: each variant's AUC per class (mean over seeds), and its mean, so a
  gain that comes from one class shows as such."""
  datasets = sorted({r["dataset"] for recs in by_variant.values() for r in recs})
  variants = sorted(by_variant, key=lambda v: (v != BASELINE, v not in ABLATIONS, v))
  fig = Figure(figsize=(6 * len(datasets), 4))
  FigureCanvasAgg(fig)
  for k, dataset in enumerate(datasets):
    ax = fig.add_subplot(1, len(datasets), k + 1)
    classes = sorted({r["normal_class"] for recs in by_variant.values() for r in recs
                      if r["dataset"] == dataset})
    for v, variant in enumerate(variants):
      per_class = collections.defaultdict(list)
      for r in by_variant[variant]:
        if r["dataset"] == dataset:
          per_class[r["normal_class"]].append(100 * r["auc"])
      if not per_class:
        continue
      xs = [classes.index(c) + 0.8 * (v / max(len(variants) - 1, 1) - 0.5) * 0.8
            for c in sorted(per_class)]
      ys = [np.mean(per_class[c]) for c in sorted(per_class)]
      mean = np.mean(ys)
      ax.plot(xs, ys, "o", ms=4, color=f"C{v}", label=f"{variant} ({mean:.1f})")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes])
    ax.set(title=dataset, xlabel="normal class", ylabel="AUC (%)")
    ax.grid(axis="y", lw=0.3)
    ax.legend(fontsize=6, title="variant (mean AUC)", title_fontsize=6)
  fig.tight_layout()
  fig.savefig(png, dpi=130)


def report(cells, workdir, name="study_distance") -> str:
  by_variant = cell_records(cells, os.path.join(workdir, "results.jsonl"))
  rows = summarize(by_variant)
  text = report_markdown(rows) if rows else "no records yet\n"
  out = os.path.join(workdir, "report")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f"{name}.md"), "w") as f:
    f.write(text)
  if rows:
    write_figure(by_variant, os.path.join(out, f"{name}.png"))
    text += f"\nfigure: {os.path.join(out, name + '.png')}\n"
  return text


def _parser():
  p = table1.ArgumentParser(prog="python -m experiments.study_distance", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--stage", default="screen", choices=("screen", "seeds", "report"))
  p.add_argument("--heads", default="",
                 help="Comma list of distance heads: the seeds stage's (the best two of "
                      "the screen); for the screen, a subset (default: all, literal last).")
  p.add_argument("--pairs", default="neighbours", help="seeds stage: neighbours or all.")
  p.add_argument("--latent", default="dense", choices=models.LATENTS,
                 help="Where the distance head reads z (model.latent) in every dsplit "
                      "cell of the stage; with conv the screen skips its all-pairs step.")
  p.add_argument("--num_seeds", type=int, default=3)
  p.add_argument("--preset", default=None, help="Default: paper on an accelerator, else cpu.")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="Config override for every cell, as experiments.table1's (e.g. "
                      "ae.steps=750 for a 750-step splitting autoencoder).")
  return p


def main(argv=None) -> int:
  try:
    args = _parser().parse_args(argv)
    preset = args.preset or api.default_preset()
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    bad = [h for h in heads if h not in models.DISTANCE_HEADS]
    if bad:
      raise ValueError(f"unknown distance head(s) {', '.join(bad)}; choose from "
                       f"{', '.join(models.DISTANCE_HEADS)}")
    if args.stage == "seeds" and not heads:
      raise ValueError("--stage=seeds needs --heads (the best two of the screening)")
    screen = screen_cells(preset, args.data_dir,
                          heads=heads if args.stage == "screen" and heads else SCREEN_HEADS,
                          latent=args.latent, extra=args.set)
    seeds = (seed_cells(heads, preset, args.data_dir, args.num_seeds, args.pairs, args.latent,
                        extra=args.set)
             if args.stage == "seeds" else [])
    table1.check_data(list(SCREEN_CLASSES), args.data_dir)
  except Exception as e:  # pylint: disable=broad-except
    if not isinstance(e, (ValueError,)) and type(e).__name__ != "DataError":
      raise
    print(f"error: {e}", file=sys.stderr)
    return 2
  try:
    with workdir_lib.lock(args.workdir):  # One run per work dir, as the CLI and the grid.
      results = os.path.join(args.workdir, "results.jsonl")
      failed = []
      if args.stage == "screen":
        failed += table1.run_grid([c for _, c in screen], args.workdir)
        head = best_head(cell_records(screen, results)) if args.latent == "dense" else None
        if head:
          print(f"[study] best symmetric head on the screen: {head}; now with all pairs",
                flush=True)
          extra = screen_cells(preset, args.data_dir, heads=(), all_pairs_head=head,
                               extra=args.set)
          extra = [c for c in extra if c[0] != BASELINE]
          failed += table1.run_grid([c for _, c in extra], args.workdir)
          screen += extra
        print(report(screen, args.workdir, "study_distance_screen"))
      elif args.stage == "seeds":
        failed += table1.run_grid([c for _, c in seeds], args.workdir)
        print(report(seeds, args.workdir, "study_distance_seeds"))
      else:
        head = best_head(cell_records(screen, results))
        if head:
          screen += [c for c in screen_cells(preset, args.data_dir, heads=(), all_pairs_head=head,
                                             extra=args.set)
                     if c[0] != BASELINE]
        print("## screen\n" + report(screen, args.workdir, "study_distance_screen"))
        if heads:
          print("## seeds\n" + report(seed_cells(heads, preset, args.data_dir, args.num_seeds,
                                                 args.pairs, args.latent, extra=args.set),
                                      args.workdir,
                                      "study_distance_seeds"))
  except workdir_lib.WorkdirBusy as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
