"""Table 1, Fig. 4, Fig. 1 and ROC curves from a work dir, beside the paper's numbers.

  python -m experiments.render --workdir=W [--out=W/report] [--preset=cpu] \
      [--figure1=all|none|mnist:0,...] [--roc=all|none|mnist:0,...] [--data_dir=D] \
      [--loss_curves=all|none]

Nothing is trained. Table 1 and Fig. 4 come from W/results.jsonl, ROC curves from
W/scores/*.npz, Fig. 1 from W/splits/*.npz plus the dataset's training images, loss
curves from W/runs/*/loss_curves.jsonl (one figure per run: a panel per loss, a line
per job, log 2 marked: a pair loss that stays there does nothing). Where
a cell was run with several configs (e.g. after a --set change), only the records of
its latest config are used. Figures are drawn on matplotlib's Agg canvas.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import sys

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
import skimage.util
import sklearn.metrics

from dsplit_jax import curves
from dsplit_jax import data
from dsplit_jax import methods as methods_lib
from dsplit_jax import paper
from dsplit_jax import protocols
from dsplit_jax import records

class RenderError(Exception):
  """Missing or ambiguous inputs; printed as one line."""


# ------------------------------------------------------------------------ inputs

def protocol_of(record: dict) -> str:
  """A record's evaluation protocol (records that do not name one: the default)."""
  return record.get("protocol", protocols.DEFAULT)


def protocols_in(workdir: str) -> list[str]:
  """The evaluation protocols of a work dir's records, the default first."""
  found = {protocol_of(r) for r in records.read_records(os.path.join(workdir, "results.jsonl"))}
  return [p for p in protocols.PROTOCOLS if p in found]


def load_records(workdir: str, preset: str | None = None,
                 protocol: str = protocols.DEFAULT) -> list[dict]:
  """Records of one preset and one evaluation protocol, each cell reduced to its latest
  config. Numbers of different protocols never share a table."""
  path = os.path.join(workdir, "results.jsonl")
  recs = records.read_records(path)
  if any(protocol_of(r) == protocol for r in recs):
    recs = [r for r in recs if protocol_of(r) == protocol]
  if not recs:
    raise RenderError(f"no records in {path}; run python -m experiments.table1 "
                      f"--workdir={workdir} first")
  presets = sorted({str(r.get("preset")) for r in recs})
  if preset:
    recs = [r for r in recs if r.get("preset") == preset]
    if not recs:
      raise RenderError(f"no records of preset {preset!r} in {path} (it has {', '.join(presets)})")
  elif len(presets) > 1:
    raise RenderError(f"{path} mixes presets {', '.join(presets)}; pass --preset=one of them")
  return latest_config(recs)


def default_config_hash(preset, dataset, method, rho) -> str | None:
  """The config hash a plain grid cell of this preset gets (no --set overrides)."""
  from dsplit_jax import configs  # pylint: disable=g-import-not-at-top
  try:
    config = configs.get_preset(str(preset))
  except ValueError:
    return None
  config.dataset, config.method, config.rho = dataset, method, float(rho)
  return configs.config_hash(config)


def latest_config(recs: list[dict]) -> list[dict]:
  """Keeps one config per (dataset, method, rho): the preset's default config where it
  has records (so a study's variants, e.g. other distance heads in the same work dir,
  never replace the default in Table 1), else the config logged last."""
  latest = {}
  for r in recs:  # File order is logging order.
    latest[(r["dataset"], r["method"], r["rho"])] = r.get("config_hash")
  hashes = {r.get("config_hash") for r in recs}
  # Whether a cell's kept config is the preset's current default (None: unknown preset),
  # so that Table 1 can mark the columns an older preset or a study's variant fills.
  current = {}
  for key in latest:
    default = default_config_hash(recs[0].get("preset"), *key)
    if default in hashes and any(r.get("config_hash") == default for r in recs
                                 if (r["dataset"], r["method"], r["rho"]) == key):
      latest[key] = default
    current[key] = None if default is None else latest[key] == default
  kept = [dict(r, config_current=current[(r["dataset"], r["method"], r["rho"])])
          for r in recs if r.get("config_hash") == latest[(r["dataset"], r["method"], r["rho"])]]
  if len(kept) < len(recs):
    print(f"note: {len(recs) - len(kept)} records of older configs ignored (a cell was "
          "rerun with other settings, or a study's variants; Table 1 uses the preset's "
          "default config where it has records, else the latest)")
  return kept


