"""Configs: the presets, their loading with overrides, the one validation, the hashes.

Presets are ml_collections config files (`get_config()`): `paper` (accelerators),
`cpu` (a 2-core machine), `test` (unit tests). The command line loads them with
`ml_collections.config_flags`:

  python -m dsplit_jax.main --config=dsplit_jax/configs/cpu.py --config.train.steps=300
  python -m dsplit_jax.main --preset=cpu --set=train.steps=300     # the same config

Every loaded config is locked: a misspelt field is an error, not a new field.
`from_saved(d)` reads back a config saved as JSON, tuples and all.
`validation.validate(config)` (above this module and the ones whose values it checks)
is the one check every entry point (command line, API, grid, study) runs before any work. `config_hash(config)` names a run's results: the records of a
work dir are reused only by a config with the same hash.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os

from absl import flags
import ml_collections
from ml_collections import config_flags

from dsplit_jax import methods
from dsplit_jax.configs import base

PRESETS = ("paper", "cpu", "test", "authors")


class ConfigError(ValueError):
  """Bad input found before any training starts; the message is one line."""


# ----------------------------------------------------------------------- loading

def preset_path(name: str) -> str:
  """The config file of preset `name` (for `--config=`)."""
  if name not in PRESETS:
    raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
  return os.path.join(os.path.dirname(__file__), f"{name}.py")


def get_preset(name: str) -> ml_collections.ConfigDict:
  """Preset `name`, locked."""
  preset_path(name)  # the check
  config = importlib.import_module(f"dsplit_jax.configs.{name}").get_config()
  config.lock()
  return config


def default_preset() -> str:
  """`paper` when JAX sees an accelerator, else `cpu`."""
  import jax  # pylint: disable=g-import-not-at-top
  return "cpu" if jax.default_backend() == "cpu" else "paper"


def load(preset: str, overrides=()) -> ml_collections.ConfigDict:
  """Preset `preset` with `overrides` ("key=value", as `--set`) applied; locked."""
  return override(get_preset(preset), overrides)


def override(config: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
  """A copy of `config` with "key=value" items applied, parsed as `--config.key=value` is
  by `ml_collections.config_flags` (the same types and literals); `config` stays as it
  was."""
  # The last item for a key wins, as for every other flag: absl would append a repeated
  # tuple field's values instead (`(1,2)` then `(3,4)` gave (1, 2, 3, 4)).
  last = {}
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"--set wants key=value, got {item!r}")
    last[item.split("=", 1)[0]] = item
  config = config.copy_and_resolve_references()  # config_flags sets fields in place
  argv = ["override"]
  for key, item in last.items():
    parent, *_ = _field_parent(config, key)
    del parent
    argv.append(f"--config.{item}")
  if len(argv) == 1:
    return config
  values = flags.FlagValues()
  try:
    config_flags.DEFINE_config_dict("config", config, flag_values=values, sys_argv=argv)
    values(argv)
  except flags.Error as e:
    raise ConfigError(" ".join(str(e).split()).replace("flag --config.", "")) from None
  return values.config


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """A config saved as JSON (a detector's `detector.json`), as a ConfigDict again.

  JSON turned the presets' tuples into lists; they come back as tuples (the presets
  hold no lists), so every config the code sees has hashable widths. Fields the library
  gained after it was saved (`job_map`, Deep SVDD's training fields, ...) take the
  base defaults, which reproduce the behaviour it was fit with; every saved field keeps
  its saved value.
  """

  def overlay(defaults, values):
    out = dict(defaults)
    for k, v in values.items():
      out[k] = overlay(defaults[k], v) if isinstance(v, dict) and isinstance(
          defaults.get(k), dict) else _tuples(v)
    return out
  return ml_collections.ConfigDict(overlay(base.get_config().to_dict(), saved))


def _tuples(value):
  """JSON's lists, at any depth, as the tuples they were."""
  if isinstance(value, (list, tuple)):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def _field_parent(config, key: str):
  parent, parts = config, key.split(".")
  for p in parts[:-1]:
    if not isinstance(parent, ml_collections.ConfigDict) or p not in parent:
      raise ConfigError(f"unknown config field {key!r}")
    parent = parent[p]
  if not isinstance(parent, ml_collections.ConfigDict) or parts[-1] not in parent:
    raise ConfigError(f"unknown config field {key!r}")
  return parent, parts[-1]


# ------------------------------------------------------------------------ hashes

# Fields that say which jobs run, not what a job computes: they stay out of the config
# hash. `job_map` (lax.map or vmap over a device's jobs) is like the device count: the
# records carry the one used, and committed records stay reusable under either.
_JOB_FIELDS = ("normal_classes", "seeds", "data_dir", "method", "job_map")
# Fields only the pair losses read (dsplit's; the schedule only matters with more than
# one loss): other methods' hashes ignore them, so an nnwds or naive_nn record stays
# valid (and is reused by the grid) whichever distance head, latent, pairing or
# schedule is chosen.
_DISTANCE_HEAD_FIELDS = (("model", "distance_head"), ("model", "latent"), ("train", "pairs"),
                         ("train", "schedule"))
# Fields only the splitting autoencoder reads (the split methods': dsplit, nnwds, ssim):
# the other methods' hashes ignore them, so a change of the autoencoder (e.g. the `cpu`
# preset's autoencoder budget) keeps every baseline's and naive_nn's records valid.
_SPLIT_FIELDS = (("ae", None), ("model", "ae_conv_features"), ("model", "ae_code_features"),
                 ("model", "ae_arch"))
# Fields added after records and cached autoencoders were written: at the value that
# reproduces the earlier behaviour they stay out of every hash, so those stay valid.
# Deep SVDD's training fields are among them: older configs' `dsvdd` held only what a
# preset changed, laid over the same defaults.
def _compatible_defaults() -> dict:
  return {("ae", "output_bias"): "zero", ("model", "latent"): "dense",
          ("model", "dropout"): 0.0, ("train", "lr_decay"): "none",
          ("model", "dtype"): "float32",
          ("model", "arch"): "alexnet", ("model", "ae_arch"): "alexnet",
          ("model", "leaky_slope"): 0.2, ("model", "bn_momentum"): 0.99,
          ("model", "bn_epsilon"): 1e-3, ("ae", "optimizer"): "adam",
          ("ae", "ssim_max_val"): 1.0, ("train", "adam_b1"): 0.9,
          ("train", "pair_updates"): 3, ("train", "intra_updates"): 4,
          ("train", "schedule"): "interleaved", ("model", "init"): "he_normal",
          **{("dsvdd", k): v for k, v in base.get_config().dsvdd.items()},
          **{("eval", k): v for k, v in base.get_config().eval.items()}}


def _drop_compatible_defaults(d: dict) -> dict:
  for (section, field), value in _compatible_defaults().items():
    if _plain(d.get(section, {}).get(field)) == _plain(value):
      d[section] = {k: v for k, v in d[section].items() if k != field}
  # `eval` left empty (at its defaults) goes too: the hash of every config that keeps
  # them is the one it had before the section existed. (An empty `dsvdd` stays: hashes
  # were computed with it.)
  if d.get("eval") == {}:
    del d["eval"]
  return d


def _plain(value):
  """JSON's view of a value (tuples and lists alike)."""
  return json.loads(json.dumps(value))


def hashed_fields(config: ml_collections.ConfigDict) -> dict:
  """The config fields that change a job's result under its method."""
  d = _drop_compatible_defaults(
      {k: v for k, v in config.to_dict().items() if k not in _JOB_FIELDS})
  method = methods.get(config.method)
  unread = ((() if method.uses_distance_head else _DISTANCE_HEAD_FIELDS)
            + (() if method.needs_split else _SPLIT_FIELDS))
  for section, field in unread:  # field None: the whole section
    if field is None:
      d.pop(section, None)
    else:
      d.get(section, {}).pop(field, None)
  return d


def config_hash(config: ml_collections.ConfigDict) -> str:
  return digest(hashed_fields(config))


def autoencoder_hash(config: ml_collections.ConfigDict) -> str:
  """Splitting autoencoders depend on these fields only, so methods and classifier
  settings share them (not `model.conv_impl`: the same function)."""
  fields = dict(dataset=config.dataset, image_size=config.image_size,
                ae=_drop_compatible_defaults({"ae": config.ae.to_dict()})["ae"],
                conv_features=config.model.ae_conv_features,
                code_features=config.model.ae_code_features)
  if config.model.dtype != "float32":  # float32: the hashes before it
    fields["dtype"] = config.model.dtype
  if config.model.ae_arch != "alexnet":  # alexnet: the hashes before it
    fields.update(ae_arch=config.model.ae_arch, bn_momentum=config.model.bn_momentum,
                  bn_epsilon=config.model.bn_epsilon)
  return digest(fields)


def digest(d: dict) -> str:
  return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:12]


# Presets whose splitting autoencoder starts at the mean pixel's logit on a folder of a
# user's images (the API's arrays or `--dataset=folder`); the authors preset keeps the
# program it reproduces, and a config given whole is taken as it is.
FOLDER_MEAN_LOGIT_PRESETS = ("test", "cpu", "paper")


def for_folder(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` (a preset's copy) with the start a user's images need. They are often
  aligned objects on a plain background: from a zero output bias the decoder collapses
  to that background before it learns the object; from the mean pixel's logit it starts
  at the right brightness."""
  if config.preset in FOLDER_MEAN_LOGIT_PRESETS:
    config.ae.output_bias = "mean_logit"
  return config
