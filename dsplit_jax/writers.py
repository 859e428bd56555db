"""Loss curves through `clu.metric_writers`, the writer of the flax examples.

Always the absl log (`LoggingWriter`: INFO lines, printed on stderr with
`--verbosity=0`); TensorBoard files too when TensorFlow can be imported. clu 0.0.12's
`clu.metric_writers/__init__.py` imports TensorFlow for its SummaryWriter, so without
TensorFlow even its logging writer cannot be imported the usual way: `_without_tensorflow`
imports the TensorFlow-free modules alone. The run's own record of the curves is
`loss_curves.jsonl` (`curves.append_curves`), written whatever this module finds.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import types

TENSORBOARD_DIR = "tensorboard"
_said_no_tensorboard = False


def tensorboard_available() -> bool:
  """TensorFlow is importable and `DSPLIT_TENSORBOARD` is not 0 (importing TF takes seconds)."""
  return (os.environ.get("DSPLIT_TENSORBOARD", "1") != "0"
          and importlib.util.find_spec("tensorflow") is not None)


@functools.lru_cache(maxsize=1)
def _without_tensorflow():
  """clu's LoggingWriter and MultiWriter, imported without running the package __init__."""
  import clu
  name = "clu.metric_writers"
  stand_in = types.ModuleType(name)
  stand_in.__path__ = [os.path.join(os.path.dirname(clu.__file__), "metric_writers")]
  had = sys.modules.get(name)
  sys.modules[name] = stand_in
  try:
    from clu.metric_writers import logging_writer, multi_writer
  finally:  # Leave clu as found: a later `from clu import metric_writers` fails as usual.
    if had is None:
      del sys.modules[name]
      if getattr(clu, "metric_writers", None) is stand_in:
        del clu.metric_writers
    else:
      sys.modules[name] = had
  return logging_writer.LoggingWriter, multi_writer.MultiWriter


def _with_tensorflow():
  import tensorflow as tf
  # TensorFlow would otherwise take the accelerator's memory that JAX uses.
  tf.config.set_visible_devices([], "GPU")
  from clu import metric_writers
  return metric_writers.LoggingWriter, metric_writers.MultiWriter, metric_writers.SummaryWriter


def curve_writer(run_dir: str, say=print):
  """A clu MultiWriter for `run_dir`'s curves: the log, plus `run_dir/tensorboard/` files
  when TensorFlow is there; without it `say`s so once per process."""
  global _said_no_tensorboard
  if tensorboard_available():
    logging_writer, multi_writer, summary_writer = _with_tensorflow()
    return multi_writer([logging_writer(),
                         summary_writer(os.path.join(run_dir, TENSORBOARD_DIR))])
  logging_writer, multi_writer = _without_tensorflow()
  if not _said_no_tensorboard:
    _said_no_tensorboard = True
    why = ("are off (DSPLIT_TENSORBOARD=0)" if os.environ.get("DSPLIT_TENSORBOARD") == "0"
           else "need TensorFlow (pip install tensorflow)")
    say(f"loss curves: {os.path.join(run_dir, 'loss_curves.jsonl')} and the log; "
        f"TensorBoard files {why}")
  return multi_writer([logging_writer()])