def _class_name(dataset, cls):
  ref = [r for r in paper.table1() if (r["dataset"], r["normal_class"]) == (dataset, cls)]
  if ref:
    return ref[0]["class_name"]
  try:
    return data.class_names(dataset)[cls]
  except (ValueError, IndexError, data.DataError):
    return str(cls)


def _method_order(methods):
  return sorted(set(methods), key=lambda m: (paper.METHODS.index(m) if m in paper.METHODS
                                             else len(paper.METHODS), m))


def _dataset_order(dataset):
  return (paper.DATASETS.index(dataset) if dataset in paper.DATASETS else len(paper.DATASETS),
          dataset)


def _best(values: dict[str, float]) -> set[str]:
  """Methods with the row's highest value as printed (one decimal), so ties share it."""
  shown = {m: round(v, 1) for m, v in values.items() if v is not None}
  top = max(shown.values(), default=None)
  return {m for m, v in shown.items() if v == top}


# ----------------------------------------------------------------------- Table 1

SUMMARY_ROWS = ("mean", "mad")  # table1_rows' per-dataset rows after the classes


def table1_rows(recs: list[dict], rho: float = paper.RHO) -> tuple[list[dict], list[str]]:
  """Rows per (dataset, class), then per dataset a mean row and a row of the mean
  absolute difference to the paper over the classes (large errors of opposite sign
  cancel in the mean, not here); values in %."""
  summary = records.summarize([r for r in recs if r["rho"] == rho],
                              keys=("dataset", "normal_class", "method"))
  methods = _method_order(s["method"] for s in summary)
  stale = {(r["dataset"], r["method"]) for r in recs
           if r["rho"] == rho and r.get("config_current") is False}
  ours = collections.defaultdict(dict)
  for s in summary:
    ours[(s["dataset"], s["normal_class"])][s["method"]] = s
  rows = []
  for dataset, cls in sorted(ours, key=lambda k: (_dataset_order(k[0]), k[1])):
    cells = {}
    for m in methods:
      s = ours[(dataset, cls)].get(m)
      ref, ref_std = paper.lookup(dataset, cls, m) or (None, None)
      mean = None if s is None else 100 * s["mean"]
      cells[m] = {"mean": mean, "std": None if s is None else 100 * s["std"],
                  "n": 0 if s is None else s["n"], "paper": ref, "paper_std": ref_std,
                  "diff": None if mean is None or ref is None else mean - ref,
                  "stale": (dataset, m) in stale}
    # The paper's bold is over all eight of its columns, shown here or not.
    refs = {m: paper.lookup(dataset, cls, m) for m in paper.METHODS}
    rows.append(_with_best({"dataset": dataset, "normal_class": cls,
                            "class_name": _class_name(dataset, cls), "cells": cells},
                           {m: v[0] for m, v in refs.items() if v}))
  grouped = []
  for dataset in dict.fromkeys(r["dataset"] for r in rows):
    of = [r for r in rows if r["dataset"] == dataset]
    grouped += of
    cells = {}
    for m in methods:
      have = [r["cells"][m] for r in of if r["cells"][m]["mean"] is not None]
      # The paper's mean over the same classes as ours, so the difference is like for like.
      refs = [c["paper"] for c in have if c["paper"] is not None]
      mean = np.mean([c["mean"] for c in have]) if have else None
      ref = np.mean(refs) if refs and len(refs) == len(have) else None
      cells[m] = {"mean": mean, "std": None, "n": len(have), "paper": ref, "paper_std": None,
                  "diff": None if mean is None or ref is None else mean - ref,
                  "stale": any(c["stale"] for c in have)}
    # Each dataset's summary rows follow its own classes.
    grouped.append(_with_best({"dataset": dataset, "normal_class": "mean", "classes": len(of),
                               "class_name": f"mean ({len(of)} classes)", "cells": cells},
                              {m: c["paper"] for m, c in cells.items()}))
    mad = {}
    for m in methods:
      diffs = [abs(r["cells"][m]["diff"]) for r in of if r["cells"][m]["diff"] is not None]
      mad[m] = {"mean": float(np.mean(diffs)) if diffs else None, "std": None,
                "n": len(diffs), "paper": None, "paper_std": None, "diff": None}
    grouped.append({"dataset": dataset, "normal_class": "mad",
                    "class_name": "mean abs(ours − paper)", "cells": mad, "best": set(),
                    "paper_best": set()})
  return grouped, methods


