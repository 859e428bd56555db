"""Every config field's type, allowed values and meaning, in one table.

`validate(config)`, the one check every entry point runs, checks each field of a config
against its row of `FIELDS` (and a few rules that tie fields together) before any data
is read or program compiled; a value outside its row is one line, `<field>=<value> is
not allowed: must be <allowed>`. `to_yaml(config, describe=True)` prints the same rows beside the values
(`--print_config --describe`). A config field without a row is itself an error, so a
new field (or section) cannot skip validation: add its rows here.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import math
import numbers

import ml_collections
import yaml

from dsplit_jax import configs
from dsplit_jax import layers
from dsplit_jax import methods
from dsplit_jax import models
from dsplit_jax import pipeline
from dsplit_jax import protocols
from dsplit_jax import train
from dsplit_jax.baselines import dsvdd
from dsplit_jax.data import datasets
from dsplit_jax.data import one_class
from dsplit_jax.data import sources

# Bounds (BUILD_NOTES.md, "Config validation", says why each is where it is).
# Seeds reach jax.random.PRNGKey and scikit-learn's random_state (< 2**32); int32 keeps
# them exact in every array and record.
MAX_SEED = 2**31 - 1
# Jobs of one command (normal classes x seeds). Each job holds its own networks,
# optimiser state and index arrays; 10,000 is 200 times the paper's largest grid (10
# classes x 5 seeds), and the seed tuple is never built beyond it.
MAX_JOBS = 10_000
# Step counters are int32 inside the compiled loops.
MAX_STEPS = 2**31 - 1
# A chunk is one compiled call that returns every step's losses of every job.
MAX_CHUNK_STEPS = 100_000
# One batch is materialised per job: 65,536 32x32x3 float32 images are 0.8 GB.
MAX_BATCH = 2**16
MAX_WIDTH = 2**16     # network widths (channels, units)
MAX_EPOCHS = 100_000  # Deep SVDD's epoch counts (the authors use 150)
MAX_IMAGE_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class Rule:
  """One field's type (`kind`: int, float, str, bool or tuple of ints), its bounds and
  its meaning. Numbers lie in [lo, hi] (`open_lo` / `open_hi` exclude the ends), are
  finite, and ints a multiple of `multiple`; a tuple has `min_len..max_len` ints, each
  in [lo, hi]; a str is one of `choices` (any text when None). `choices` may be a table
  (a dict such as `methods.METHODS`): its keys are read at each check, so an entry
  registered after this module was imported is allowed."""
  kind: type
  meaning: str
  lo: float | None = None
  hi: float | None = None
  open_lo: bool = False
  open_hi: bool = False
  multiple: int = 1
  choices: tuple | Mapping | None = None
  min_len: int = 0
  max_len: int = 0

  def allowed(self) -> str:
    """What the field may hold, as the end of "must be ..."."""
    if self.kind is bool:
      return "true or false"
    if self.kind is str:
      return "a text" if self.choices is None else f"one of {', '.join(self.choices)}"
    span = (f"{'(' if self.open_lo else '['}{_number(self.lo)}, "
            f"{_number(self.hi) if self.hi is not None else 'inf'}"
            f"{')' if self.open_hi or self.hi is None else ']'}")
    if self.kind is tuple:
      size = (f"{self.min_len}" if self.min_len == self.max_len
              else f"{self.min_len} to {self.max_len}")
      return f"a tuple of {size} ints in {span}"
    what = "an int" if self.kind is int else "a finite number"
    return f"{what} in {span}" + (f", a multiple of {self.multiple}" if self.multiple > 1 else "")

  def accepts(self, value) -> bool:
    if self.kind is bool:
      return isinstance(value, bool)
    if self.kind is str:
      return isinstance(value, str) and (self.choices is None or value in self.choices)
    if self.kind is tuple:
      return (isinstance(value, tuple) and self.min_len <= len(value) <= self.max_len
              and all(_in_range(v, self, int) for v in value))
    return _in_range(value, self, self.kind) and (self.kind is float or value % self.multiple == 0)


def _in_range(value, rule: Rule, kind: type) -> bool:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    return False
  if kind is int and not isinstance(value, numbers.Integral):
    return False
  if not math.isfinite(value):
    return False
  above = value > rule.lo if rule.open_lo else value >= rule.lo
  below = rule.hi is None or (value < rule.hi if rule.open_hi else value <= rule.hi)
  return above and below


def _number(x) -> str:
  return f"{x:g}" if isinstance(x, float) else str(x)


def integer(lo, hi, meaning, multiple=1):
  return Rule(int, meaning, lo, hi, multiple=multiple)


def number(lo, hi, meaning, *, open_lo=False, open_hi=False):
  """A finite float in [lo, hi] (hi None: unbounded above)."""
  return Rule(float, meaning, lo, hi, open_lo=open_lo, open_hi=open_hi)


def positive(meaning):
  return number(0.0, None, meaning, open_lo=True)


def choice(choices, meaning):
  """One of `choices`: a table (a Mapping, read live: its keys) or a fixed list."""
  return Rule(str, meaning,
              choices=choices if isinstance(choices, Mapping) else tuple(choices))


def text(meaning):
  return Rule(str, meaning)


def flag(meaning):
  return Rule(bool, meaning)


def integers(lo, hi, min_len, max_len, meaning):
  return Rule(tuple, meaning, lo, hi, min_len=min_len, max_len=max_len)


def _phase(name: str, *, min_batch: int, decay: bool) -> dict[str, Rule]:
  """The rows shared by the two trained phases, `ae` and `train`."""
  rows = {
      "steps": integer(1, MAX_STEPS, f"{name} training steps (a multiple of chunk_steps)"),
      "batch_size": integer(min_batch, MAX_BATCH, f"{name} images per step"
                            + (" and loss (pairs are drawn from it)" if min_batch > 1 else "")),
      "learning_rate": positive(f"{name} Adam learning rate (the peak after warm-up)"),
      "adam_eps": positive(f"{name} Adam epsilon"),
      "warmup_steps": integer(0, MAX_STEPS, f"{name} linear warm-up from 0 to the learning "
                              "rate over this many steps (at most steps)"),
      "weight_decay": number(0.0, None, f"{name} L2 weight decay on the conv kernels"),
      "chunk_steps": integer(1, MAX_CHUNK_STEPS, f"{name} steps per compiled call "
                             "(checkpoint and progress line after each)"),
  }
  if decay:
    rows["lr_decay"] = choice(train.LR_DECAYS, "learning-rate decay after warm-up "
                              "(none: constant; cosine: to 0 at the last step)")
  return rows


def _section(name: str, rows: dict[str, Rule]) -> dict[str, Rule]:
  return {f"{name}.{k}": v for k, v in rows.items()}


# One row per config field, in the presets' order (configs/base.py).
FIELDS: dict[str, Rule] = {
    "preset": text("name of the preset (config file) the config started from"),
    "dataset": choice(datasets.DATASETS, "the dataset (folder: DIR/<split>/<class>/*.png or "
                      "DIR/*.png)"),
    "normal_classes": integers(0, MAX_JOBS - 1, 1, MAX_JOBS, "classes trained as normal, one "
                               "job per class and seed (--normal_class)"),
    "method": choice(methods.METHODS, "the detector trained (--method)"),
    "seeds": integers(0, MAX_SEED, 1, MAX_JOBS, "seeds, one job per class and seed "
                      "(--seed, --num_seeds)"),
    "rho": number(0.0, 100.0, "percent of normal training images called atypical by the "
                  "split (--rho)", open_lo=True, open_hi=True),
    "data_dir": text("where the dataset is; empty: the default places (--data_dir)"),
    "image_size": integer(16, MAX_IMAGE_SIZE, "side folder images are resized to", 4),
    **_section("model", {
        "arch": choice(models.ARCHS, "the classifier's network (alexnet: the paper's text; "
                       "authors: the authors' public program, with BatchNorm)"),
        "leaky_slope": number(0.0, 1.0, "LeakyReLU's negative slope (authors networks)",
                              open_hi=True),
        "bn_momentum": number(0.0, 1.0, "BatchNorm running-average momentum (authors "
                              "networks; Keras' and flax's convention)", open_hi=True),
        "bn_epsilon": positive("BatchNorm epsilon (authors networks)"),
        "conv_features": integers(1, MAX_WIDTH, 5, 5, "channels of the classifier's five "
                                  "convolution stages"),
        "dense_features": integers(1, MAX_WIDTH, 1, 8, "units of the classifier's dense "
                                   "layers"),
        "distance_head": choice(models.DISTANCE_HEADS, "how dsplit's distance subnetwork "
                                "compares two latents"),
        "latent": choice(models.LATENTS, "where the distance head reads the latent (dense: "
                         "after the dense layers; conv: after the convolutions)"),
        "dropout": number(0.0, 1.0, "dropout rate after each dense layer of the classifier",
                          open_hi=True),
        "init": choice(models.INITS, "the classifier's weight initialisation"),
        "dtype": choice(train.DTYPES, "compute dtype of both networks (bfloat16 for "
                        "accelerators; parameters, losses and SSIM stay float32)"),
        "conv_impl": choice(layers.CONV_IMPLS, "how convolutions are lowered (the same "
                            "function; auto: patches on CPU, xla elsewhere)"),
        "ae_arch": choice(models.ARCHS, "the splitting autoencoder's network"),
        "ae_conv_features": integers(1, MAX_WIDTH, 4, 5, "channels of the splitting "
                                     "autoencoder's convolutions (five for alexnet, four "
                                     "encoder stages for authors)"),
        "ae_code_features": integer(1, MAX_WIDTH, "width of the splitting autoencoder's code"),
    }),
    **_section("ae", {
        **_phase("splitting autoencoder", min_batch=1, decay=False),
        "plateau_ratio": positive("reconstruction MSE over the mean image's MSE above which "
                                  "an autoencoder counts as stuck and is trained again"),
        "plateau_images": integer(1, MAX_STEPS, "training images the plateau ratio is "
                                  "measured on"),
        "restarts": integer(0, 100, "most times a stuck autoencoder is trained again"),
        "optimizer": choice(train.AE_OPTIMIZERS, "the autoencoder's optimiser"),
        "ssim_filter_size": integer(1, 16, "SSIM window side (fits the smallest image, 16)"),
        "ssim_max_val": positive("SSIM's dynamic range L (1 for images in [0, 1]; the "
                                 "authors' program: 2)"),
        "output_bias": choice(("zero", "mean_logit"), "decoder output bias at start (zero or "
                              "the logit of the job's mean pixel)"),
    }),
    **_section("train", {
        **_phase("classifier", min_batch=2, decay=True),
        "atypical_fraction": number(0.0, 1.0, "share of atypical images in an intra-class "
                                    "batch", open_lo=True, open_hi=True),
        "pairs": choice(train.PAIRINGS, "pairs of a batch for the closeness and dispersion "
                        "losses"),
        "adam_b1": number(0.0, 1.0, "classifier Adam beta_1", open_hi=True),
        "schedule": choice(train.SCHEDULES, "how dsplit's three losses take turns"),
        "pair_updates": integer(0, 100, "closeness + dispersion updates per iteration of "
                                "the balanced schedule"),
        "intra_updates": integer(1, 100, "intra-class updates per iteration of the "
                                 "balanced schedule"),
    }),
    "eval_batch_size": integer(1, MAX_BATCH, "images per compiled scoring call"),
    **_section("eval", {
        "protocol": choice(protocols.PROTOCOLS, "which model and test images give the "
                           "reported AUC (authors_selection: a checkpoint selected with "
                           "test labels)"),
        "every": integer(1, MAX_STEPS, "steps between scored checkpoints (a multiple of "
                         "train.chunk_steps)"),
        "selection_fraction": number(0.0, 1.0, "share of the test normals and anomalies "
                                     "that selects the checkpoint", open_lo=True,
                                     open_hi=True),
        "curves": flag("score the checkpoints under full_test_last too (AUC over "
                       "training)"),
    }),
    "loop": choice(("auto", "scan", "host"), "a chunk as one compiled lax.scan (scan) or one "
                   "compiled call per step (host)"),
    "job_map": choice(pipeline.JOB_MAPS, "how a device runs its jobs (map: one after another; "
                      "vmap: all at once)"),
    **_section("classical", {
        "preprocessing": choice(one_class.PREPROCESSING, "the classical baselines' pixels "
                                "(none: in [0, 1]; gcn_minmax: GCN then min-max)"),
        "ocsvm_nu": number(0.0, 1.0, "OCSVM nu, an upper bound on the share of training "
                           "outliers", open_lo=True),
        "ocsvm_gamma": choice(("auto", "scale"), "OCSVM RBF gamma (auto: 1 / features)"),
        "ocsvm_cache_mb": number(1.0, 1e6, "scikit-learn's kernel cache for the OCSVM, MB"),
        "hog_orientations": integer(1, 360, "HOG orientation bins"),
        "hog_pixels_per_cell": integer(1, 32, "HOG cell side, pixels"),
        "hog_cells_per_block": integer(1, 32, "HOG block side, cells"),
        "hog_block_norm": choice(("L1", "L1-sqrt", "L2", "L2-Hys"), "HOG block "
                                 "normalisation (scikit-image)"),
        "hog_channel_mode": choice(("grey", "max", "concat"), "HOG of colour images: grey, "
                                   "the channel-wise maximum or the channels concatenated"),
        "iforest_trees": integer(1, 100_000, "Isolation Forest trees"),
        "iforest_max_samples": choice(("auto",), "Isolation Forest samples per tree"),
    }),
    **_section("dsvdd", {
        "net": choice(dsvdd.NETS, "Deep SVDD's network (auto: by channel count)"),
        "preprocessing": choice(dsvdd.PREPROCESSING, "Deep SVDD's pixels (the authors' GCN "
                                "and min-max)"),
        "objective": choice(("one-class",), "Deep SVDD's objective"),
        "bn_eps": positive("batch-norm epsilon"),
        "bn_momentum": number(0.0, 1.0, "batch-norm running-average momentum (flax's "
                              "convention)", open_hi=True),
        "leaky_slope": number(0.0, 1.0, "leaky ReLU's negative slope", open_hi=True),
        "center_eps": positive("centre coordinates closer to 0 than this are moved to it"),
        "pretrain": flag("train the autoencoder first and start from its encoder"),
        "lr": positive("Deep SVDD phase learning rate"),
        "epochs": integer(1, MAX_EPOCHS, "Deep SVDD phase epochs"),
        "lr_milestones": integers(0, MAX_EPOCHS, 0, 16, "epochs where the Deep SVDD "
                                  "learning rate drops tenfold (one past epochs: never)"),
        "batch_size": integer(1, MAX_BATCH, "Deep SVDD phase batch size"),
        "weight_decay": number(0.0, None, "Deep SVDD phase L2 weight decay"),
        "ae_lr": positive("autoencoder phase learning rate"),
        "ae_epochs": integer(1, MAX_EPOCHS, "autoencoder phase epochs"),
        "ae_lr_milestones": integers(0, MAX_EPOCHS, 0, 16, "epochs where the autoencoder "
                                     "learning rate drops tenfold"),
        "ae_batch_size": integer(1, MAX_BATCH, "autoencoder phase batch size"),
        "ae_weight_decay": number(0.0, None, "autoencoder phase L2 weight decay"),
        "eval_batch_size": integer(1, MAX_BATCH, "images per centre and scoring chunk"),
    }),
}


class NotAllowed(configs.ConfigError):
  """A config value outside its row of FIELDS; the message is one line."""


def leaves(config: ml_collections.ConfigDict, prefix: str = ""):
  """(dotted name, value) of every field, sections' fields included, in config order."""
  for k, v in config.items():
    if isinstance(v, ml_collections.ConfigDict):
      yield from leaves(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


def show(value) -> str:
  return repr(value) if isinstance(value, str) else str(value)


def refuse(name: str, value, allowed: str):
  raise NotAllowed(f"{name}={show(value)} is not allowed: must be {allowed}")


def check(name: str, value) -> None:
  """Raises NotAllowed unless `value` is allowed for field `name`."""
  if name not in FIELDS:
    raise NotAllowed(f"config field {name} has no row in dsplit_jax/validation.py's FIELDS "
                     "(every field needs its type, range and meaning there)")
  if not FIELDS[name].accepts(value):
    refuse(name, value, FIELDS[name].allowed())


def check_seed_flags(seed: int, num_seeds: int) -> None:
  """--seed and --num_seeds, before the seed tuple is built (so that a huge count
  allocates nothing)."""
  if isinstance(num_seeds, bool) or not 1 <= num_seeds <= MAX_JOBS:
    refuse("--num_seeds", num_seeds, f"an int in [1, {MAX_JOBS}]")
  if isinstance(seed, bool) or not 0 <= seed <= MAX_SEED - num_seeds + 1:
    refuse("--seed", seed, f"an int in [0, {MAX_SEED - num_seeds + 1}] (the last seed, "
           f"--seed + --num_seeds - 1, at most {MAX_SEED})")


def _lists(config: ml_collections.ConfigDict, prefix: str = ""):
  """Names of the fields that hold a list (a ConfigDict built from JSON by hand)."""
  for k, v in config.items():
    if isinstance(v, ml_collections.ConfigDict):
      yield from _lists(v, f"{prefix}{k}.")
    elif isinstance(v, list):
      yield f"{prefix}{k}"


def validate(config: ml_collections.ConfigDict, *, check_dataset: bool = True) -> None:
  """Checks what can be checked without training; raises a one-line ConfigError.

  Every field against its row of FIELDS, then the rules between fields (NotAllowed),
  then the normal classes against the dataset's class count. `check_dataset=False` is
  for one's own images (the API), where no dataset is read: the classes go unchecked,
  and only the protocol that needs no labelled test images is allowed.
  """
  lists = list(_lists(config))
  if lists:
    raise configs.ConfigError(f"{', '.join(lists)} must be tuples, not lists (a config "
                              "read from JSON: build it with configs.from_saved)")
  for name, value in leaves(config):
    check(name, value)
  for phase in ("ae", "train"):
    p = config[phase]
    if p.steps % p.chunk_steps:
      refuse(f"{phase}.steps", p.steps, f"a multiple of {phase}.chunk_steps={p.chunk_steps}")
    if p.warmup_steps > p.steps:
      refuse(f"{phase}.warmup_steps", p.warmup_steps, f"at most {phase}.steps={p.steps}")
  if protocols.needs_checkpoint_scores(config.eval) and (
      config.eval.every % config.train.chunk_steps):
    refuse("eval.every", config.eval.every, f"a multiple of train.chunk_steps="
           f"{config.train.chunk_steps} (checkpoints are scored between chunks; e.g. "
           "--set=train.chunk_steps=50)")
  m = config.model
  if m.arch == "authors" and config.train.schedule != "balanced":
    refuse("train.schedule", config.train.schedule, "balanced with model.arch=authors "
           "(its BatchNorm statistics are updated by that schedule's steps)")
  ae_len = {"alexnet": 5, "authors": 4}[m.ae_arch]
  if len(m.ae_conv_features) != ae_len:
    refuse("model.ae_conv_features", m.ae_conv_features, f"{ae_len} widths with "
           f"model.ae_arch={m.ae_arch}")
  jobs = len(config.normal_classes) * len(config.seeds)
  if jobs > MAX_JOBS:
    raise NotAllowed(f"{len(config.normal_classes)} normal classes x {len(config.seeds)} "
                     f"seeds = {jobs} jobs is not allowed: must be at most {MAX_JOBS}")
  if not check_dataset:
    if config.eval.protocol != protocols.DEFAULT:
      raise configs.ConfigError(f"eval.protocol={config.eval.protocol} selects checkpoints "
                                "with labelled test images, which one's own images do not "
                                f"have; use {protocols.DEFAULT}")
    return
  n = sources.num_classes(config.dataset, config.data_dir or None)
  for c in config.normal_classes:
    if not 0 <= int(c) < n:
      raise configs.ConfigError(f"normal class {c} out of range for {config.dataset} "
                                f"(classes 0..{n - 1})")


def _yaml_value(value) -> str:
  """`value` as YAML text on one line (tuples as flow lists)."""
  plain = list(value) if isinstance(value, tuple) else value
  out = yaml.safe_dump({"v": plain}, default_flow_style=True, width=math.inf)
  return out.strip()[len("{v: "):-1]


def to_yaml(config: ml_collections.ConfigDict, *, describe: bool = False) -> str:
  """The config as plain YAML (tuples as lists, no tags or anchors), fields in config
  order; with `describe`, each field's meaning and allowed values as a comment after
  it (still YAML: `--print_config --describe`)."""
  lines = []

  def walk(c, prefix, indent):
    for k, v in c.items():
      if isinstance(v, ml_collections.ConfigDict):
        lines.append(f"{indent}{k}:")
        walk(v, f"{prefix}{k}.", indent + "  ")
        continue
      line = f"{indent}{k}: {_yaml_value(v)}"
      if describe:
        rule = FIELDS.get(prefix + k)
        line += f"  # {rule.meaning}; {rule.allowed()}" if rule else "  # no row in FIELDS"
      lines.append(line)
  walk(config, "", "")
  return "\n".join(lines) + "\n"
