"""What the command line does once flags are parsed: config, validation, the runs."""

from __future__ import annotations

import os
import sys

import jax
import ml_collections

from dsplit_jax import api
from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import loop
from dsplit_jax import methods as methods_lib
from dsplit_jax import runner
from dsplit_jax import scoring
from dsplit_jax import validation
from dsplit_jax import workdir as workdir_lib


def _parse_list(text: str, what: str) -> list:
  items = [t.strip() for t in str(text).split(",") if t.strip()]
  if not items:
    raise ValueError(f"empty {what}")
  return items


# Config fields that a flag sets, by flag (--rho only when given, --preset without --config).
OWNED = {"dataset": "--dataset", "data_dir": "--data_dir", "method": "--method",
         "seeds": "--seed/--num_seeds", "normal_classes": "--normal_class"}


def _with(config: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
  """A locked copy of `config` with `fields` set (each an existing field)."""
  out = config.copy_and_resolve_references()
  out.lock()
  out.update(fields)
  return out


def config_from_flags(*, preset, dataset, normal_class, method, rho, seed, num_seeds,
                      data_dir, overrides, config=None, config_items=()
                      ) -> tuple[ml_collections.ConfigDict, list[str]]:
  """The one place where flags become config fields.

  `config`: the one `--config=FILE --config.key=value` loaded (ml_collections'
  config_flags; `config_items` are those "key=value"), else preset `preset` (the default
  one when None). `overrides` ("key=value", `--set`) are applied last, parsed as
  `--config.key=value` is. A field that a flag sets (`OWNED`) may be given by `--set`
  or `--config.key` only with the flag's value: else one of the two would win silently.
  """
  preset_chosen = config is None
  from_file = {item.split("=", 1)[0]: config[item.split("=", 1)[0]] for item in config_items
               if item.split("=", 1)[0] in OWNED} if config is not None else {}
  if config is None:
    chosen = preset or configs.default_preset()
    config = configs.get_preset(chosen)
    if not preset:
      print(f"preset: {chosen} (JAX backend: {jax.default_backend()}; pass --preset to choose)")
  if dataset not in data.DATASETS:
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(data.DATASETS)}")
  chosen = methods_lib.NAMES if method == "all" else _parse_list(method, "method")
  for m in chosen:
    if m not in methods_lib.METHODS:
      raise ValueError(f"unknown method {m!r}; choose one of {', '.join(methods_lib.NAMES)}, all")
  validation.check_seed_flags(seed, num_seeds)  # before the tuple is built
  if normal_class == "all":
    normal_classes = tuple(range(data.num_classes(dataset, data_dir or None)))
  else:
    try:
      normal_classes = tuple(int(c) for c in _parse_list(normal_class, "normal class"))
    except ValueError:
      raise ValueError(f"--normal_class must be an integer, a comma list or all, "
                       f"got {normal_class!r}") from None
  # The flags' fields over a copy: the config passed in (--config's) stays as it was.
  config = _with(config, dataset=dataset, data_dir=data_dir or "", method=chosen[0],
                 seeds=tuple(range(seed, seed + num_seeds)), normal_classes=normal_classes,
                 **({} if rho is None else {"rho": float(rho)}))
  owned = dict(OWNED, **({} if rho is None else {"rho": "--rho"}),
               **({"preset": "--preset"} if preset_chosen else {}))
  flagged = {key: config[key] for key in owned}
  if preset_chosen and data.datasets.get(dataset).user_folder:  # before --set, which wins
    config = configs.for_folder(config)
  config = configs.override(config, overrides)
  given = [(f"--config.{k}={validation.show(v)}", k, v) for k, v in from_file.items()] + [
      (f"--set={item}", item.split("=", 1)[0], config[item.split("=", 1)[0]])
      for item in overrides if item.split("=", 1)[0] in owned]
  for item, key, value in given:
    if key in owned and (value != flagged[key] or (key == "method" and len(chosen) > 1)):
      raise configs.ConfigError(
          f"{item} disagrees with {owned[key]} ({key}="
          f"{', '.join(chosen) if key == 'method' else validation.show(flagged[key])}, "
          f"the flag's value or default): set {key} with {owned[key]} only")
  for m in chosen:
    validation.validate(_with(config, method=m))
  return config, list(chosen)


def run(config, methods, *, workdir: str, score_dir=None, scores_csv=None,
        quiet: bool = False, contamination: float = 0.1,
        threshold_holdout: float = 0.2) -> int:
  """Runs every method, holding the work dir's lock; returns the process exit code.
  `quiet` drops the training progress lines; `contamination` and `threshold_holdout`
  place the threshold of a `score_dir` fit (`api.OneClassClassifier`)."""
  progress = loop.Progress(printer=(lambda line: None) if quiet else None)
  try:
    threshold = dict(contamination=contamination, threshold_holdout=threshold_holdout)
    if score_dir:  # range-checked before any work starts
      api.OneClassClassifier(config=config, method=config.method, **threshold)
    workdir_lib.check_writable(workdir, "--workdir")
    if score_dir:
      out = scores_csv or os.path.join(workdir, "scores.csv")
      workdir_lib.check_writable(os.path.dirname(os.path.abspath(out)), "--scores_csv folder")
    with workdir_lib.lock(workdir):
      if score_dir:
        return _fit_and_score_folder(config, workdir, score_dir, scores_csv, progress,
                                     threshold)
      for m in methods:
        config.method = m
        recs = runner.run(config, workdir, progress=progress)
        for r in sorted(recs, key=lambda r: (r["normal_class"], r["seed"])):
          print(f"AUC {r['dataset']} class {r['normal_class']} {r['method']} seed {r['seed']} "
                f"rho {r['rho']:g}: {100 * r['auc']:.2f}")
    print(f"records: {os.path.join(workdir, 'results.jsonl')}")
    return 0
  except (configs.ConfigError, data.DataError, ValueError, workdir_lib.WorkdirBusy) as e:
    print(f"error: {workdir_lib.disk_full(e) or e}", file=sys.stderr)
    return 2


def _fit_and_score_folder(config, workdir, score_dir, scores_csv, progress,
                          threshold) -> int:
  """Fits a detector on the normal class and writes a CSV of (file, score, label) for
  score_dir; the images are checked before training, scored in chunks after it."""
  if len(config.normal_classes) != 1 or len(config.seeds) != 1:
    raise ValueError("--score_dir fits one detector: give one --normal_class and one seed")
  size = config.image_size if data.datasets.get(config.dataset).user_folder else None
  images, labels = data.load(config.dataset, "train", config.data_dir or None, image_size=size)
  normal = images[labels == config.normal_classes[0]]
  scoring.check_folder(score_dir)
  clf = api.OneClassClassifier(config=config, method=config.method, rho=config.rho,
                               seed=config.seeds[0], **threshold)
  clf.fit(normal, workdir=workdir, progress=progress)
  clf.save(os.path.join(workdir, "detector"), overwrite=True)  # this command's own output
  out = scores_csv or os.path.join(workdir, "scores.csv")
  rows = scoring.write_scores_csv(clf, score_dir, out)
  print(f"detector: {os.path.join(workdir, 'detector')}; {rows} scores "
        f"(higher = more abnormal): {out}; picture: {scoring.picture_path(out)}")
  return 0
