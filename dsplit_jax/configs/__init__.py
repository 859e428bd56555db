"""Named presets: `paper` (accelerators), `cpu` (a 2-core machine), `test` (unit tests)."""

import importlib

import ml_collections

PRESETS = ("paper", "cpu", "test")


def get_preset(name: str) -> ml_collections.ConfigDict:
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
  return importlib.import_module(f"dsplit_jax.configs.{name}").get_config()
