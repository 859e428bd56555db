"""Command line: parses flags into a config and runs it.

  dsplit --dataset=mnist --normal_class=0          (or: python -m dsplit_jax.main ...)
  dsplit --dataset=mnist --normal_class=all --num_seeds=2 --preset=cpu
  dsplit --dataset=folder --data_dir=GOOD --score_dir=NEW --scores_csv=s.csv
  dsplit --detector=workdir/detector --score_dir=NEW --scores_csv=s.csv  (no training)
  dsplit --preset=cpu --print_config               (every config field, for --set)
  dsplit --print_config --describe                 (and what each means and allows)
  dsplit --config=dsplit_jax/configs/cpu.py --config.train.steps=300
                                                   (= --preset=cpu --set=train.steps=300)

Presets: paper (accelerators), cpu (a 2-core machine), test (tiny, smoke tests).
Missing datasets are downloaded on first use (python -m dsplit_jax.data.download).
"""

import os
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file (get_config(), e.g. dsplit_jax/configs/cpu.py); its "
    "fields can be set with --config.key=value. Default: --preset's file.", lock_config=True)
_PRESET = flags.DEFINE_string("preset", None, "paper (accelerators), cpu (a 2-core machine) "
                              "or test (tiny networks, smoke tests only): the config file "
                              "dsplit_jax/configs/<preset>.py; default: paper when JAX sees an "
                              "accelerator, else cpu.")
_DATASET = flags.DEFINE_string("dataset", "mnist", "mnist, fashion_mnist, cifar10 or folder.")
_NORMAL_CLASS = flags.DEFINE_string("normal_class", "0", "A class index, a comma list, or all.")
_METHOD = flags.DEFINE_string("method", "dsplit", "dsplit, naive_nn, nnwds, ssim, dsvdd, "
                              "ocsvm, hog_ocsvm, iforest, a comma list, or all.")
