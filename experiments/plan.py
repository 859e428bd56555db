"""Compile-only planner: what a preset costs on N devices, before anyone rents them.

  python -m experiments.plan --preset=paper --dataset=cifar10 --jobs=50 --devices=8
  python -m experiments.plan --preset=cpu --dataset=mnist --jobs=10 --devices=1 --conv_impl=patches

Lowers and compiles the programs a real run compiles (`pipeline.make_programs`: the
autoencoder chunk, the classifier chunk, scoring), sharded as a real run shards them
(the job axis padded to a multiple of the devices and split over a `jobs` mesh; the
image pool and test images replicated), for `--devices` CPU host devices standing in
for accelerators (`--xla_force_host_platform_device_count`, set before JAX starts).
Nothing is trained and no data are read: inputs are shapes only.

Per device it prints parameter + optimiser-state bytes, XLA's argument / output / temp
bytes (`Compiled.memory_analysis()`) and FLOPs per step (`Compiled.cost_analysis()`).
Then the FLOPs of the whole Table 1 (3 datasets x 8 methods x 10 classes x 5 seeds at
the preset's step counts) and a PREDICTED wall time per target from its published peak
FLOP/s at an assumed utilisation (`--utilisation`), with a warning where a run of
`--jobs` jobs would not fit a target's memory and the job count that would.

What the figures are (BUILD_NOTES.md, "The planner"): XLA:CPU's analyses of the
programs an accelerator would run with `--conv_impl=xla` (lax.conv, its lowering off
CPU). FLOPs are the program's own (2 per multiply-add), independent of the backend;
memory is XLA:CPU's buffer assignment, which does not model a TPU's tiled layouts (minor
dimensions padded to 128 lanes) or a GPU's convolution workspaces. Treat both as
estimates for the accelerator, exact for this CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys

from dsplit_jax import methods as methods_lib  # the tables only (no JAX): XLA_FLAGS are set later
from dsplit_jax.data import datasets as datasets_lib

# Image shape, training images per class (largest class) and test images per dataset
# come from the datasets' table (`image_shape`, `class_counts`): shapes only, so the
# planner needs no data.
TABLE1_DATASETS = datasets_lib.names(in_paper=True)
TABLE1_CLASSES, TABLE1_SEEDS = 10, 5
NETWORK_METHODS = methods_lib.names(trains_classifier=True)  # train a classifier (pipeline)
AUTOENCODER_METHODS = methods_lib.names(needs_split=True)  # share one autoencoder per job
# Methods whose cost is not in the planned programs, and why (by their scorer).
EXCLUDED_METHODS = {m: methods_lib.SCORERS[methods_lib.get(m).scorer].not_planned
                    for m in methods_lib.NAMES
                    if methods_lib.SCORERS[methods_lib.get(m).scorer].not_planned}


@dataclasses.dataclass(frozen=True)
class Target:
  """An accelerator: devices JAX sees, memory per device, peak FLOP/s per device."""
  name: str
  devices: int
  memory_bytes: float
  peak_flops: float
  basis: str


GiB = 2 ** 30
# Published peaks (sources in BUILD_NOTES.md, "The planner"). Our programs are float32:
# on a GPU, XLA runs f32 matmuls and convolutions on TF32 tensor cores at JAX's default
# precision, so the H200's figure is dense TF32 (H100 SXM's 494.7 TFLOP/s; the H200 is
# the same GH100 compute with more memory); on a TPU, default precision multiplies f32
# in bf16 passes on the MXUs, so the figures are bf16 peaks.
TARGETS = (
    Target("H200 (1 GPU)", 1, 141e9, 494.7e12,
           "141 GB HBM3e; dense TF32 tensor-core peak 494.7 TFLOP/s"),
    Target("TPU v2-8 (Colab)", 8, 8 * GiB, 22.5e12,
           "8 cores (4 chips of 2); 8 GiB HBM per core; 45 TFLOP/s bf16 per chip"),
    Target("TPU v5e-8", 8, 16 * GiB, 197e12,
           "8 chips of 1 core; 16 GiB HBM per chip; 197 TFLOP/s bf16 per chip"),
)


def force_host_devices(count: int) -> None:
  """CPU host devices stand in for accelerators; must run before JAX initialises."""
  if "jax" in sys.modules:
    import jax  # pylint: disable=g-import-not-at-top
    if jax.device_count() != count or jax.default_backend() != "cpu":
      raise SystemExit(f"error: JAX is already initialised with {jax.device_count()} "
                       f"{jax.default_backend()} device(s); run the planner in a fresh process")
    return
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={count}"])
  os.environ["JAX_PLATFORMS"] = "cpu"


# --------------------------------------------------------------- compiled programs

def _sharded(shape, dtype, sharding):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)


def _cost(compiled) -> dict:
  cost = compiled.cost_analysis()  # jax 0.10: a dict (older: a list of one dict)
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return dict(cost or {})


def _memory(compiled) -> dict:
  stats = compiled.memory_analysis()  # jaxlib CompiledMemoryStats, per device
  out = {k: int(getattr(stats, f"{k}_size_in_bytes")) for k in
         ("argument", "output", "alias", "temp", "generated_code")}
  # Live at once at the peak: inputs, outputs not aliased to an input, temporaries.
  out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
  reported = int(getattr(stats, "peak_memory_in_bytes", 0) or 0)
  if reported:
    out["peak_reported"] = reported
  return out


def while_counts_trips() -> bool:
  """Whether this XLA's cost analysis multiplies a loop body by its trip count.

  XLA:CPU in jaxlib 0.10 counts a `while` body once; checked here rather than assumed,
  since a chunk of steps is a `lax.scan` and scoring is a `lax.map` over batches.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def flops(trips):
    def f(x):
      return jax.lax.scan(lambda c, _: (jnp.tanh(c @ c), None), x, None, length=trips)[0]
    return _cost(jax.jit(f).lower(jnp.ones((32, 32))).compile()).get("flops", 0.0)
  return flops(8) > 4 * flops(1)


