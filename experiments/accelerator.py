"""One device call, end to end: wheels, data, calibration, as much of the list as fits.

  python -m experiments.accelerator --out=$OUT --workdir=/tmp/dsplit_work --budget_s=540 \
      --wheels=accel_data/wheels --cifar10_tar=accel_data/cifar10-jpeg.tar.gz \
      --mnist_dir=accel_data/mnist --fashion_mnist_dir=accel_data/fashion_mnist
  python -m experiments.accelerator --out=R --tiny --datasets=mnist --classes=0 \
      --mnist_dir=$DSPLIT_DATA_DIR/mnist                                   # CPU rehearsal

Steps, each logged with timestamps to OUT/accelerator.log and kept in OUT/summary.json
(rewritten after every step, so a killed call still brings back what it did):
  (a) with --wheels, an offline pip install of the carried wheels; then the JAX devices
      and the versions of the packages a run imports;
  (b) the data folder, WORKDIR/data: the MNIST and Fashion-MNIST folders linked in and
      CIFAR-10 converted once from its JPEG tarball (`dsplit_jax.data.cifar_jpeg`);
  (c) calibration, once per preset and dataset: steps/s of the autoencoder chunk and of
      each method's classifier chunk on the item's real jobs, compile time apart, and
      FLOPs per step from the compiled programs' cost analysis (`experiments.plan`);
      --calibrate_s (60 s) is shared by the first items' datasets;
  (d) the items, in order (`items`): Fashion-MNIST and CIFAR-10 at the paper preset,
      seed 0, dsplit and nnwds (nnwds reuses the autoencoders dsplit trained: the cache
      is keyed by `configs.autoencoder_hash`); the authors preset on CIFAR-10 under
      `eval.protocol=full_test_last` and `authors_selection`; CIFAR-10 at the cpu preset
      with 4x classifier steps (`train.steps=3000`); then seeds 1, 2, ... Before an item
      runs, a [plan] line gives its FLOPs, the planner's time at the target's published
      peak (10% and 30% utilisation) and the calibration's time; an item predicted not
      to fit the time left is skipped with a [skip] line. After each cell, its wall time
      and each phase's (from the progress lines) go beside the prediction; what the
      steps do not explain (data, SSIM passes, scoring, saves) is kept and added to
      later predictions of the same preset and dataset.

Resuming: the same command with the same --out and --workdir skips calibrations it has
and cells with records (the grid's own skipping; a half-done cell resumes from its
checkpoints); compiled programs persist in WORKDIR/jax_cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

# The method table is plain Python (no JAX, nothing to install first).
from dsplit_jax import methods

LOG, SUMMARY, RESULTS = "accelerator.log", "summary.json", "results.jsonl"
# Packages the run imports, for the environment report (a missing one fails here, once).
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "ml_collections",
            "dm_pix", "numpy", "clu")
# The method and its ablation: the classifiers trained on the split's labels.
METHODS = methods.names(labels_from_split=True)
# Seconds kept back from --budget_s for the summary and the last writes.
RESERVE_S = 15.0


class Log:
  """Timestamped lines to the console and to OUT/accelerator.log (appended: resumable)."""

  def __init__(self, path):
    self.path, self.start = path, time.time()

  def __call__(self, line: str):
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    text = f"{stamp} +{time.time() - self.start:7.1f}s {line}"
    print(text, flush=True)
    with open(self.path, "a") as f:
      f.write(text + "\n")


def _write_json(path, obj):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, default=float)
  os.replace(tmp, path)


# ------------------------------------------------------------------ (a) environment

def environment() -> dict:
  import importlib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  versions = {}
  for name in PACKAGES:
    try:
      module = importlib.import_module(name)
      versions[name] = getattr(module, "__version__", "?")
    except ImportError as e:
      versions[name] = f"MISSING ({e})"
  return dict(python=platform.python_version(), backend=jax.default_backend(),
              device_count=jax.device_count(),
              devices=[f"{d.platform}:{d.device_kind}" for d in jax.devices()],
              versions=versions, xla_flags=os.environ.get("XLA_FLAGS", ""))


# ------------------------------------------------------------------ wheels, data

def install_wheels(directory, log) -> None:
  """pip-installs every wheel in `directory`, offline (a device has no network)."""
  wheels = sorted(os.path.join(directory, f) for f in os.listdir(directory)
                  if f.endswith(".whl"))
  if not wheels:
    raise SystemExit(f"error: no .whl files in --wheels={directory}")
  t0 = time.time()
  done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--quiet",
                         f"--find-links={directory}"] + wheels, capture_output=True, text=True)
  if done.returncode:
    raise SystemExit(f"error: pip install from {directory} failed: "
                     + (done.stderr.strip().splitlines() or ["?"])[-1])
  log(f"[wheels] {len(wheels)} wheel(s) installed from {directory} in {time.time() - t0:.1f}s")


def prepare_data(args, log) -> str | None:
  """The data folder to read: --data_dir as it is, or WORKDIR/data built from the
  carried files (MNIST and Fashion-MNIST folders linked in, CIFAR-10 converted from its
  JPEG tarball once by `dsplit_jax.data.cifar_jpeg`)."""
  given = {"mnist": args.mnist_dir, "fashion_mnist": args.fashion_mnist_dir}
  if not args.cifar10_tar and not any(given.values()):
    return args.data_dir
  from dsplit_jax.data import cifar_jpeg  # pylint: disable=g-import-not-at-top
  built = os.path.join(args.workdir, "data")
  os.makedirs(built, exist_ok=True)
  for name, folder in given.items():
    link = os.path.join(built, name)
    if folder and not os.path.lexists(link):
      os.symlink(os.path.abspath(folder), link)
  if args.data_dir:  # anything else the run may need, from --data_dir
    for name in os.listdir(args.data_dir):
      link = os.path.join(built, name)
      if not os.path.lexists(link) and not (name == "cifar10" and args.cifar10_tar):
        os.symlink(os.path.abspath(os.path.join(args.data_dir, name)), link)
  if args.cifar10_tar:
    meta = os.path.join(built, "cifar10", "cifar-10-batches-bin", "batches.meta.txt")
    if os.path.exists(meta):
      log(f"[data] CIFAR-10 already converted: {os.path.dirname(meta)}")
    else:
      t0 = time.time()
      dest = cifar_jpeg.convert(args.cifar10_tar, built)
      log(f"[data] CIFAR-10 converted from {args.cifar10_tar} in {time.time() - t0:.1f}s: "
          f"{dest}")
  return built


# --------------------------------------------------------------- configs, items

@dataclasses.dataclass(frozen=True)
class Item:
  """One entry of the ordered list: a dataset's classes at a preset, for some methods."""
  name: str
  dataset: str
  preset: str
  methods: tuple
  seed: int
  overrides: tuple = ()