def _with_best(row, paper_values):
  row["best"] = _best({m: c["mean"] for m, c in row["cells"].items()})
  row["paper_best"] = _best(paper_values)
  return row


def _num(value, bold=False, digits=1):
  if value is None:
    return "–"
  text = f"{value:.{digits}f}"
  return f"**{text}**" if bold else text


def table1_markdown(rows, methods, rho=paper.RHO, preset=None,
                    protocol=protocols.DEFAULT) -> str:
  seeds = sorted({c["n"] for r in rows if r["normal_class"] not in SUMMARY_ROWS
                  for c in r["cells"].values() if c["n"]})
  flags = {c["stale"] for r in rows if r["normal_class"] not in SUMMARY_ROWS
           for c in r["cells"].values() if c["n"]}
  mixed = flags >= {True, False}  # some columns at the preset's current config, some not
  none_current = flags == {True}
  lines = [
      f"# Table 1: AUC (%), rho = {rho:g}; {protocols.LABELS[protocol]}",
      "",
      *([] if protocol == protocols.DEFAULT else [
          "Protocol `authors_selection`: each job's checkpoint is chosen by its AUC on the "
          "first share (`eval.selection_fraction`, 30 % by default) of the test normals "
          "and anomalies, and the AUC on the other images is shown. This is selection with test labels, as the authors' program reports; "
          "it is not comparable with the final-model tables.", ""]),
      "Each cell: ours, mean ± std over seeds / the paper's value (ours − paper). "
      "**Bold**: best of the row, ours and the paper's marked separately (the paper's "
      "over all eight of its methods). Bottom rows: mean over the classes shown "
      "(the paper's over the same classes), and the mean absolute difference to the "
      "paper over the classes with both values. "
      f"Preset: {preset or 'unknown'}"
      + (" (no column at its current config: records of an older preset or a study's "
         "variant)" if none_current else "") + ". "
      + (f"Seeds per cell: {'-'.join(map(str, (seeds[0], seeds[-1]) if len(seeds) > 1 else seeds))}")
      + (" (cells with fewer seeds than the most say so as [n=k])." if len(seeds) > 1 else ".")
      + (" †: not the preset's current config (records of an older preset or a study's "
         "variant; the current config has none for this column yet)." if mixed else ""),
      "",
      "| dataset | class | "
      + " | ".join(paper.PAPER_METHOD_NAMES.get(m, m) for m in methods) + " |",
      "|---|---|" + "---|" * len(methods),
  ]
  for r in rows:
    out = []
    for m in methods:
      c = r["cells"][m]
      text = _num(c["mean"], m in r["best"])
      if c["std"] is not None:
        text += f" ± {c['std']:.1f}"
      if r["normal_class"] not in SUMMARY_ROWS and c["n"] and len(seeds) > 1 and c["n"] < seeds[-1]:
        text += f" [n={c['n']}]"
      if r["normal_class"] == "mean" and c["n"] and c["n"] < r["classes"]:
        text += f" [{c['n']} classes]"  # a column with fewer classes than the row's label
      if mixed and c.get("stale") and c["n"]:
        text += " †"
      if c["paper"] is not None:
        text += f" / {_num(c['paper'], m in r['paper_best'])}"
        if c["diff"] is not None:
          text += f" ({c['diff']:+.1f})"
      out.append(text)
    label = (r["class_name"] if r["normal_class"] in SUMMARY_ROWS
             else f"{r['normal_class']} {r['class_name']}")
    lines.append(f"| {r['dataset']} | {label} | " + " | ".join(out) + " |")
  return "\n".join(lines) + "\n"