def _job_layout(dataset: str, num_jobs: int):
  """(classes, train images of the largest class, pool size, test images) for
  `num_jobs` jobs laid out as a run lays them out: classes x seeds."""
  counts = datasets_lib.get(dataset).class_counts
  train_counts = counts["train"]
  classes = min(num_jobs, len(train_counts))
  return (classes, max(train_counts[:classes]), sum(train_counts[:classes]),
          sum(counts["test"]))


def plan_programs(config, dataset: str, num_jobs: int, methods=("dsplit",),
                  scoring: bool = True) -> dict:
  """Compiles the autoencoder chunk, each method's classifier chunk and scoring for
  `num_jobs` jobs on all devices; returns per-device figures of each program.

  Inputs are abstract (`jax.ShapeDtypeStruct` with the shardings `pipeline` gives the
  real arrays), so nothing is allocated or trained.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from dsplit_jax import pipeline, train  # pylint: disable=g-import-not-at-top

  image_shape = datasets_lib.get(dataset).image_shape
  n_dev = jax.device_count()
  axis = pipeline.JobAxis(num_jobs)  # the padding and mesh of a real run
  padded, mesh = axis.padded, axis.mesh
  jobs, shared = NamedSharding(mesh, P("jobs")), NamedSharding(mesh, P())
  _, n_max, pool_size, n_test = _job_layout(dataset, num_jobs)

  def per_job(shape, dtype):
    return _sharded((padded,) + tuple(shape), dtype, jobs)
  keys = per_job((2,), np.uint32)
  idx, count = per_job((n_max,), np.int32), per_job((), np.int32)
  pool = _sharded((pool_size,) + image_shape, np.float32, shared)
  start = _sharded((), np.int32, shared)

  def as_job_sharded(tree):
    return jax.tree.map(lambda x: _sharded(x.shape, x.dtype, jobs), tree)

  def state_bytes(tree):
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)) // n_dev

  def compiled_figures(fn, *args, state=None, steps=1, trips=1):
    compiled = fn.lower(*args).compile()
    cost = _cost(compiled)
    return dict(memory=_memory(compiled), flops=float(cost.get("flops", 0.0)),
                steps_in_program=steps, loop_trips=trips,
                state_bytes=state_bytes(state) if state is not None else 0)

  out = {}
  programs = pipeline.make_programs(config, image_shape)
  ae_init = programs.ae_init[config.ae.output_bias]
  ae_state = as_job_sharded(jax.eval_shape(ae_init, keys, idx, count, pool))
  out["autoencoder chunk"] = compiled_figures(
      programs.ae_chunk, ae_state, start, keys, idx, count, pool, state=ae_state,
      steps=config.ae.chunk_steps, trips=config.ae.chunk_steps)
  clf_state = as_job_sharded(jax.eval_shape(programs.clf_init, keys))
  split = train.Split(idx, count, idx, count)
  for method in methods:
    out[f"classifier chunk ({method})"] = compiled_figures(
        programs.clf_chunk(method), clf_state, start, keys, split, idx, count, pool,
        state=clf_state, steps=config.train.chunk_steps, trips=config.train.chunk_steps)
  if scoring:
    test = _sharded((n_test,) + image_shape, np.float32, shared)
    out["scoring (test split)"] = compiled_figures(
        programs.scores, clf_state.params, test, state=clf_state.params,
        trips=math.ceil(n_test / config.eval_batch_size))
  return out


def per_step(figures: dict, trips_counted: bool) -> float:
  """FLOPs per step of a chunk, or of a whole scoring pass, on one device."""
  if figures["steps_in_program"] > 1 or figures["loop_trips"] == 1:
    return figures["flops"] / figures["steps_in_program"] if trips_counted else figures["flops"]
  return figures["flops"] if trips_counted else figures["flops"] * figures["loop_trips"]


# ------------------------------------------------------------------------ report

def _gb(n: float) -> str:
  return f"{n / 1e9:.2f} GB"


def _duration(seconds: float) -> str:
  if seconds < 60:
    return f"{seconds:.1f} s"
  if seconds < 3600:
    return f"{seconds / 60:.1f} min"
  if seconds < 3 * 86400:
    return f"{seconds / 3600:.1f} h"
  return f"{seconds / 86400:.1f} days"


def memory_model(a: tuple, b: tuple) -> tuple[float, float]:
  """(fixed, per job) bytes per device through two (jobs per device, peak bytes) points."""
  (k1, m1), (k2, m2) = sorted([a, b])
  per_job = (m2 - m1) / (k2 - k1)
  return max(m1 - per_job * k1, 0.0), max(per_job, 0.0)


def table1_flops(config, figures_by_shape: dict, trips_counted: bool) -> dict:
  """FLOPs of the whole Table 1 by part, for 50 jobs per dataset (10 classes x 5 seeds).

  figures_by_shape: dataset -> (plan_programs(...), jobs per device it was compiled
  for); a job's FLOPs are the device's divided by its jobs (vmap is linear in jobs).
  """
  jobs = TABLE1_CLASSES * TABLE1_SEEDS
  parts = {}
  for dataset in TABLE1_DATASETS:
    figs, k = figures_by_shape[dataset]
    ae_step = per_step(figs["autoencoder chunk"], trips_counted) / k
    # One autoencoder per job, cached and shared by dsplit, nnwds and ssim (restarts of
    # stuck jobs, `ae.restarts`, would add up to that many times more; not counted).
    parts[f"{dataset}: autoencoders"] = jobs * config.ae.steps * ae_step
    for method in NETWORK_METHODS:
      step = per_step(figs[f"classifier chunk ({method})"], trips_counted) / k
      parts[f"{dataset}: {method} classifiers"] = jobs * config.train.steps * step
    scoring = per_step(figs["scoring (test split)"], trips_counted) / k
    _, n_max, _, n_test = _job_layout(dataset, TABLE1_CLASSES)
    # SSIM passes: forward of the autoencoder over the training images for each split
    # method and over the test split for `ssim`, priced at a third of a training step
    # per batch (forward ~ 1/3 of forward + backward); an estimate, not compiled.
    ae_forward_per_image = ae_step / 3 / config.ae.batch_size
    parts[f"{dataset}: scoring and SSIM passes"] = jobs * (
        len(NETWORK_METHODS) * scoring
        + ae_forward_per_image * (len(AUTOENCODER_METHODS) * n_max + n_test))
  return parts


def report(config, args, figures, model, parts, trips_counted) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  n_dev = jax.device_count()
  k = -(-args.jobs // n_dev)
  lines = [f"PLAN (compile only, nothing trained) preset={config.preset} "
           f"dataset={args.dataset} jobs={args.jobs} on {n_dev} device(s) "
           f"(CPU host devices standing in; {k} job(s) per device after padding to "
           f"{k * n_dev}); convolutions {config.model.conv_impl}, loop {config.loop}",
           f"steps: autoencoder {config.ae.steps} (chunks of {config.ae.chunk_steps}), "
           f"classifier {config.train.steps} (chunks of {config.train.chunk_steps}); "
           f"XLA cost analysis counts a loop body {'per trip' if trips_counted else 'once'}",
           "", "per device:",
           f"  {'program':34s} {'params+opt':>11s} {'arguments':>11s} {'outputs':>11s} "
           f"{'temp':>11s} {'peak':>11s} {'GFLOP/step':>11s}"]
  for name, f in figures.items():
    m = f["memory"]
    per_pass = " (per pass)" if name.startswith("scoring") else ""
    lines.append(f"  {name:34s} {_gb(f['state_bytes']):>11s} {_gb(m['argument']):>11s} "
                 f"{_gb(m['output']):>11s} {_gb(m['temp']):>11s} {_gb(m['peak']):>11s} "
                 f"{per_step(f, trips_counted) / 1e9:>11.4g}{per_pass}")
  lines.append("  peak = arguments + outputs - aliased + temp (XLA:CPU buffer assignment); "
               "a chunk's arguments hold the replicated image pool")
  total = sum(parts.values())
  jobs_t1 = TABLE1_CLASSES * TABLE1_SEEDS
  if parts:
    lines += ["", f"Table 1 ({len(TABLE1_DATASETS)} datasets x {len(methods_lib.NAMES)} methods "
              f"x {TABLE1_CLASSES} classes x {TABLE1_SEEDS} seeds = {jobs_t1} jobs per dataset "
              f"and method; autoencoder {config.ae.steps} + classifier {config.train.steps} "
              "steps):"]
    for name, flops in parts.items():
      lines.append(f"  {name:42s} {flops / 1e15:10.4g} PFLOP")
    lines.append(f"  {'total':42s} {total / 1e15:10.4g} PFLOP")
    lines.append("  excluded: " + "; ".join(f"{m} ({why})" for m, why in EXCLUDED_METHODS.items()))
  lines += ["", "PREDICTED wall time for the networks of Table 1 (total FLOPs / (devices x "
            "peak x utilisation), job slots padded to the device count; a prediction from "
            "published peaks, not a measurement), and memory for this run's jobs:"
            if parts else "Memory for this run's jobs per target:"]
  fixed, per_job = model
  targets = []
  for t in TARGETS:
    k_t = -(-jobs_t1 // t.devices)
    padded_total = total * k_t * t.devices / jobs_t1
    times = {u: padded_total / (t.devices * t.peak_flops * u) for u in args.utilisation}
    need = fixed + per_job * -(-args.jobs // t.devices)
    fits = need <= t.memory_bytes
    max_k = int((t.memory_bytes - fixed) // per_job) if per_job and t.memory_bytes > fixed else 0
    lines.append(f"  {t.name:18s} " + (", ".join(
        f"{_duration(s)} at {100 * u:g}%" for u, s in times.items()) if parts else "")
        + f"  [{t.basis}]")
    if not fits:
      lines.append(f"    WARNING: {args.jobs} jobs need ~{_gb(need)} per device "
                   f"(> {_gb(t.memory_bytes)}); at most {max_k * t.devices} jobs fit "
                   f"({max_k} per device): run the classes in groups (dsplit "
                   "--normal_class=0,1,..., experiments.table1 --classes=...)")
    else:
      lines.append(f"    memory: {args.jobs} jobs need ~{_gb(need)} per device of "
                   f"{_gb(t.memory_bytes)}; up to {max_k * t.devices} jobs would fit")
    targets.append(dict(name=t.name, seconds=times, memory_needed=need, fits=fits,
                        max_jobs=max_k * t.devices))
  lines.append(f"  memory model: ~{_gb(fixed)} fixed + {_gb(per_job)} per job per device "
               f"(largest program's peak at two job counts, a line through them; "
               "XLA:CPU's figures, see the module docstring)")
  print("\n".join(lines), flush=True)
  return dict(preset=config.preset, dataset=args.dataset, jobs=args.jobs, devices=n_dev,
              jobs_per_device=k, loop_trips_counted=trips_counted, programs=figures,
              table1_flops=parts, table1_total_flops=total,
              memory_model=dict(fixed=fixed, per_job=per_job), targets=targets)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", default="paper")
  p.add_argument("--dataset", default="cifar10", choices=TABLE1_DATASETS)
  p.add_argument("--jobs", type=int, default=TABLE1_CLASSES * TABLE1_SEEDS,
                 help="(class, seed) jobs in one run, as --normal_class x --num_seeds")
  p.add_argument("--devices", type=int, default=8, help="CPU host devices standing in")
  p.add_argument("--conv_impl", default="xla",
                 help="model.conv_impl to plan: xla (lax.conv, what accelerators run), or "
                      "patches (what this package runs on CPU)")
  p.add_argument("--utilisation", default="0.1,0.3",
                 help="assumed fractions of peak FLOP/s for the predicted times")
  p.add_argument("--set", action="append", default=[], help="config override, as dsplit's")
  p.add_argument("--no_table", action="store_true",
                 help="skip Table 1 (compiles the other image shape's programs)")
  p.add_argument("--json", default=None, help="also write the figures to this file")
  args = p.parse_args(argv)
  args.utilisation = [float(u) for u in args.utilisation.split(",")]
  if args.jobs < 1 or args.devices < 1:
    p.error("--jobs and --devices must be >= 1")
  force_host_devices(args.devices)

  import jax  # pylint: disable=g-import-not-at-top
  from dsplit_jax import cli  # pylint: disable=g-import-not-at-top
  config, _ = cli.config_from_flags(
      preset=args.preset, dataset=args.dataset, normal_class="0", method="dsplit", rho=None,
      seed=0, num_seeds=1, data_dir=None,
      # job_map=vmap: what "auto" picks on the accelerators planned for (CPU picks map).
      overrides=[f"model.conv_impl={args.conv_impl}", "loop=scan", "job_map=vmap"] + args.set)
  trips_counted = while_counts_trips()
  n_dev = jax.device_count()
  k = -(-args.jobs // n_dev)
  methods = ("dsplit",) if args.no_table else NETWORK_METHODS
  figures = plan_programs(config, args.dataset, args.jobs, methods=methods)
  # A second job count for the memory model (per-device memory is linear in jobs).
  k2 = 1 if k > 1 else 2
  second = plan_programs(config, args.dataset, k2 * n_dev, methods=("dsplit",))
  model = memory_model((k, max(f["memory"]["peak"] for f in figures.values())),
                       (k2, max(f["memory"]["peak"] for f in second.values())))
  parts = {}
  if not args.no_table:
    # FLOPs are linear in the jobs of a device: per job = per device / jobs per device.
    by_shape = {args.dataset: (figures, k)}
    for dataset in TABLE1_DATASETS:
      shape = datasets_lib.get(dataset).image_shape
      same = [d for d in by_shape if datasets_lib.get(d).image_shape == shape]
      by_shape[dataset] = (by_shape[same[0]] if same else
                           (plan_programs(config, dataset, n_dev, methods=NETWORK_METHODS), 1))
    parts = table1_flops(config, by_shape, trips_counted)
  out = report(config, args, figures, model, parts, trips_counted)
  out["second_job_count"] = dict(jobs=k2 * n_dev, jobs_per_device=k2, programs=second)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
  main()