def items(args) -> list[Item]:
  """The ordered list: seed 0 of every dataset at the main preset; the authors preset
  on CIFAR-10 under both protocols; the cpu preset with 4x classifier steps; more seeds.
  --tiny keeps the order with the test preset on the given datasets."""
  main, methods = args.preset, tuple(args.methods)
  authors, cpu = ("test", "test") if args.tiny else ("authors", "cpu")
  last = "cifar10" if "cifar10" in args.datasets else args.datasets[-1]
  steps4 = 4 * (20 if args.tiny else 750)  # test: 20 classifier steps; cpu: 750
  out = [Item(f"{d} {main} seed {args.seed}", d, main, methods, args.seed)
         for d in args.datasets]
  out += [Item(f"{last} {authors} {p} seed {args.seed}", last, authors, ("dsplit",),
               args.seed, (f"eval.protocol={p}",))
          for p in ("full_test_last", "authors_selection")]
  out.append(Item(f"{last} {cpu} train.steps={steps4} seed {args.seed}", last, cpu,
                  methods, args.seed, (f"train.steps={steps4}",)))
  out += [Item(f"{d} {main} seed {s}", d, main, methods, s)
          for s in range(args.seed + 1, args.seed + args.max_seeds) for d in args.datasets]
  return out


def item_cells(args, item: Item):
  from experiments import table1  # pylint: disable=g-import-not-at-top
  return table1.make_cells(datasets=[item.dataset], methods=",".join(item.methods),
                           preset=item.preset, classes=args.classes, seed=item.seed,
                           num_seeds=1, data_dir=args.data_dir_used,
                           overrides=list(args.set) + list(item.overrides))


