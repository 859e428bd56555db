"""A detector for one's own images: fit on normal images, score new ones, save, load.

    clf = dsplit_jax.OneClassClassifier(preset="cpu", contamination=0.05).fit(good_images)
    scores = clf.score(new_images)        # higher = more abnormal (= decision_function)
    labels = clf.predict(new_images)      # 1 = abnormal: score above clf.threshold_
    clf.save("detector"); clf = dsplit_jax.OneClassClassifier.load("detector")

It runs the same pipeline as the benchmarks, with a single job. The names after
fit (`decision_scores_`, `threshold_`, `predict`, `predict_proba`) are PyOD's, so
code written for PyOD detectors can use this one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import loop
from dsplit_jax import methods
from dsplit_jax import pipeline
from dsplit_jax import runner
from dsplit_jax import train


default_preset = configs.default_preset


def threshold(train_scores, contamination: float) -> float:
  """The score above which a `contamination` fraction of the training images lie."""
  return float(np.quantile(np.asarray(train_scores, np.float64), 1.0 - contamination))


def abnormal_probability(scores, train_scores) -> np.ndarray:
  """[N, 2] (normal, abnormal): scores min-max scaled by the training scores, clipped.

  PyOD's "linear" method: a rank-free, monotone map to [0, 1]; it is no
  calibrated probability, only comparable across detectors.
  """
  lo, hi = float(np.min(train_scores)), float(np.max(train_scores))
  s = np.asarray(scores, np.float64)
  p = (s - lo) / (hi - lo) if hi > lo else (s > hi).astype(np.float64)
  p = np.clip(p, 0.0, 1.0)
  return np.stack([1.0 - p, p], axis=1)


def as_images(images, image_shape=None) -> np.ndarray:
  """uint8 or [0, 1] float images, [N,H,W] or [N,H,W,C], as float32 [N,H,W,C]."""
  x = np.asarray(images)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[0] == 0:
    raise ValueError(f"expected a non-empty batch of images [N,H,W(,C)], got shape {x.shape}")
  if x.dtype == np.uint8:
    x = data.preprocessing.unit_interval(x)
  else:
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
      raise ValueError("float images must be finite and in [0, 1] (or pass uint8)")
  if image_shape is not None and x.shape[1:] != (*image_shape,):
    raise ValueError(f"images have shape {x.shape[1:]}, the detector was fit on {image_shape}")
  if x.shape[1] != x.shape[2] or x.shape[1] % 4:
    raise ValueError(f"images must be square with a side that is a multiple of 4, got "
                     f"{x.shape[1]}x{x.shape[2]} (resize them, e.g. data.load_image_files)")
  return x


class OneClassClassifier:
  """The paper's one-class classifier (or an ablation: `method`) for any square images."""

  def __init__(self, preset: str | None = None, *, method: str = "dsplit", rho: float = 10.0,
               seed: int = 0, contamination: float = 0.1,
               config: ml_collections.ConfigDict | None = None):
    if methods.get(method).fitted_params is None:
      raise ValueError(f"method must be one of {', '.join(methods.DETECTORS)}, got "
                       f"{method!r}")
    if not 0 < contamination <= 0.5:
      raise ValueError(f"contamination is the expected fraction of abnormal training images, "
                       f"in (0, 0.5]; got {contamination!r}")
    self.contamination = float(contamination)
    self.decision_scores_ = None  # Scores of the training images, set by fit.
    self.threshold_ = None
    self.config = config if config is not None else configs.get_preset(preset or default_preset())
    self.config.method, self.config.rho, self.config.seeds = method, float(rho), (int(seed),)
    self.config.dataset, self.config.normal_classes = "folder", (0,)
    self.image_shape = None
    self._fitted = None
    self._programs = None  # pipeline.Programs of the fitted config and image shape

  def fit(self, images, *, workdir: str | None = None, progress=None) -> "OneClassClassifier":
    """Trains on normal images only; `workdir` makes the training resumable."""
    x = as_images(images)
    if len(x) < 4:
      raise ValueError(f"need at least 4 normal images to split and pair, got {len(x)}")
    configs.validate(self.config, check_dataset=False)
    jobs = data.Jobs.of_images(x, self.config.seeds[0])
    run_dir = os.path.join(workdir, "run") if workdir else None
    if run_dir:
      runner.check_run_dir(run_dir, self.config)
    self._programs = pipeline.make_programs(self.config, x.shape[1:])
    fitted = runner.fit(self._programs, self.config.method, jobs, workdir=workdir,
                        run_dir=run_dir, progress=progress or loop.Progress())
    key = methods.get(self.config.method).fitted_params
    self._fitted = {key: fitted[key]}
    self.image_shape = x.shape[1:]
    self.decision_scores_ = self.score(x)
    self.threshold_ = threshold(self.decision_scores_, self.contamination)
    return self

  def score(self, images) -> np.ndarray:
    """Anomaly scores, higher = more abnormal.

    Scored in batches of `config.eval_batch_size` images, the last one padded, so that
    any number of images runs one compiled program (each new N would compile again).
    """
    self._check_fitted()
    x = np.asarray(images)
    if len(x) == 0:
      as_images(x)  # raises the usual message
    return np.concatenate([self._score_batch(as_images(x[i:i + self.batch_size],
                                                       self.image_shape))
                           for i in range(0, len(x), self.batch_size)])

  def score_files(self, paths_or_dir, *, check: bool = True):
    """Yields (names, scores) for image files, reading `batch_size` images at a time.

    `paths_or_dir`: a folder, a file or a list of files (see `data.load_image_files`);
    images are resized to the detector's size and channels. With `check`, every file is
    opened once before any is scored, so a bad one stops the work before it starts.
    """
    self._check_fitted()
    size, channels = self.image_shape[0], self.image_shape[-1]
    if size != self.image_shape[1]:
      raise ValueError(f"files are resized to squares; this detector takes {self.image_shape}")
    for images, names in data.iter_image_files(paths_or_dir, size, channels=channels,
                                               chunk_size=self.batch_size, check=check):
      yield names, self._score_batch(as_images(images, self.image_shape))

  @property
  def batch_size(self) -> int:
    """Images per compiled scoring call."""
    return int(self.config.eval_batch_size)

  def _score_batch(self, x) -> np.ndarray:
    """Scores of up to `batch_size` images, padded with blank images to exactly that many."""
    n = len(x)
    if n < self.batch_size:
      x = np.concatenate([x, np.zeros((self.batch_size - n,) + x.shape[1:], x.dtype)])
    if self._programs is None:  # parameters set by hand, not by fit or load
      self._programs = pipeline.make_programs(self.config, self.image_shape)
    return runner.score(self._programs, self.config.method, self._fitted, x)[0][:n]

  def _check_fitted(self):
    if self._fitted is None:
      raise RuntimeError("call fit() or load() first")

  def decision_function(self, images) -> np.ndarray:
    """The same as `score` (PyOD's and scikit-learn's name)."""
    return self.score(images)

  def predict(self, images) -> np.ndarray:
    """1 for images scored above `threshold_` (abnormal), else 0."""
    return (self.score(images) > self._threshold()).astype(np.int64)

  def predict_proba(self, images) -> np.ndarray:
    """[N, 2] probabilities of (normal, abnormal); see `abnormal_probability`."""
    self._threshold()
    return abnormal_probability(self.score(images), self.decision_scores_)

  def _threshold(self) -> float:
    self._check_fitted()
    if self.threshold_ is None:
      raise RuntimeError("this detector was saved without training scores: fit it again "
                         "to get threshold_")
    return self.threshold_

  def save(self, path: str, *, overwrite: bool = False) -> None:
    """Writes `detector.json` and `params.msgpack` into a new folder `path`.

    They are written to a temporary folder beside it, then renamed into place, so a
    crash never leaves half a detector; a non-empty `path` is only replaced with
    `overwrite=True`.
    """
    if self._fitted is None:
      raise RuntimeError("nothing to save: call fit() first")
    path = os.path.abspath(path)
    if os.path.exists(path) and not (os.path.isdir(path) and not os.listdir(path)) \
        and not overwrite:
      raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True to "
                            "replace it")
    meta = {"config": json.loads(self.config.to_json_best_effort()),
            "image_shape": list(self.image_shape), "contamination": self.contamination,
            "threshold": self.threshold_}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=os.path.dirname(path))
    try:
      with open(os.path.join(tmp, "detector.json"), "w") as f:
        json.dump(meta, f, indent=2)
      if self.decision_scores_ is not None:
        np.save(os.path.join(tmp, "decision_scores.npy"), self.decision_scores_)
      with open(os.path.join(tmp, "params.msgpack"), "wb") as f:
        f.write(flax.serialization.to_bytes(self._fitted))
      old = None
      if os.path.lexists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=os.path.dirname(path))
        os.replace(path, os.path.join(old, "detector"))
      os.replace(tmp, path)
      if old:
        shutil.rmtree(old)
    finally:
      if os.path.isdir(tmp):
        shutil.rmtree(tmp)

  @classmethod
  def load(cls, path: str) -> "OneClassClassifier":
    """A saved detector; any unreadable or inconsistent file is a ValueError naming it."""
    meta_path = os.path.join(path, "detector.json")
    params_path = os.path.join(path, "params.msgpack")
    for p in (meta_path, params_path):
      if not os.path.exists(p):
        raise FileNotFoundError(f"{p}: no saved detector here")
    try:
      with open(meta_path) as f:
        meta = json.load(f)
      config = configs.from_saved(meta["config"])
      image_shape = (*map(int, meta["image_shape"]),)
      clf = cls(config=config, method=config.method, rho=config.rho, seed=config.seeds[0],
                contamination=meta.get("contamination", 0.1))
      configs.validate(clf.config, check_dataset=False)
      # Shapes only (from_bytes replaces every leaf): nothing to compile or run.
      template = jax.eval_shape(lambda: _template(config, image_shape))
    except Exception as e:  # JSON, a missing key, a bad field: all mean "edited or torn".
      raise ValueError(f"{meta_path}: not a detector's description ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:200]})") from None
    try:
      with open(params_path, "rb") as f:
        fitted = flax.serialization.from_bytes(template, f.read())
    except Exception as e:  # msgpack raises many types for a truncated file.
      raise ValueError(f"{params_path}: cannot be read ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:200]})") from None
    for (key, want), got in zip(jax.tree_util.tree_leaves_with_path(template),
                                jax.tree.leaves(fitted)):
      if np.shape(got) != np.shape(want):
        raise ValueError(f"{params_path}: {jax.tree_util.keystr(key)} has shape "
                         f"{np.shape(got)}, but {meta_path} describes {np.shape(want)}")
    clf.image_shape, clf._fitted = image_shape, fitted
    clf._programs = pipeline.make_programs(clf.config, image_shape)
    scores_path = os.path.join(path, "decision_scores.npy")
    if os.path.exists(scores_path):  # Detectors saved before thresholds have none.
      try:
        clf.decision_scores_ = np.load(scores_path)  # allow_pickle=False: nothing unpickled
      except Exception as e:  # an object array, a torn or foreign file
        raise ValueError(f"{scores_path}: cannot be read ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from None
      clf.threshold_ = meta["threshold"]
    return clf


def _template(config, image_shape):
  """Parameter shapes of a fitted detector, stacked over one job, for deserialising."""
  x = np.zeros((2, *image_shape), np.float32)
  key = jax.random.PRNGKey(0)
  which = methods.get(config.method).fitted_params
  if which == "params":
    model = train.make_classifier(config)
    params = model.init(key, x, method=model.init_all)
  else:
    params = train.make_autoencoder(config, image_shape).init(key, x)
  return {which: jax.tree.map(lambda a: jnp.asarray(a)[None], params)}