def autoencoder_line(recs, rho=paper.RHO) -> str:
  """One line under Table 1: did any split come from a stuck autoencoder? Records of
  the split methods carry the final plateau ratio of their job's autoencoder
  (reconstruction MSE over the mean image's; above the config's `ae.plateau_ratio`,
  1, it is stuck: BUILD_NOTES.md, "The method"); records without `ae_plateau_ratio`
  are counted as not recording it."""
  ratio, limit, total = {}, {}, set()
  for r in recs:
    if r.get("rho") != rho or not methods_lib.get(r["method"]).needs_split:
      continue
    job = (r["dataset"], r["normal_class"], r["seed"])
    total.add(job)
    if r.get("ae_plateau_ratio") is not None:
      ratio[job] = r["ae_plateau_ratio"]
      limit[job] = r.get("config", {}).get("ae", {}).get("plateau_ratio", 1.0)
  if not total:
    return ""
  text = (f"Splitting autoencoders: {len(ratio)} of {len(total)} jobs record their "
          "plateau ratio (the others' records have no `ae_plateau_ratio`)")
  if not ratio:
    return text + ".\n"
  worst = max(ratio, key=ratio.get)
  stuck = sorted(j for j in ratio if ratio[j] > limit[j])
  text += (f"; the largest is {ratio[worst]:.2f} ({worst[0]} class {worst[1]} seed "
           f"{worst[2]}); ")
  text += (f"**{len(stuck)} stuck** (ratio above the limit): "
           + ", ".join(f"{d} {c} s{s}" for d, c, s in stuck) if stuck
           else "none is stuck (all below the limit, 1)")
  return text + ".\n"


def write_table1_csv(rows, methods, path):
  fields = ["dataset", "normal_class", "class_name"]
  for m in methods:
    fields += [m, f"{m}_std", f"{m}_n", f"{m}_paper", f"{m}_paper_std", f"{m}_diff"]
  fields += ["best", "paper_best"]
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fields)
    w.writeheader()
    for r in rows:
      out = {k: r[k] for k in ("dataset", "normal_class", "class_name")}
      for m in methods:
        c = r["cells"][m]
        for key, field in (("mean", m), ("std", f"{m}_std"), ("n", f"{m}_n"),
                           ("paper", f"{m}_paper"), ("paper_std", f"{m}_paper_std"),
                           ("diff", f"{m}_diff")):
          out[field] = "" if c[key] is None else (c[key] if key == "n" else round(float(c[key]), 3))
      out["best"] = ";".join(_method_order(r["best"]))
      out["paper_best"] = ";".join(_method_order(r["paper_best"]))
      w.writerow(out)


# ---------------------------------------------------------------------- Figure 4

def figure4_rows(recs: list[dict], method: str = "dsplit") -> list[dict]:
  """Per (dataset, rho): AUC (%) averaged over classes of the per-class seed means."""
  summary = records.summarize([r for r in recs if r["method"] == method],
                              keys=("dataset", "rho", "normal_class"))
  groups = collections.defaultdict(list)
  for s in summary:
    groups[(s["dataset"], s["rho"])].append(s)
  ref = paper.figure4()
  rows = []
  for (dataset, rho), of in sorted(groups.items(), key=lambda kv: (_dataset_order(kv[0][0]),
                                                                   kv[0][1])):
    rows.append({"dataset": dataset, "rho": rho,
                 "auc": 100 * float(np.mean([s["mean"] for s in of])),
                 "n_classes": len(of), "min_seeds": min(s["n"] for s in of),
                 "paper": (ref[dataset]["auc"] if dataset in ref and rho == ref[dataset]["rho"]
                           else None)})
  return rows