# ----------------------------------------------------------------- (b) calibration

def _time_calls(run, state, seconds, steps):
  """(compile-or-first-call s, steps/s) of `run(state) -> (state, metrics)` called
  until `seconds` have passed after the first call (at least 2 timed calls)."""
  import jax  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  state, metrics = run(state)
  jax.block_until_ready((state, metrics))
  first = time.time() - t0
  calls, t1 = 0, time.time()
  while calls < 2 or time.time() - t1 < seconds:
    state, metrics = run(state)
    jax.block_until_ready((state, metrics))
    calls += 1
  return first, calls * steps / (time.time() - t1), calls


def calibrate(config, methods, seconds, log) -> dict:
  """Steps/s and FLOPs per step of the autoencoder chunk and each method's classifier
  chunk for the jobs of `config`, on its real images; chunks of `steps` steps (shorter
  than a run's, so that many are timed); the state is the programs' own initialisation."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dsplit_jax import data, pipeline, train  # pylint: disable=g-import-not-at-top
  from experiments import plan  # pylint: disable=g-import-not-at-top

  steps = min(int(config.ae.chunk_steps), int(config.train.chunk_steps), 25)
  c = config.copy_and_resolve_references()
  c.ae.chunk_steps = c.train.chunk_steps = steps
  jobs_data = data.load_jobs(c)
  programs = pipeline.make_programs(c, jobs_data.pool.shape[1:])
  axis = pipeline.JobAxis(len(jobs_data.keys))
  keys = np.asarray(jobs_data.keys)
  step_keys, idx, count = axis.put((keys, jobs_data.train_idx, jobs_data.train_count))
  pool = axis.replicate(jobs_data.pool)
  start = np.int32(0)
  trips_counted = plan.while_counts_trips()
  share = seconds / (1 + len(methods))
  out = dict(chunk_steps=steps, jobs=len(keys), devices=jax.device_count(),
             image_shape=list(jobs_data.pool.shape[1:]), loop=programs.mode,
             job_map=programs.job_map, phases={})

  def measure(name, chunk, state, *args):
    compile_s, flops = None, None
    if hasattr(chunk, "lower"):  # scan mode: one compiled program per chunk
      t0 = time.time()
      compiled = chunk.lower(state, start, *args).compile()
      compile_s = time.time() - t0
      cost = plan._cost(compiled)  # pylint: disable=protected-access
      if cost.get("flops"):
        per_device = plan.per_step(dict(flops=float(cost["flops"]), steps_in_program=steps,
                                        loop_trips=steps), trips_counted)
        flops = per_device * jax.device_count() / len(keys)  # per job and step
      chunk = compiled
    first_s, rate, calls = _time_calls(lambda s: chunk(s, start, *args), state, share, steps)
    out["phases"][name] = dict(steps_per_s=rate, compile_s=compile_s, first_call_s=first_s,
                               timed_calls=calls, flops_per_job_step=flops)
    log(f"[calibrate] {name}: {rate:.2f} steps/s ({len(keys)} jobs, chunks of {steps}, "
        f"{calls} timed); compile {compile_s if compile_s is None else round(compile_s, 1)}s, "
        f"first call {first_s:.1f}s; "
        + (f"{flops / 1e9:.4g} GFLOP per job and step" if flops else "no FLOP count"))

  ae_init = programs.ae_init[c.ae.output_bias]
  measure("autoencoder", programs.ae_chunk, ae_init(step_keys, idx, count, pool),
          step_keys, idx, count, pool)
  split = train.Split(idx, count, idx, count)  # the shapes of a split; timing only
  for method in methods:
    measure(method, programs.clf_chunk(method), programs.clf_init(step_keys),
            step_keys, split, idx, count, pool)
  return out


def calibration_key(args, item: Item) -> str:
  """Calibrations are per preset and dataset: step rates do not depend on step counts
  or the protocol, which are all an item's own overrides change."""
  return f"{item.preset} {item.dataset} classes={args.classes} {' '.join(args.set)}".strip()