_RHO = flags.DEFINE_float("rho", None, "Percent of normal training images called atypical.")
_SEED = flags.DEFINE_integer("seed", 0, "First seed.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 1, "Seeds seed .. seed+num_seeds-1.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where the dataset is (else "
                                "$DSPLIT_DATA_DIR, Debian's datasets, the download cache, "
                                "a verified download, tensorflow-datasets).")
_WORKDIR = flags.DEFINE_string("workdir", "workdir", "Records, checkpoints, scores.")
_SCORE_DIR = flags.DEFINE_string("score_dir", None, "Folder of new images to score with a "
                                 "detector fit on the normal class, or with --detector "
                                 "(writes --scores_csv).")
_SCORES_CSV = flags.DEFINE_string("scores_csv", None, "CSV of file name, score and label "
                                  "(1 = abnormal); default <workdir>/scores.csv.")
_DETECTOR = flags.DEFINE_string("detector", None, "A saved detector's folder (a fit writes "
                                "<workdir>/detector): score --score_dir with it, no training.")
_CONTAMINATION = flags.DEFINE_float("contamination", 0.1, "With --score_dir: the "
                                    "false-positive rate accepted on normal images, in "
                                    "(0, 0.5]; sets the label column's threshold.")
_THRESHOLD_HOLDOUT = flags.DEFINE_float("threshold_holdout", 0.2, "With --score_dir: the "
                                        "share of normal images held out of the fit to "
                                        "place the threshold, in [0, 0.5); 0 = in sample.")
_OVERRIDE = flags.DEFINE_multi_string("set", [], "Config override, e.g. --set=train.steps=200 "
                                       "(= --config.train.steps=200; --print_config lists "
                                       "every field).")
_PRINT_CONFIG = flags.DEFINE_bool("print_config", False, "Print the resolved config (preset, "
                                  "flags and --set applied) and exit without running.")
_DESCRIBE = flags.DEFINE_bool("describe", False, "With --print_config: each field's meaning "
                              "and allowed values as a comment after it.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Print the traceback of an unexpected error.")
_QUIET = flags.DEFINE_bool("quiet", False, "No training progress lines (results and errors "
                           "are still printed).")


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from dsplit_jax import cli  # After flag parsing: keeps --help fast.
  from dsplit_jax import distributed
  try:
    distributed.maybe_initialize()  # Several hosts only; before any JAX backend starts.
  except distributed.InitError as e:
    _fail(str(e))
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO.
  if not _VERBOSE.value:
    _quiet_orbax_failures()
  logging.info("JAX devices: %s", jax.devices())
  if _DETECTOR.value:
    _score_with_saved_detector()
  if _CONFIG.value is not None and _PRESET.value:
    _fail("give --config or --preset, not both")
  if _DESCRIBE.value and not _PRINT_CONFIG.value:
    _fail("--describe goes with --print_config")
  try:
    config, methods = cli.config_from_flags(
        config=_CONFIG.value, preset=_PRESET.value, dataset=_DATASET.value,
        normal_class=_NORMAL_CLASS.value, method=_METHOD.value, rho=_RHO.value,
        seed=_SEED.value, num_seeds=_NUM_SEEDS.value, data_dir=_DATA_DIR.value,
        overrides=_OVERRIDE.value,
        config_items=[a[len("--config."):] for a in sys.argv[1:] if a.startswith("--config.")])
  except ValueError as e:
    _fail(str(e))
  if _PRINT_CONFIG.value:
    from dsplit_jax import validation
    print(f"# methods: {', '.join(methods)}\n"
          f"{validation.to_yaml(config, describe=_DESCRIBE.value)}", end="")
    sys.exit(0)
  try:
    code = cli.run(config, methods, workdir=_WORKDIR.value, score_dir=_SCORE_DIR.value,
                   scores_csv=_SCORES_CSV.value, quiet=_QUIET.value,
                   contamination=_CONTAMINATION.value,
                   threshold_holdout=_THRESHOLD_HOLDOUT.value)
  except KeyboardInterrupt as e:  # loop.Interrupted says where; checkpoints are written.
    print(str(e) or "interrupted; run the same command to resume", file=sys.stderr)
    sys.exit(130)
  except Exception as e:  # One line for the user; the traceback only when asked for.
    if _VERBOSE.value:
      traceback.print_exc()
    from dsplit_jax import workdir as workdir_lib
    full = workdir_lib.disk_full(e)
    if full:  # The lock is released; checkpoints are written whole or not at all.
      _fail(full)
    message = " ".join(str(e).split())
    print(f"error: {type(e).__name__}: {message} (--verbose shows the traceback)",
          file=sys.stderr)
    sys.exit(1)
  sys.exit(code)


def _quiet_orbax_failures():
  """Drops orbax's error logs (a failed asynchronous save logs its traceback from each of
  its threads; the failure itself reaches main as an exception and is said in one line)
  and the "Event loop is closed" tracebacks its closed loop leaves; --verbose keeps them."""
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  logging.get_absl_handler().addFilter(  # orbax's, and asyncio's "never retrieved"
      lambda r: not (r.levelno >= std_logging.ERROR
                     and ("orbax" in r.pathname or r.name == "asyncio")))
  default_hook = sys.unraisablehook

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      default_hook(unraisable)
  sys.unraisablehook = hook


# Flags that choose what to train; with --detector nothing is trained.
_TRAINING_FLAGS = ("config", "preset", "dataset", "normal_class", "method", "rho", "seed",
                   "num_seeds", "data_dir", "set", "print_config", "describe",
                   "contamination", "threshold_holdout")


def _score_with_saved_detector():
  from dsplit_jax import scoring
  given = [f"--{name}" for name in _TRAINING_FLAGS if flags.FLAGS[name].present]
  if given:
    _fail(f"--detector scores with a saved detector; {', '.join(given)} would train a new "
          "one (drop --detector to train)")
  out = _SCORES_CSV.value or os.path.join(_WORKDIR.value, "scores.csv")
  try:
    code = scoring.run(_DETECTOR.value, _SCORE_DIR.value, out)
  except Exception as e:  # One line, as for training.
    if _VERBOSE.value:
      traceback.print_exc()
    print(f"error: {type(e).__name__}: {' '.join(str(e).split())} (--verbose shows the "
          "traceback)", file=sys.stderr)
    code = 1
  sys.exit(code)


_HELP_ARGS = frozenset(f"{dash}{name}" for dash in ("-", "--")
                       for name in ("help", "helpfull", "helpshort", "h", "?"))


def _parse_flags(argv):
  """absl's parser; a `--config.<field>` the config lacks is one line, not a traceback
  (config_flags raises KeyError / AttributeError for it while parsing)."""
  try:
    return app.parse_flags_with_usage(argv)
  except SystemExit as e:  # absl's --help and --helpfull exit 1; a help asked for is 0.
    if e.code == 1 and _HELP_ARGS.intersection(argv[1:]):
      sys.exit(0)
    raise
  except (AttributeError, KeyError) as e:
    arg = e
    while isinstance(arg, BaseException) and arg.args:
      arg = arg.args[0]
    _fail(f"--config: unknown config field {' '.join(str(arg).split())}")


def run():
  """Entry point of the installed `dsplit` command."""
  # absl's --help shows __main__'s docstring and the flags of the module named
  # sys.argv[0]; the generated script has neither, so lend it ours.
  main_module = sys.modules["__main__"]
  if main_module.__name__ != __name__ and not main_module.__doc__:
    main_module.__doc__ = __doc__
    for flag in flags.FLAGS.get_key_flags_for_module(__name__):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