def write_figure4(rows, png, csv_path):
  with open(csv_path, "w", newline="") as f:
    w = csv.DictWriter(f, ["dataset", "rho", "auc", "n_classes", "min_seeds", "paper"])
    w.writeheader()
    for r in rows:
      w.writerow({**r, "auc": round(r["auc"], 3),
                  "paper": "" if r["paper"] is None else round(r["paper"], 3)})
  fig = Figure(figsize=(5, 3.6))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  ref = paper.figure4()
  for k, dataset in enumerate(dict.fromkeys(r["dataset"] for r in rows)):
    of = [r for r in rows if r["dataset"] == dataset]
    aucs = [r["auc"] for r in of]
    label = dataset + (f" (std over ρ: {np.std(aucs):.2f})" if len(of) > 1 else "")
    ax.plot([r["rho"] for r in of], aucs, "o-", color=f"C{k}", label=label)
    if dataset in ref:
      ax.plot(ref[dataset]["rho"], ref[dataset]["auc"], "*", mfc="none", ms=12, color=f"C{k}",
              label=f"{dataset}, paper Table 1")
  low, high = paper.FIGURE4_RHO_RANGE
  ax.set(xlabel="ρ (%)", ylabel="AUC (%), mean over classes",
         title=f"Fig. 4: AUC over ρ (ours)\npaper: std < {paper.FIGURE4_MAX_STD:g} over "
               f"ρ = {low:g}–{high:g}, no values printed")
  ax.title.set_fontsize(9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(png, dpi=150)


# ---------------------------------------------------------------------- Figure 1

def available_splits(workdir, recs) -> dict[tuple[str, int], list[int]]:
  """(dataset, class) -> seeds whose split the records' jobs saved."""
  out = collections.defaultdict(set)
  for r in recs:
    if methods_lib.get(r["method"]).needs_split and records.split_file(workdir, r):
      out[(r["dataset"], r["normal_class"])].add(r["seed"])
  return {k: sorted(v) for k, v in sorted(out.items())}


def write_figure1(workdir, dataset, cls, seed, train_images, png, count=32, rho=paper.RHO):
  """The `count` highest- and lowest-SSIM training images of the class, side by side."""
  ssim, index = records.load_split(records.split_path(workdir, dataset, cls, seed))
  order = np.argsort(ssim, kind="stable")
  count = min(count, len(order) // 2)
  cols = min(8, count)
  rows = -(-count // cols)
  fig = Figure(figsize=(0.9 * cols + 0.5, 0.45 * rows + 1.1), layout="constrained")
  FigureCanvasAgg(fig)
  panels = (("(a) most typical", order[::-1][:count]), ("(b) most atypical", order[:count]))
  for k, (title, chosen) in enumerate(panels):
    images = train_images[index[chosen]]
    color = images.shape[-1] == 3
    # A colour montage wants one fill value per channel (a scalar fails in skimage 0.26).
    grid = skimage.util.montage(images if color else images[..., 0],
                                fill=(255, 255, 255) if color else 255, padding_width=2,
                                grid_shape=(rows, cols), channel_axis=-1 if color else None)
    ax = fig.add_subplot(1, 2, k + 1)
    ax.imshow(grid, cmap=None if color else "gray", vmin=0, vmax=255)
    ax.set_axis_off()
    ax.set_title(f"{title}\nSSIM {ssim[chosen].min():.3f}–{ssim[chosen].max():.3f}", fontsize=9)
  fig.suptitle(f"Fig. 1: {dataset} class {cls} ({_class_name(dataset, cls)}), seed {seed}; "
               f"the {rho:g}% lowest SSIM of {len(ssim)} are atypical", fontsize=9)
  fig.savefig(png, dpi=150)


# -------------------------------------------------------------------------- ROC

def available_scores(workdir, recs, rho=paper.RHO) -> dict[tuple[str, int], dict[str, list[str]]]:
  """(dataset, class) -> method -> the records' score files at `rho`, by seed."""
  out = collections.defaultdict(lambda: collections.defaultdict(list))
  for r in sorted(recs, key=lambda r: r["seed"]):
    path = records.scores_file(workdir, r) if r["rho"] == rho else None
    if path:
      out[(r["dataset"], r["normal_class"])][r["method"]].append(path)
  return {k: dict(v) for k, v in sorted(out.items())}


def write_roc(dataset, cls, files: dict[str, list[str]], png, rho=paper.RHO):
  """One colour per method, one line per seed; the legend gives AUC mean ± std."""
  fig = Figure(figsize=(5, 5))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for k, method in enumerate(_method_order(files)):
    rocs = []
    for path in sorted(files[method]):
      f = np.load(path)
      rocs.append(sklearn.metrics.roc_curve(f["labels"], f["scores"])[:2])
    aucs = [100 * sklearn.metrics.auc(fpr, tpr) for fpr, tpr in rocs]
    label = (f"{paper.PAPER_METHOD_NAMES.get(method, method)}: {np.mean(aucs):.1f} ± "
             f"{np.std(aucs):.1f} ({len(aucs)} seed{'s' * (len(aucs) > 1)})")
    for j, (fpr, tpr) in enumerate(rocs):
      ax.plot(fpr, tpr, color=f"C{k}", lw=1, alpha=0.8 if j == 0 else 0.4,
              label=None if j else label)
  ax.plot([0, 1], [0, 1], "k:", lw=0.8)
  ax.set(xlabel="false positive rate", ylabel="true positive rate (abnormal = positive)",
         title=f"ROC: {dataset} class {cls} ({_class_name(dataset, cls)}), ρ = {rho:g}",
         xlim=(0, 1), ylim=(0, 1.01))
  ax.legend(fontsize=7, loc="lower right", title="AUC (%)", title_fontsize=7)
  fig.tight_layout()
  fig.savefig(png, dpi=150)


# ----------------------------------------------------------------- loss curves

def _run_config(run_dir) -> dict:
  """The run's saved config fields (`records.RUN_CONFIG_FILE`), {} when unreadable."""
  try:
    with open(os.path.join(run_dir, records.RUN_CONFIG_FILE)) as f:
      saved = json.load(f)
  except (OSError, ValueError):
    return {}
  return saved if isinstance(saved, dict) else {}


def run_title(run_dir, phase: str) -> str:
  """A loss figure's title: dataset, method, rho and preset of the run, read from its
  config; the folder's name only when the run has no readable config."""
  cfg = _run_config(run_dir)
  if not {"dataset", "method"} <= set(cfg):
    return f"{phase}: {os.path.basename(run_dir)}"
  parts = [f"{phase} losses: {cfg['dataset']}", str(cfg["method"])]
  if methods_lib.METHODS.get(cfg["method"]) and methods_lib.get(cfg["method"]).uses_rho:
    parts.append(f"ρ = {float(cfg['rho']):g}")
  if cfg.get("preset"):
    parts.append(f"preset {cfg['preset']}")
  return ", ".join(parts)


def job_label(dataset, job: str) -> str:
  """'c3s1' -> '3 (Cat), seed 1' with the dataset's class names; other names as given."""
  match = re.fullmatch(r"c(\d+)s(\d+)", job)
  if not match or not dataset:
    return job
  cls, seed = map(int, match.groups())
  return f"{cls} ({_class_name(dataset, cls)}), seed {seed}"


def write_loss_curves(run_dir, png) -> bool:
  """One panel per loss of the run's classifier phase, one line per job; False if empty."""
  by_phase = curves.read_curves(run_dir)
  if not by_phase:
    return False
  dataset = _run_config(run_dir).get("dataset")
  phase = next(iter(by_phase))
  jobs = by_phase[phase]
  metrics = list(dict.fromkeys(m for job in jobs.values() for m in job))
  fig = Figure(figsize=(4 * len(metrics), 3.4))
  FigureCanvasAgg(fig)
  for k, metric in enumerate(metrics):
    ax = fig.add_subplot(1, len(metrics), k + 1)
    for j, (job, by_metric) in enumerate(sorted(jobs.items())):
      if metric in by_metric:
        steps, values = zip(*by_metric[metric])
        ax.plot(steps, values, lw=1, color=f"C{j % 10}", label=job_label(dataset, job))
    ax.axhline(np.log(2), color="k", ls=":", lw=0.8, label="log 2")
    ax.set(title=metric, xlabel="step", ylim=(0, None))
    if k == 0:
      ax.set_ylabel("loss (mean over 25 steps)")
      ax.legend(fontsize=6, ncol=2)
  fig.suptitle(run_title(run_dir, phase), fontsize=8)
  fig.tight_layout()
  fig.savefig(png, dpi=120)
  return True


# ------------------------------------------------------------ AUC over training

def write_auc_curves(recs: list[dict], png) -> None:
  """One panel per method: each job's test AUC over the scored checkpoints (the whole
  test split), with the step the authors' selection chose marked where it was used."""
  by_method = collections.defaultdict(list)
  for r in recs:
    if r.get("auc_curve"):
      by_method[r["method"]].append(r)
  names = _method_order(by_method)
  fig = Figure(figsize=(4.2 * len(names), 3.4))
  FigureCanvasAgg(fig)
  for k, m in enumerate(names):
    ax = fig.add_subplot(1, len(names), k + 1, sharey=fig.axes[0] if k else None)
    for r in sorted(by_method[m], key=lambda r: (r["normal_class"], r["seed"])):
      steps = [p[0] for p in r["auc_curve"]]
      aucs = [100 * p[1] for p in r["auc_curve"]]
      color = f"C{r['normal_class'] % 10}"
      ax.plot(steps, aucs, lw=0.9, color=color,
              label=f"{_class_name(r['dataset'], r['normal_class'])}" if r["seed"] == min(
                  q["seed"] for q in by_method[m]) else None)
      if "selected_step" in r:
        ax.plot([r["selected_step"]], [aucs[steps.index(r["selected_step"])]], "o",
                ms=3, color=color)
    ax.set(title=paper.PAPER_METHOD_NAMES.get(m, m), xlabel="training step")
    if k == 0:
      ax.set_ylabel("test AUC (%), whole test split")
      ax.legend(fontsize=6, ncol=2)
  protocol = protocol_of(recs[0])
  fig.suptitle(f"{recs[0]['dataset']}: AUC over training"
               + ("; dots: the checkpoint selected with test labels"
                  if protocol != protocols.DEFAULT else ""), fontsize=8)
  fig.tight_layout()
  fig.savefig(png, dpi=120)


# ------------------------------------------------------------------------- main

def _pairs(text: str, available) -> list[tuple[str, int]]:
  """'all', 'none' or 'mnist:0,cifar10:3' -> (dataset, class) pairs."""
  if text == "all":
    return list(available)
  if text == "none":
    return []
  out = []
  for item in text.split(","):
    dataset, _, cls = item.strip().partition(":")
    if not cls.isdigit():
      raise RenderError(f"want dataset:class (e.g. mnist:0), all or none; got {item!r}")
    out.append((dataset, int(cls)))
  return out


class _Parser(argparse.ArgumentParser):

  def error(self, message):
    raise RenderError(message)


def _parser():
  p = _Parser(prog="python -m experiments.render", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="The grid's work dir.")
  p.add_argument("--out", default=None, help="Output folder; default WORKDIR/report.")
  p.add_argument("--preset", default=None, help="Use only records of this preset.")
  p.add_argument("--rho", type=float, default=paper.RHO, help="rho of Table 1 and the ROCs.")
  p.add_argument("--figure1", default="all", help="all, none or dataset:class,...")
  p.add_argument("--figure1_images", type=int, default=32, help="Images per panel.")
  p.add_argument("--roc", default="all", help="all, none or dataset:class,...")
  p.add_argument("--data_dir", default=None,
                 help="Datasets for Fig. 1; default: the records' data_dir.")
  p.add_argument("--loss_curves", default="all", choices=("all", "none"),
                 help="Loss curves of every run in W/runs.")
  return p


def render(args) -> list[str]:
  """Writes every output it has inputs for; returns their paths."""
  if args.figure1_images < 1:
    raise RenderError(f"--figure1_images must be >= 1, got {args.figure1_images}")
  recs = load_records(args.workdir, args.preset)
  out = args.out or os.path.join(args.workdir, "report")
  os.makedirs(out, exist_ok=True)
  written = []

  for protocol in protocols_in(args.workdir) or [protocols.DEFAULT]:
    of = recs if protocol == protocols.DEFAULT else load_records(
        args.workdir, args.preset, protocol)
    rows, methods = table1_rows(of, args.rho)
    tail = "" if protocol == protocols.DEFAULT else f"_{protocol}"
    if rows:
      md = os.path.join(out, f"table1{tail}.md")
      table_csv = os.path.join(out, f"table1{tail}.csv")
      with open(md, "w") as f:
        f.write(table1_markdown(rows, methods, args.rho,
                                preset=of[0].get("preset") if of else None, protocol=protocol))
        f.write("\n" + autoencoder_line(of, args.rho))
      write_table1_csv(rows, methods, table_csv)
      written += [md, table_csv]
    else:
      print(f"Table 1 ({protocol}): no records at rho={args.rho:g}")
    for dataset in sorted({r["dataset"] for r in of if r.get("auc_curve")}, key=_dataset_order):
      path = os.path.join(out, f"auc_curves_{dataset}{tail}.png")
      write_auc_curves([r for r in of if r["dataset"] == dataset], path)
      written.append(path)

  fig4 = figure4_rows(recs)
  if fig4:
    paths = os.path.join(out, "figure4.png"), os.path.join(out, "figure4.csv")
    write_figure4(fig4, *paths)
    written += paths
  else:
    print("Fig. 4: no dsplit records")

  splits = available_splits(args.workdir, recs)
  wanted = _pairs(args.figure1, splits)
  if not splits and args.figure1 != "none":
    print(f"Fig. 1: no splits in {os.path.join(args.workdir, 'splits')} "
          f"(written by {', '.join(methods_lib.names(needs_split=True))})")
  images = {}
  data_dirs = {r["dataset"]: r.get("config", {}).get("data_dir") or None for r in recs}
  for dataset, cls in wanted:
    if (dataset, cls) not in splits:
      print(f"Fig. 1: no split for {dataset} class {cls} in {args.workdir}/splits")
      continue
    if dataset not in images:
      try:
        images[dataset] = data.load(dataset, "train", args.data_dir or data_dirs.get(dataset))[0]
      except (data.DataError, ValueError) as e:
        images[dataset] = None
        print(f"Fig. 1: cannot read {dataset} training images ({e}); pass --data_dir")
    if images[dataset] is not None:
      path = os.path.join(out, f"figure1_{dataset}_c{cls}.png")
      write_figure1(args.workdir, dataset, cls, splits[(dataset, cls)][0], images[dataset], path,
                    count=args.figure1_images, rho=args.rho)
      written.append(path)

  scores = available_scores(args.workdir, recs, args.rho)
  wanted = _pairs(args.roc, scores)
  if not scores and args.roc != "none":
    print(f"ROC: no score files at rho={args.rho:g} in {os.path.join(args.workdir, 'scores')}")
  for dataset, cls in wanted:
    if (dataset, cls) not in scores:
      print(f"ROC: no scores for {dataset} class {cls} at rho={args.rho:g}")
      continue
    path = os.path.join(out, f"roc_{dataset}_c{cls}.png")
    write_roc(dataset, cls, scores[(dataset, cls)], path, rho=args.rho)
    written.append(path)

  if args.loss_curves == "all":
    for run_dir in curves.run_dirs_with_curves(args.workdir):
      path = os.path.join(out, f"losses_{os.path.basename(run_dir)}.png")
      if write_loss_curves(run_dir, path):
        written.append(path)
  return written


def main(argv=None) -> int:
  try:
    written = render(_parser().parse_args(argv))
  except RenderError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  for path in written:
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