# ----------------------------------------------------------------- (c) prediction

def predict_cell(cal: dict, config, method: str, ae_cached: bool) -> float:
  """Seconds of one cell from the calibration: its phases' steps at the measured rates,
  each program's compile time, the overhead an earlier cell of the same calibration
  showed (data, SSIM passes, scoring, saves), and 10% more."""
  ph = cal["phases"]
  seconds = config.train.steps / ph[method]["steps_per_s"] + (ph[method]["compile_s"] or 0)
  seconds += cal.get("overhead_s", {}).get(method, 0.0)
  if not ae_cached:
    seconds += config.ae.steps / ph["autoencoder"]["steps_per_s"]
    seconds += ph["autoencoder"]["compile_s"] or 0
  return 1.1 * seconds


def cell_flops(cal: dict, config, method: str, ae_trained: bool, jobs: int):
  ph = cal["phases"]
  if ph[method]["flops_per_job_step"] is None:
    return None
  flops = ph[method]["flops_per_job_step"] * config.train.steps
  if ae_trained:
    if ph["autoencoder"]["flops_per_job_step"] is None:
      return None
    flops += ph["autoencoder"]["flops_per_job_step"] * config.ae.steps
  return flops * jobs


def planner_target(env: dict):
  """The planner's target for this device (same chip family), else None."""
  from experiments import plan  # pylint: disable=g-import-not-at-top
  kind = env["devices"][0].upper() if env["devices"] else ""
  if "H100" in kind or "H200" in kind:
    return plan.TARGETS[0]  # H200: the H100's GH100 compute and TF32 peak
  return None


def ae_cached(workdir, config) -> bool:
  """Whether every job of `config` has a saved autoencoder (so a cell trains none)."""
  from dsplit_jax import configs, records  # pylint: disable=g-import-not-at-top
  from dsplit_jax.data import datasets  # pylint: disable=g-import-not-at-top
  shape = datasets.get(config.dataset).image_shape
  ae_dir = records.autoencoder_dir(workdir, config.dataset, configs.autoencoder_hash(config),
                                   shape)
  return all(os.path.exists(records.autoencoder_path(ae_dir, c, s))
             for c in config.normal_classes for s in config.seeds)


# ------------------------------------------------------------------------ main

def _parser():
  p = argparse.ArgumentParser(prog="python -m experiments.accelerator",
                              description=__doc__.split("\n")[0])
  p.add_argument("--out", default=os.environ.get("OUT"),
                 help="log, summary.json, results.jsonl (default: $OUT)")
  p.add_argument("--workdir", default=None,
                 help="the grid's work dir (default OUT/work; on a device call point it "
                      "outside $OUT, which comes back whole)")
  p.add_argument("--budget_s", type=float, default=480.0,
                 help="wall seconds this call may take, calibration included")
  p.add_argument("--calibrate_s", type=float, default=None,
                 help="seconds of timed chunks of the first items, split over their "
                      "datasets (default 60; --tiny: 2); a later preset gets a share")
  p.add_argument("--preset", default=None, help="main preset (default paper; --tiny: test)")
  p.add_argument("--tiny", action="store_true",
                 help="CPU rehearsal: test preset, short calibration")
  p.add_argument("--datasets", default="fashion_mnist,cifar10")
  p.add_argument("--classes", default="all")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--max_seeds", type=int, default=5, help="seeds to go through, in order")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--max_items", type=int, default=None,
                 help="go through only the first N items of the list")
  p.add_argument("--data_dir", default=os.environ.get("DSPLIT_DATA_DIR"))
  p.add_argument("--mnist_dir", default=None, help="a folder with MNIST's idx files")
  p.add_argument("--fashion_mnist_dir", default=None,
                 help="a folder with Fashion-MNIST's idx files")
  p.add_argument("--cifar10_tar", default=None,
                 help="CIFAR-10 as a tarball of train|test/<class>/*.jpg, converted once")
  p.add_argument("--wheels", default=None,
                 help="pip-install every wheel of this folder first (offline)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override for every item and calibration")
  p.add_argument("--keep_checkpoints", action="store_true",
                 help="keep the orbax checkpoints of finished items")
  return p


def _check_args(p, args):
  if not args.out:
    p.error("--out is required when $OUT is unset")
  args.preset = args.preset or ("test" if args.tiny else "paper")
  if args.calibrate_s is None:
    args.calibrate_s = 2.0 if args.tiny else 60.0
  if (args.budget_s <= 0 or args.calibrate_s <= 0 or args.max_seeds < 1
      or (args.max_items is not None and args.max_items < 1)):
    p.error("--budget_s, --calibrate_s, --max_seeds and --max_items must be positive")
  if args.cifar10_tar and not os.path.isfile(args.cifar10_tar):
    p.error(f"--cifar10_tar: no such file: {args.cifar10_tar}")
  for flag in ("data_dir", "mnist_dir", "fashion_mnist_dir", "wheels"):
    folder = getattr(args, flag)
    if folder and not os.path.isdir(folder):
      p.error(f"--{flag}={folder} is not a folder")
  args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
  args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
  unknown = [m for m in args.methods if m not in METHODS]
  if unknown or not args.methods or not args.datasets:
    p.error(f"--methods from {', '.join(METHODS)} and at least one dataset")
  args.workdir = args.workdir or os.path.join(args.out, "work")


class PhaseClock:
  """Wall seconds of each training phase of a cell, from its progress lines
  (`loop.Progress`): a phase runs from its `compiling` line (else from its first bar
  line less that line's first chunk) to its last bar line."""

  def __init__(self):
    self.first, self.last, self.first_chunk = {}, {}, {}

  def see(self, line: str):
    match = re.search(r"\[([a-z_]+)\] (compiling|\[[#.]+\] \d+/\d+)", line)
    if not match:
      return
    name, now = match.group(1), time.time()
    self.first.setdefault(name, now)
    if match.group(2) == "compiling":
      self.first_chunk.setdefault(name, 0.0)  # the clock already runs from here
      return
    self.last[name] = now
    chunk = re.search(r"first chunk ([0-9.]+)s", line)
    if chunk and name not in self.first_chunk:
      self.first_chunk[name] = float(chunk.group(1))

  def walls(self) -> dict:
    return {k: self.last[k] - self.first[k] + self.first_chunk.get(k, 0.0)
            for k in self.last}


def plan_line(item, cells, cal, target, cached) -> tuple[dict, str]:
  """The planner's view of an item before it runs: FLOPs from the calibration's
  compiled programs (`experiments.plan`: cost analysis per step), the planner's time
  at the target's published peak (`plan.TARGETS`) and the calibration's time."""
  from experiments import plan  # pylint: disable=g-import-not-at-top
  parts, predicted, flops, trained = {}, 0.0, 0.0, set()
  for cell in cells:
    key = configs_key(cell.config)
    need_ae = not cached(cell.config) and key not in trained  # one per job, shared
    trained.add(key)
    seconds = predict_cell(cal, cell.config, cell.method, not need_ae)
    f = cell_flops(cal, cell.config, cell.method, need_ae, len(cell.jobs()))
    parts[cell.method] = dict(predicted_s=seconds, flops=f, trains_autoencoders=need_ae)
    predicted += seconds
    flops = None if f is None or flops is None else flops + f
  out = dict(cells=parts, predicted_s=predicted, flops=flops)
  text = f"[plan] {item.name}: calibrated {predicted:.0f}s"
  if flops:
    text += f", {flops / 1e12:.4g} TFLOP"
    if target is not None:
      out["planner"] = dict(target=target.name, peak_flops=target.peak_flops,
                            predicted_s={f"{u:g}": flops / (target.peak_flops * u)
                                         for u in (0.1, 0.3)})
      duration = plan._duration  # pylint: disable=protected-access
      text += (f"; planner on {target.name} at 10% / 30% of peak: "
               f"{duration(flops / (target.peak_flops * 0.1))} / "
               f"{duration(flops / (target.peak_flops * 0.3))}")
  return out, text


def configs_key(config) -> str:
  from dsplit_jax import configs  # pylint: disable=g-import-not-at-top
  return configs.autoencoder_hash(config)


def main(argv=None) -> int:
  start = time.time()
  p = _parser()
  args = p.parse_args(argv)
  _check_args(p, args)
  os.makedirs(args.out, exist_ok=True)
  os.makedirs(args.workdir, exist_ok=True)
  log = Log(os.path.join(args.out, LOG))
  summary_path = os.path.join(args.out, SUMMARY)
  summary = {}
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      summary = json.load(f)
  summary.setdefault("calibration", {})
  summary.setdefault("items", {})
  summary["args"] = dict(vars(args))

  def left():
    return args.budget_s - (time.time() - start) - RESERVE_S

  def save():
    summary["wall_s"] = time.time() - start
    _write_json(summary_path, summary)

  log(f"[start] budget {args.budget_s:.0f}s, preset {args.preset}, datasets "
      f"{','.join(args.datasets)}, methods {','.join(args.methods)}, seeds "
      f"{args.seed}..{args.seed + args.max_seeds - 1}, work dir {args.workdir}")
  if args.wheels:  # (a), before anything imports JAX
    install_wheels(args.wheels, log)
  env = environment()
  summary["environment"] = env
  log(f"[env] {env['device_count']} {env['backend']} device(s): {', '.join(env['devices'])}; "
      + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
  save()
  missing = [k for k, v in env["versions"].items() if str(v).startswith("MISSING")]
  if missing:
    log(f"[env] error: missing packages {', '.join(missing)}; carry their wheels and pass "
        "--wheels")
    return 2

  import jax  # pylint: disable=g-import-not-at-top
  # Compiled programs persist in the work dir: a cell compiles what its calibration
  # compiled, and a resumed call compiles nothing it compiled before.
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # else the caller's cache
    jax.config.update("jax_compilation_cache_dir", os.path.join(args.workdir, "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  from dsplit_jax import configs, records  # pylint: disable=g-import-not-at-top
  from experiments import table1  # pylint: disable=g-import-not-at-top
  args.data_dir_used = prepare_data(args, log)  # (b)
  summary["args"]["data_dir_used"] = args.data_dir_used
  target = planner_target(env)
  results = os.path.join(args.workdir, "results.jsonl")
  order = items(args)[:args.max_items]
  first_preset_share = args.calibrate_s / len(args.datasets)
  for item in order:  # (d)
    try:
      cells = item_cells(args, item)
    except ValueError as e:
      log(f"[skip] {item.name}: {e}")
      continue
    if all(not table1.missing_jobs(c, results) for c in cells):
      log(f"[done] {item.name}: records already there")
      continue
    key = calibration_key(args, item)
    cal = summary["calibration"].get(key)
    if cal is None:  # (c): once per preset and dataset
      spent = [c["calibration_wall_s"] for c in summary["calibration"].values()]
      need = max(spent) if spent else 2 * first_preset_share
      if need > left():
        log(f"[skip] {item.name}: its calibration (~{need:.0f}s) does not fit the "
            f"{left():.0f}s left")
        continue
      t0 = time.time()
      try:
        cal = calibrate(cells[0].config, [c.method for c in cells], first_preset_share, log)
      except Exception as e:  # pylint: disable=broad-except
        # One line and the next item: a device call is too short to lose to one failure.
        log(f"[skip] {item.name}: calibration failed: {type(e).__name__}: "
            + (str(e).splitlines() or [""])[0][:300])
        continue
      cal["calibration_wall_s"] = time.time() - t0
      summary["calibration"][key] = cal
      save()
    planned, text = plan_line(item, cells, cal, target,
                              lambda config: ae_cached(args.workdir, config))
    log(text)
    entry = dict(plan=planned, preset=item.preset, dataset=item.dataset, seed=item.seed,
                 overrides=list(item.overrides))
    summary["items"][item.name] = entry
    if planned["predicted_s"] > left():
      log(f"[skip] {item.name}: predicted {planned['predicted_s']:.0f}s > {left():.0f}s left")
      entry["skipped"] = True
      save()
      continue
    entry.update(skipped=False, cells={})
    for cell in cells:
      clock = PhaseClock()

      def printer(line, clock=clock):
        clock.see(line)
        log(f"  {line}")
      t0 = time.time()
      failed = table1.run_grid([cell], args.workdir, printer=printer)
      wall = time.time() - t0
      predicted = planned["cells"][cell.method]["predicted_s"]
      flops = planned["cells"][cell.method]["flops"]
      aucs = [r["auc"] for r in records.read_records(
          results, dataset=cell.dataset, method=cell.method,
          config_hash=configs.config_hash(cell.config))]
      done = dict(failed=bool(failed), wall_s=wall, predicted_s=predicted,
                  phases_wall_s=clock.walls(), jobs=len(cell.jobs()),
                  achieved_flops_per_s=flops / wall if flops else None,
                  mean_auc=sum(aucs) / len(aucs) if aucs else None, records=len(aucs))
      if target is not None and flops:
        done["achieved_utilisation"] = flops / wall / target.peak_flops
      entry["cells"][cell.method] = done
      if not failed:  # what the steps do not explain (data, SSIM, scoring, saves)
        overhead = wall - sum(done["phases_wall_s"].values())
        seen = cal.setdefault("overhead_s", {})
        seen[cell.method] = max(seen.get(cell.method, 0.0), overhead)
      phases = ", ".join(f"{k} {v:.1f}s" for k, v in done["phases_wall_s"].items())
      log(f"[{'FAILED' if failed else 'done'}] {item.name} {cell.method}: {wall:.1f}s "
          f"(predicted {predicted:.0f}s; phases: {phases or 'none ran'})"
          + (f", {flops / wall / 1e12:.3g} TFLOP/s achieved" if flops else "")
          + (f", mean AUC {100 * done['mean_auc']:.2f} over {len(aucs)} jobs" if aucs
             else ""))
      if os.path.exists(results):
        shutil.copy(results, os.path.join(args.out, RESULTS))
      save()
    if not args.keep_checkpoints:  # a killed item resumes from them; a finished one not
      if all(not table1.missing_jobs(c, results) for c in cells):
        _prune(args.workdir, log)
  summary["phases_steps_per_s"] = {k: {ph: v["steps_per_s"] for ph, v in c["phases"].items()}
                                   for k, c in summary["calibration"].items()}
  save()
  log(f"[end] summary in {summary_path}; {time.time() - start:.0f}s of {args.budget_s:.0f}s")
  return 0


def _prune(workdir, log):
  """Orbax checkpoints of finished runs: a run's records and scores are written, so its
  checkpoints only take disk (and the transfer back); autoencoder params stay cached."""
  runs = os.path.join(workdir, "runs")
  if not os.path.isdir(runs):
    return
  freed = 0
  for root, dirs, _ in os.walk(runs):
    for d in list(dirs):
      path = os.path.join(root, d)
      if d.isdigit() and os.path.exists(os.path.join(path, "_CHECKPOINT_METADATA")):
        freed += sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path)
                     for f in fs)
        shutil.rmtree(path)
        dirs.remove(d)
  if freed:
    log(f"[prune] {freed / 1e6:.1f} MB of checkpoints of finished cells removed")


if __name__ == "__main__":
  sys.exit(main())
