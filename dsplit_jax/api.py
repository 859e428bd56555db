"""A detector for one's own images: fit on normal images, score new ones, save, load.

    clf = dsplit_jax.OneClassClassifier(preset="cpu", contamination=0.05).fit(good_images)
    scores = clf.decision_function(new_images)  # higher = more abnormal (= score)
    labels = clf.predict(new_images)            # 1 = abnormal: score above clf.threshold_
    clf.save("detector"); clf = dsplit_jax.OneClassClassifier.load("detector")

Every method of `methods.METHODS` (the paper's, its two ablations and the five
baselines of Table 1) runs behind the same calls, so one word (`method=`) switches
between them; each runs a single job of the benchmarks' pipeline.

The detector follows PyOD's `BaseDetector` contract: `fit(X, y=None)` (y is ignored),
`decision_scores_`, `threshold_`, `labels_`, `decision_function`, `predict(X, return_confidence=...)`,
`predict_proba(X, method="linear" | "unify", return_confidence=...)`,
`predict_confidence`, `predict_with_rejection`, `predict_rank`, `fit_predict`; and
scikit-learn's: a `BaseEstimator` (`get_params`, `set_params`, `sklearn.base.clone`,
a repr with the parameters), `NotFittedError` before `fit` or `load`. A classical
method's fitted scikit-learn estimator is `estimator_`, its fitted attributes the
detector's own (PyOD's `IForest.estimators_`, `OCSVM.support_vectors_`, ...).

The threshold: `contamination` is the false-positive rate accepted on normal images.
By default (`threshold_holdout=0.2`) a random fifth of the normal images is held out,
the detector is fit on the rest, and `threshold_` is the `100 * (1 - contamination)`
percentile of the held-out images' scores: out of sample, so new normal images land
above it at about that rate. In-sample scores are lower than new ones (a network or an
OCSVM fits its training images), so PyOD's in-sample percentile, `threshold_holdout=0`,
flags more new normal images than `contamination` says. `calibrate(X_val, y_val)` sets
the threshold from labelled images instead (a target false-positive rate or best F1).
"""

from __future__ import annotations

import inspect
import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats
import sklearn.base
import sklearn.exceptions
import sklearn.metrics

from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import loop
from dsplit_jax import methods
from dsplit_jax import pictures
from dsplit_jax import pipeline
from dsplit_jax import runner
from dsplit_jax import split
from dsplit_jax import train
from dsplit_jax import validation
from dsplit_jax import workdir as workdir_lib
from dsplit_jax.baselines import classical
from dsplit_jax.baselines import dsvdd


default_preset = configs.default_preset
PROBABILITY_METHODS = ("linear", "unify")
CALIBRATION_TARGETS = ("fpr", "f1")
REJECTED = -2  # predict_with_rejection's label for a rejected image (PyOD's)


# ------------------------------------------------- functions of scores (PyOD's)

def threshold(train_scores, contamination: float) -> float:
  """The `100 * (1 - contamination)` percentile of the training scores: the score
  above which a `contamination` share of the training images lie."""
  return float(np.percentile(np.asarray(train_scores, np.float64),
                             100 * (1.0 - contamination)))


def holdout_split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(indices to fit on, indices held out for the threshold) of n images: a random
  `holdout` share (at least one image) held out, none when `holdout` is 0."""
  if holdout == 0:
    return np.arange(n), np.arange(0)
  order = np.random.default_rng(seed).permutation(n)
  k = max(1, int(round(n * holdout)))
  return np.sort(order[k:]), np.sort(order[:k])


def best_f1_threshold(scores, y) -> float:
  """The score threshold (label 1 = score above it) with the best F1 of `y` (1 =
  abnormal): anomalib's adaptive threshold, placed halfway between the scores on
  either side of the cut so that `score > threshold` reproduces it."""
  s, y = np.asarray(scores, np.float64), np.asarray(y).astype(bool)
  order = np.argsort(-s, kind="stable")
  s, y = s[order], y[order]
  tp = np.cumsum(y)  # flagging the top i + 1 scores
  f1 = 2 * tp / (np.arange(1, len(s) + 1) + y.sum())
  # A cut can only fall between distinct scores: keep the last index of each run.
  last = np.r_[s[1:] != s[:-1], True]
  i = int(np.flatnonzero(last)[np.argmax(f1[last])])
  return float((s[i] + s[i + 1]) / 2) if i + 1 < len(s) else float(np.nextafter(s[i], -np.inf))


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


def unified_probability(scores, train_scores) -> np.ndarray:
  """[N, 2] (normal, abnormal): PyOD's "unify" method (Kriegel et al., "Interpreting
  and unifying outlier scores", SDM 2011): erf of the scores standardised by the mean
  and (population) standard deviation of the training scores, clipped to [0, 1].
  With all training scores equal, above them is abnormal."""
  train = np.asarray(train_scores, np.float64)
  mu, sigma = float(train.mean()), float(train.std())
  s = np.asarray(scores, np.float64)
  p = (scipy.special.erf((s - mu) / (sigma * np.sqrt(2))) if sigma > 0
       else (s > mu).astype(np.float64))
  p = np.clip(p, 0.0, 1.0)
  return np.stack([1.0 - p, p], axis=1)


def confidence(scores, train_scores, contamination: float, threshold_: float) -> np.ndarray:
  """How surely each image would get the same label from a detector fit on a slightly
  different training set, in [0, 1]: ExCeed (Perini, Vercruyssen, Davis, ECML PKDD
  2020), as PyOD's `predict_confidence` documents it.

  The outlier probability of a score is (1 + k) / (2 + n), k of the n training scores
  being at or below it; the confidence of an "abnormal" label is the probability that
  at least n - floor(n * contamination) + 1 of n such draws are outliers; a "normal"
  label gets one minus that.
  """
  train = np.sort(np.asarray(train_scores, np.float64))
  n = len(train)
  s = np.asarray(scores, np.float64)
  p = (1 + np.searchsorted(train, s, side="right")) / (2 + n)
  conf = 1 - scipy.stats.binom.cdf(n - int(n * contamination), n, p)
  return np.where(s > threshold_, conf, 1 - conf)


def rank(scores, train_scores, normalized: bool = False) -> np.ndarray:
  """How many training scores lie below each score (PyOD's `_predict_rank`); with
  `normalized`, divided by the largest of these ranks."""
  ranks = np.searchsorted(np.sort(np.asarray(train_scores)), np.asarray(scores))
  return ranks / ranks.max() if normalized else ranks


def rejection_stats(n: int, contamination: float, *, T: float = 32, delta: float = 0.1,
                    c_fp: float = 1, c_fn: float = 1, c_r: float | None = None):
  """(expected rejection rate, its upper bound, upper bound of the cost) of rejecting
  the images whose ExCeed confidence is below 1 - 2 exp(-T), for a detector fit on n
  images (Perini, Buss, Davis, "Unsupervised anomaly detection with rejection",
  NeurIPS 2023, as PyOD's `compute_rejection_stats` states them).
  The upper bound on the rejection rate holds with probability 1 - delta; `c_r`
  (the cost of a rejection) defaults to the contamination."""
  g = contamination
  c_r = g if c_r is None or c_r < 0 else c_r
  k = int(n * g) - 1

  def quantile(level):  # p with binom.cdf(k, n, p) == level
    return scipy.optimize.brentq(lambda p: scipy.stats.binom.cdf(k, n, p) - level, 0, 1)

  q1, q2 = quantile(1 - np.exp(-T)), quantile(np.exp(-T))
  right = min(1.0, (n + 1 - g * (n + 2)) / n + T * (n + 2) / np.sqrt(2 * n ** 3 * T))
  inner = 0.5 * n ** 5 * (2 * n * (-3 * g ** 2 - 2 * n * (1 - g) ** 2 + 4 * g - 3)
                          + T * (n + 2) ** 2 - 8)
  left = max(0.0, (2 + n * (1 - g) * (n + 1)) / n ** 2 - np.sqrt(inner) / n ** 4)
  upper_rate = right - left + 2 * np.sqrt(np.log(2 / delta) / (2 * n))
  upper_cost = min(g, q1) * c_fp + min(1 - q2, g) * c_fn + (q2 - q1) * c_r
  return float(q2 - q1), float(upper_rate), float(upper_cost)


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


def make_progress(progress=None, verbose: bool = True) -> loop.Progress:
  """What `fit` reports through: `progress` (a `loop.Progress`, or any callable taking
  one line of text), else a `loop.Progress` printing to stdout; silent unless
  `verbose`."""
  if not verbose:
    return loop.Progress(printer=lambda line: None)
  if progress is None or isinstance(progress, loop.Progress):
    return progress or loop.Progress()
  if not callable(progress):
    raise TypeError(f"progress must be a loop.Progress or a callable taking a line, got "
                    f"{type(progress).__name__}")
  return loop.Progress(printer=progress)


def reconstruction_errors(config, ae_params, x) -> tuple[float, float, float]:
  """Mean squared errors on `x` of the autoencoder's reconstruction, of the mean image
  and of a flat image at each channel's mean pixel."""
  model = train.make_autoencoder(config, x.shape[1:])
  apply = jax.jit(lambda batch: model.apply(ae_params, batch))
  size = config.eval_batch_size
  recon = np.concatenate([np.asarray(apply(x[i:i + size])) for i in range(0, len(x), size)])
  mean_image = x.mean(axis=0, keepdims=True)
  flat = x.mean(axis=(0, 1, 2), keepdims=True)
  return tuple(float(np.mean(np.square(x - ref))) for ref in (recon, mean_image, flat))


def split_warning(config, ratio: float, recon_mse: float, mean_mse: float,
                  flat_mse: float) -> str | None:
  """One line saying why the split of a splitting method is unreliable and what to use
  instead, or None when the autoencoder beat the mean image (`ae.plateau_ratio`).

  The mean image is the reference of the plateau test, but it is only a weak
  reconstruction on varied images: on aligned objects it is a strong one (its MSE a
  small share of a flat image's), and an autoencoder that has learnt the object can
  still fall short of it. A flat image tells the two apart: an error nearer a flat
  image's than the mean image's means an output unrelated to the input (noise), one
  nearer the mean image's a coarse reconstruction whose SSIM ranking is unreliable.
  """
  if ratio <= config.ae.plateau_ratio:
    return None
  classical = ", ".join(methods.names(scorer="classical"))
  instead = f"use method='iforest' or another classical one ({classical}), or compare to pick one"
  what = "split" if methods.get(config.method).labels_from_split else "SSIM score"
  share = mean_mse / max(flat_mse, 1e-12)
  # Where the reconstruction lies between the mean image (0) and a flat image (1).
  towards_flat = (recon_mse - mean_mse) / max(flat_mse - mean_mse, 1e-12)
  if towards_flat >= 0.5:
    return (f"[{config.method}] the {what} is noise: the autoencoder never beat the mean "
            f"image and its output is close to a flat one (MSE {recon_mse:.3g}; mean image "
            f"{mean_mse:.3g}, flat {flat_mse:.3g}); {instead}")
  why = (f", which on these aligned images is a strong reconstruction ({share:.0%} of a "
         f"flat image's MSE)" if share < split.ALIGNED_SHARE else "")
  return (f"[{config.method}] the {what} is unreliable: the autoencoder never beat the "
          f"mean image (MSE ratio {ratio:.3g}){why}; {instead}")


# --------------------------------------------- what each kind of method stores
#
# `methods.get(name).scorer` says how a method scores, and so what a fitted detector
# holds: `_Networks` (the classifier or the splitting autoencoder), `_DeepSVDD` and
# `_Classical` (a scikit-learn estimator). Each one's `fit` returns a pytree of
# arrays, saved as params.msgpack; `_Classical` also saves its estimator.


class _Networks:
  """dsplit, naive_nn, nnwds (the classifier's logit) and ssim (the autoencoder's
  reconstruction): `runner.fit` and `runner.score` on one job."""

  @staticmethod
  def fit(clf, config, x, workdir, progress):
    jobs = data.Jobs.of_images(x, config.seeds[0])
    run_dir = os.path.join(workdir, "run") if workdir else None
    if run_dir:
      runner.check_run_dir(run_dir, config)
    clf._programs = pipeline.make_programs(config, x.shape[1:])
    fitted = runner.fit(clf._programs, config.method, jobs, workdir=workdir,
                        run_dir=run_dir, progress=progress)
    if "plateau_ratio" in fitted:
      clf.plateau_ratio_ = float(np.asarray(fitted["plateau_ratio"])[0])
      clf.split_warning_ = split_warning(
          config, clf.plateau_ratio_,
          *reconstruction_errors(config, jax.tree.map(lambda a: a[0], fitted["ae_params"]),
                                 x[:config.ae.plateau_images]))
      if clf.split_warning_:
        progress.printer(clf.split_warning_)
    key = methods.get(config.method).fitted_params
    return {key: fitted[key]}

  @staticmethod
  def score(clf, x):
    if clf._programs is None:  # loaded, or parameters set by hand
      clf._programs = pipeline.make_programs(clf.config_, clf.image_shape_)
    return runner.score(clf._programs, clf.config_.method, clf._fitted, x)[0]

  @staticmethod
  def template(config, image_shape):
    x = np.zeros((2, *image_shape), np.float32)
    key = jax.random.PRNGKey(0)
    which = methods.get(config.method).fitted_params
    if which == "params":
      model = train.make_classifier(config)
      params = model.init(key, x, method=model.init_all)
    else:
      params = train.make_autoencoder(config, image_shape).init(key, x)
    return {which: jax.tree.map(lambda a: jnp.asarray(a)[None], params)}


class _DeepSVDD:
  """Deep SVDD (baselines/dsvdd.py): its network, centre and min-max scaling."""

  @staticmethod
  def fit(clf, config, x, workdir, progress):
    del clf, workdir  # Deep SVDD trains in one go; nothing to resume.
    jobs = data.Jobs.of_images(x, config.seeds[0])
    pool, _, affine = dsvdd.prepare(config.dsvdd.preprocessing, jobs.pool, jobs.train_idx,
                                    jobs.train_count, None, job_classes=jobs.classes)
    return {"dsvdd": dsvdd.train(config.dsvdd, pool, jobs.train_idx, jobs.train_count,
                                 jobs.keys, job_affine=affine, progress=progress,
                                 conv_impl=config.model.conv_impl)}

  @staticmethod
  def score(clf, x):
    config = clf.config_
    x = dsvdd.prepare_new(config.dsvdd.preprocessing, x)
    return dsvdd.score_trained(config.dsvdd, clf._fitted["dsvdd"], x,
                               config.model.conv_impl)[0]

  @staticmethod
  def template(config, image_shape):
    return {"dsvdd": dsvdd.init_trained(config.dsvdd, image_shape, 1,
                                        config.model.conv_impl)}


class _Classical:
  """OCSVM, HOG + OCSVM, Isolation Forest (baselines/classical.py) on the images as
  `config.classical.preprocessing` prepares them; the arrays hold that preprocessing's
  (lo, hi) bounds, the estimator is saved with skops."""

  model_file = "model.skops"
  # scikit-learn types skops does not trust by default that the detectors hold: the
  # Isolation Forest's trees. A file naming any other such type is refused.
  trusted_types = ("sklearn.tree._tree.Tree",)

  @staticmethod
  def _prepare(config, x, bounds):
    if config.classical.preprocessing == "none":
      return x
    x = data.preprocessing.global_contrast_normalization(x, "l1")
    lo, hi = float(bounds[0]), float(bounds[1])
    return (x - lo) / np.asarray(hi - lo, x.dtype)  # as data.preprocessing.gcn_minmax

  @classmethod
  def fit(cls, clf, config, x, workdir, progress):
    del workdir  # fitted in one go; nothing to resume
    bounds = np.array([0.0, 1.0])
    if config.classical.preprocessing != "none":
      bounds = np.array(data.preprocessing.minmax_bounds(
          data.preprocessing.global_contrast_normalization(x, "l1")))
      if not bounds[1] > bounds[0]:
        raise ValueError(f"min-max scaling undefined: the GCN'd training images are "
                         f"constant ({bounds[0]})")
    clf._estimator = classical.fit(config.method, cls._prepare(config, x, bounds),
                                   config.classical, config.seeds[0])
    progress.printer(f"[{config.method}] fit on {len(x)} images")
    return {"classical": {"bounds": bounds}}

  @classmethod
  def score(cls, clf, x):
    return clf._estimator.scores(cls._prepare(clf.config_, x,
                                              clf._fitted["classical"]["bounds"]))

  @staticmethod
  def template(config, image_shape):
    del config, image_shape
    return {"classical": {"bounds": jnp.zeros(2)}}

  @classmethod
  def save(cls, clf, folder):
    import skops.io  # pylint: disable=g-import-not-at-top
    skops.io.dump(clf._estimator.estimator, os.path.join(folder, cls.model_file))

  @classmethod
  def load(cls, clf, folder):
    """The estimator `save` wrote. skops rebuilds it from a description of its fields
    (no pickle), and only types scikit-learn's own or in `trusted_types`; still, load
    only detectors this library saved."""
    import skops.io  # pylint: disable=g-import-not-at-top
    path = os.path.join(folder, cls.model_file)
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: no saved {clf.config_.method} estimator here")
    try:
      estimator = skops.io.load(path, trusted=list(cls.trusted_types))
    except Exception as e:  # a torn zip, an untrusted type, a wrong format: all unreadable
      raise ValueError(f"{path}: cannot be read ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:200]})") from None
    model = classical.make(clf.config_.method, clf.config_.classical, clf.config_.seeds[0])
    if type(estimator) is not type(model.estimator):
      raise ValueError(f"{path}: holds a {type(estimator).__name__}, but "
                       f"{clf.config_.method} uses a {type(model.estimator).__name__}")
    model.estimator = estimator
    clf._estimator = model


# Keyed by `Method.scorer` (not by method name).
_KINDS = {
    "classifier": _Networks,
    "ssim": _Networks,
    "dsvdd": _DeepSVDD,
    "classical": _Classical,
}


def _kind(method: str):
  return _KINDS[methods.get(method).scorer]


# ------------------------------------------------------------------ the detector


class OneClassClassifier(sklearn.base.BaseEstimator):
  """A one-class detector for square images: the paper's method or any other of
  `methods.METHODS` (`method`).

  preset: a preset of `dsplit_jax.configs` (the default one for this machine when
    None); `config`: a whole ConfigDict instead. Neither is changed: `fit` works on a
    copy, `config_`, with `method`, `rho` and `seed` set.
  contamination: the false-positive rate accepted on normal images, in (0, 0.5]:
    `threshold_` is the `100 * (1 - contamination)` percentile of the held-out scores.
  threshold_holdout: the share of the normal images held out of the fit to place the
    threshold, in [0, 0.5); 0 places it on the training scores (PyOD's rule). 0.2 (the
    default) keeps four fifths for the fit and, with 500 images, 100 for a 5% cut.
  verbose: False silences the progress lines of `fit` (a `compiling` line, then a bar
  with steps/s and ETA per chunk of each training phase).

  Fitted attributes: `config_`, `image_shape_`, `decision_scores_` (every image of
  `X` scored by the fitted detector, the held-out ones included), `holdout_scores_`
  (the held-out images' scores; the training scores when `threshold_holdout` is 0),
  `threshold_`, `threshold_source_` ("holdout", "training", "calibrated fpr" or
  "calibrated f1"), `labels_` (1 = `decision_scores_` above `threshold_`). Unlike
  PyOD, with a holdout `labels_` flags about `contamination` of the held-out images
  but fewer of the images the detector was fit on. The splitting methods (dsplit,
  nnwds, ssim) also set `plateau_ratio_` (the autoencoder's reconstruction MSE over the
  mean image's) and `split_warning_`: None, or the line `fit` printed to say why the
  split is unreliable and which method to use instead (`split_warning`). The classical
  methods (ocsvm, hog_ocsvm, iforest) also give `estimator_`, their fitted
  scikit-learn estimator, and its fitted attributes as their own, as PyOD's wrappers
  of the same estimators do (`estimators_`, `offset_`, `support_vectors_`, ...).
  `save` and `load` keep every fitted attribute.
  """

  def __init__(self, preset: str | None = None, *, method: str = "dsplit", rho: float = 10.0,
               seed: int = 0, contamination: float = 0.1, threshold_holdout: float = 0.2,
               config: ml_collections.ConfigDict | None = None, verbose: bool = True):
    self.preset = preset
    self.method = method
    self.rho = rho
    self.seed = seed
    self.contamination = contamination
    self.threshold_holdout = threshold_holdout
    self.config = config
    self.verbose = verbose
    self._check_params()
    self._fitted = None     # pytree of arrays (params.msgpack), set by fit or load
    self._estimator = None  # classical.Fitted of the classical methods
    self._programs = None   # pipeline.Programs of the fitted config and image shape

  def __repr__(self) -> str:
    """The class and the parameters that differ from their defaults, as scikit-learn's
    repr; a `config` is shown by its preset, not field by field."""
    defaults = inspect.signature(type(self).__init__).parameters
    shown = []
    for name, value in self.get_params(deep=False).items():
      if value is defaults[name].default or (name != "config" and
                                             value == defaults[name].default):
        continue
      text = (f"<ConfigDict of preset {value.get('preset')!r}>" if name == "config"
              else repr(value))
      shown.append(f"{name}={text}")
    return f"{type(self).__name__}({', '.join(shown)})"

  def _check_params(self):
    methods.get(self.method)  # ValueError naming the choices
    if not 0 < self.contamination <= 0.5:
      raise ValueError(f"contamination is the false-positive rate accepted on normal "
                       f"images, in (0, 0.5]; got {self.contamination!r}")
    if not 0 <= self.threshold_holdout < 0.5:
      raise ValueError(f"threshold_holdout is the share of normal images held out to place "
                       f"the threshold, in [0, 0.5); got {self.threshold_holdout!r}")

  def _make_config(self) -> ml_collections.ConfigDict:
    """`config` (or `preset`) with this detector's method, rho and seed, as a copy."""
    source = (self.config if self.config is not None
              else configs.get_preset(self.preset or default_preset()))
    config = source.copy_and_resolve_references()  # the caller's config stays as it was
    config.update(method=self.method, rho=float(self.rho), seeds=(int(self.seed),),
                  dataset="folder", normal_classes=(0,))
    if self.config is None:
      config = configs.for_folder(config)
    return config

  # ------------------------------------------------------------------- fit, score

  def fit(self, X, y=None, *, workdir: str | None = None, progress=None,
          verbose: bool | None = None) -> "OneClassClassifier":
    """Trains on normal images `X` only; `y` is ignored (PyOD's signature).

    workdir: makes the training of the network methods resumable.
    progress: a `loop.Progress`, or any callable taking one line of text (e.g.
      `lines.append`, `logging.info`); the default prints to stdout.
    verbose: overrides the detector's `verbose` for this call.
    """
    del y
    self._check_params()
    x = as_images(X)
    fit_idx, held_idx = holdout_split(len(x), self.threshold_holdout, int(self.seed))
    if len(fit_idx) < 4:
      raise ValueError(f"need at least 4 normal images to split and pair, got "
                       f"{len(fit_idx)} ({len(x)} less {len(held_idx)} held out for the "
                       f"threshold)")
    config = self._make_config()
    validation.validate(config, check_dataset=False)
    progress = make_progress(progress, self.verbose if verbose is None else verbose)
    self._fitted = self._estimator = self._programs = None
    self.split_warning_ = self.plateau_ratio_ = None
    self.config_, self.image_shape_ = config, x.shape[1:]
    self._fitted = _kind(config.method).fit(self, config, x[fit_idx], workdir, progress)
    scores = self.decision_function(x)
    if len(held_idx):
      progress.printer(f"[{config.method}] threshold placed on the {len(held_idx)} "
                       f"held-out normal images")
      self._set_decision_scores(scores, scores[held_idx], "holdout")
    else:
      self._set_decision_scores(scores, scores, "training")
    return self

  def _set_decision_scores(self, scores, holdout_scores, source: str, threshold_=None):
    """PyOD's `_process_decision_scores`, the threshold from `holdout_scores` (or
    `threshold_` as given): threshold_, labels_ and the mean and standard deviation
    ("unify") of the training scores."""
    self.decision_scores_ = np.asarray(scores)
    self.holdout_scores_ = np.asarray(holdout_scores)
    self.threshold_ = (threshold(self.holdout_scores_, self.contamination)
                       if threshold_ is None else float(threshold_))
    self.threshold_source_ = source
    self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
    self._mu = float(np.mean(self.decision_scores_))
    self._sigma = float(np.std(self.decision_scores_))

  def calibrate(self, X, y, *, target: str = "fpr", fpr: float | None = None
                ) -> "OneClassClassifier":
    """Sets `threshold_` from labelled images `X` (y: 1 = abnormal, 0 = normal):

    target="fpr": the `100 * (1 - fpr)` percentile of the normal images' scores, so
      about `fpr` (default: `contamination`) of new normal images land above it;
    target="f1": the threshold of the best F1 on `X` (anomalib's adaptive threshold;
      needs both classes).
    `labels_` follows the new threshold; `decision_scores_` stay the training scores.
    """
    self._check_fitted()
    if target not in CALIBRATION_TARGETS:
      raise ValueError(f"target must be one of {', '.join(CALIBRATION_TARGETS)}, got "
                       f"{target!r}")
    fpr = self.contamination if fpr is None else fpr
    if not 0 < fpr < 1:
      raise ValueError(f"fpr is the false-positive rate to accept, in (0, 1); got {fpr!r}")
    y = np.asarray(y)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
      raise ValueError("y must be a 1-D array of 0 (normal) and 1 (abnormal)")
    if len(y) != len(X):
      raise ValueError(f"X has {len(X)} images but y has {len(y)} labels")
    scores = self.decision_function(X)
    if target == "fpr":
      if not (y == 0).any():
        raise ValueError('target="fpr" needs normal images (y == 0) in X')
      t = threshold(scores[y == 0], fpr)
    else:
      if (y == 0).all() or (y == 1).all():
        raise ValueError('target="f1" needs both normal (0) and abnormal (1) images')
      t = best_f1_threshold(scores, y)
    self._set_decision_scores(self.decision_scores_, self.holdout_scores_,
                              f"calibrated {target}", threshold_=t)
    return self

  def __getattr__(self, name: str):
    """Only reached for names the detector lacks: `estimator_` and the public fitted
    attributes (`name_`) of a classical method's scikit-learn estimator."""
    # __dict__, not self._estimator: before __init__ (unpickling, copying) a lookup of
    # _estimator would land here again.
    fitted = self.__dict__.get("_estimator")
    if fitted is not None and name.endswith("_") and not name.startswith("_"):
      if name == "estimator_":
        return fitted.estimator
      try:
        return getattr(fitted.estimator, name)
      except AttributeError:
        pass
    raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

  def __sklearn_is_fitted__(self) -> bool:
    return self._fitted is not None

  def _check_fitted(self):
    if self._fitted is None:
      raise sklearn.exceptions.NotFittedError(
          f"this {type(self).__name__} is not fitted yet: call fit() or load() first")

  @property
  def image_shape(self):
    """(H, W, C) of the images the detector was fit on; None before."""
    return getattr(self, "image_shape_", None)

  @image_shape.setter
  def image_shape(self, shape):
    """Set by hand with `_fitted` (benchmarks of scoring, tests): a detector that was
    never fit, whose config is then this detector's (`config_`)."""
    self.image_shape_ = tuple(shape)
    if not hasattr(self, "config_"):
      self.config_ = self._make_config()

  def score(self, X) -> np.ndarray:
    """Anomaly scores, higher = more abnormal.

    The network methods score in batches of `config_.eval_batch_size` images, the last
    one padded, so that any number of images runs one compiled program (each new N
    would compile again).
    """
    self._check_fitted()
    x = np.asarray(X)
    if len(x) == 0:
      as_images(x)  # raises the usual message
    return np.concatenate([self._score_batch(as_images(x[i:i + self.batch_size],
                                                       self.image_shape_))
                           for i in range(0, len(x), self.batch_size)])

  def decision_function(self, X) -> np.ndarray:
    """The same as `score` (PyOD's and scikit-learn's name)."""
    return self.score(X)

  def score_files(self, paths_or_dir, *, check: bool = True):
    """Yields (names, scores) for image files, reading `batch_size` images at a time.

    `paths_or_dir`: a folder, a file or a list of files (see `data.load_image_files`);
    images are resized to the detector's size and channels. With `check`, every file is
    opened once before any is scored, so a bad one stops the work before it starts.
    """
    self._check_fitted()
    size, channels = self.image_shape_[0], self.image_shape_[-1]
    if size != self.image_shape_[1]:
      raise ValueError(f"files are resized to squares; this detector takes {self.image_shape_}")
    for images, names in data.iter_image_files(paths_or_dir, size, channels=channels,
                                               chunk_size=self.batch_size, check=check):
      yield names, self._score_batch(as_images(images, self.image_shape_))

  def save_scores_picture(self, out_png: str, names, scores, score_dir, *, k: int = 8,
                          title: str = "") -> str:
    """`pictures.save_scores_picture` of a folder this detector scored (`score_files`):
    its k most and least abnormal images and the histogram of `scores` with
    `threshold_`, read at the detector's image size and channels."""
    self._check_fitted()
    return pictures.save_scores_picture(
        out_png, names, scores, score_dir, threshold=getattr(self, "threshold_", None),
        image_size=self.image_shape_[0], channels=self.image_shape_[-1], k=k, title=title)

  @property
  def batch_size(self) -> int:
    """Images per scoring call (one compiled program for the network methods)."""
    return int(self.config_.eval_batch_size)

  def _score_batch(self, x) -> np.ndarray:
    """Scores of up to `batch_size` images; for the compiled methods the batch is
    padded with blank images to exactly that many."""
    kind = _kind(self.config_.method)
    if kind is _Classical:
      return kind.score(self, x)
    n = len(x)
    if n < self.batch_size:
      x = np.concatenate([x, np.zeros((self.batch_size - n,) + x.shape[1:], x.dtype)])
    return kind.score(self, x)[:n]

  # ---------------------------------------------------------- PyOD's predictions

  def _threshold(self) -> float:
    self._check_fitted()
    if getattr(self, "threshold_", None) is None:
      raise sklearn.exceptions.NotFittedError(
          "this detector was saved without training scores: fit it again to get "
          "threshold_")
    return self.threshold_

  def predict(self, X, return_confidence: bool = False):
    """1 for images scored above `threshold_` (abnormal), else 0; with
    `return_confidence`, also `predict_confidence`'s values."""
    t = self._threshold()
    scores = self.decision_function(X)
    labels = (scores > t).astype(np.int64)
    if return_confidence:
      return labels, confidence(scores, self.decision_scores_, self.contamination, t)
    return labels

  def predict_proba(self, X, method: str = "linear", return_confidence: bool = False):
    """[N, 2] probabilities of (normal, abnormal): "linear" (`abnormal_probability`)
    or "unify" (`unified_probability`); with `return_confidence`, also
    `predict_confidence`'s values."""
    if method not in PROBABILITY_METHODS:
      raise ValueError(f"method must be one of {', '.join(PROBABILITY_METHODS)}, got "
                       f"{method!r}")
    t = self._threshold()
    scores = self.decision_function(X)
    to_proba = abnormal_probability if method == "linear" else unified_probability
    proba = to_proba(scores, self.decision_scores_)
    if return_confidence:
      return proba, confidence(scores, self.decision_scores_, self.contamination, t)
    return proba

  def predict_confidence(self, X) -> np.ndarray:
    """[N] confidence in [0, 1] of each image's `predict` label (`confidence`)."""
    t = self._threshold()
    return confidence(self.decision_function(X), self.decision_scores_, self.contamination, t)

  def predict_with_rejection(self, X, T: float = 32, return_stats: bool = False,
                             delta: float = 0.1, c_fp: float = 1, c_fn: float = 1,
                             c_r: float = -1):
    """`predict`'s labels, with REJECTED (-2) where the confidence is below
    1 - 2 exp(-T) (PyOD's rule); with `return_stats`, also `rejection_stats`'s
    [expected rejection rate, its upper bound, upper bound of the cost]. A negative
    `c_r` means the contamination (PyOD's default)."""
    if not 0 < delta < 1:
      raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    labels, conf = self.predict(X, return_confidence=True)
    self.rejection_threshold_ = 1 - 2 * np.exp(-T)
    labels[2 * np.abs(conf - 0.5) <= self.rejection_threshold_] = REJECTED
    if return_stats:
      stats = rejection_stats(len(self.decision_scores_), self.contamination, T=T,
                              delta=delta, c_fp=c_fp, c_fn=c_fn, c_r=c_r)
      return labels, list(stats)
    return labels

  def predict_rank(self, X, normalized: bool = False) -> np.ndarray:
    """How many training scores lie below each image's score (`rank`)."""
    self._threshold()
    return rank(self.decision_function(X), self.decision_scores_, normalized)

  _predict_rank = predict_rank  # PyOD's name, used by its score combination code

  def fit_predict(self, X, y=None) -> np.ndarray:
    """`fit(X)`, then the training images' labels (`labels_`), as PyOD."""
    return self.fit(X, y).labels_

  def fit_predict_score(self, X, y, scoring: str = "roc_auc_score") -> float:
    """`fit(X)`, then the training scores evaluated against labels `y` (1 = abnormal):
    "roc_auc_score", or "prc_n_score" (precision among the sum(y) highest scores).
    PyOD deprecates this method; it is here for code written for PyOD."""
    if scoring not in ("roc_auc_score", "prc_n_score"):
      raise NotImplementedError(f"scoring must be roc_auc_score or prc_n_score, got "
                                f"{scoring!r}")
    scores = self.fit(X).decision_scores_
    y = np.asarray(y)
    if scoring == "roc_auc_score":
      return float(sklearn.metrics.roc_auc_score(y, scores))
    top = np.argsort(-scores, kind="stable")[:int(y.sum())]
    return float(y[top].mean())

  # -------------------------------------------------------------------- save, load

  def save(self, path: str, *, overwrite: bool = False) -> None:
    """Writes `detector.json`, `params.msgpack` (and `model.skops` for the classical
    methods) into a new folder `path`.

    They are written to a temporary folder beside it, then renamed into place, so a
    crash never leaves half a detector; a non-empty `path` is only replaced with
    `overwrite=True`.
    """
    if self._fitted is None:
      raise sklearn.exceptions.NotFittedError("nothing to save: call fit() first")
    path = os.path.abspath(path)
    if os.path.exists(path) and not (os.path.isdir(path) and not os.listdir(path)) \
        and not overwrite:
      raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True to "
                            "replace it")
    meta = {"config": json.loads(self.config_.to_json_best_effort()),
            "image_shape": list(self.image_shape_), "contamination": self.contamination,
            "threshold_holdout": self.threshold_holdout,
            "threshold": getattr(self, "threshold_", None),
            "threshold_source": getattr(self, "threshold_source_", None),
            "plateau_ratio": getattr(self, "plateau_ratio_", None),
            "split_warning": getattr(self, "split_warning_", None)}
    with workdir_lib.replacing(path, folder=True) as tmp:
      with open(os.path.join(tmp, "detector.json"), "w") as f:
        json.dump(meta, f, indent=2)
      if getattr(self, "decision_scores_", None) is not None:
        np.save(os.path.join(tmp, "decision_scores.npy"), self.decision_scores_)
        np.save(os.path.join(tmp, "holdout_scores.npy"), self.holdout_scores_)
      with open(os.path.join(tmp, "params.msgpack"), "wb") as f:
        f.write(flax.serialization.to_bytes(self._fitted))
      kind = _kind(self.config_.method)
      if hasattr(kind, "save"):
        kind.save(self, tmp)

  @classmethod
  def load(cls, path: str) -> "OneClassClassifier":
    """A detector `save` wrote; any unreadable or inconsistent file is a ValueError
    naming it."""
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
                contamination=meta.get("contamination", 0.1),
                threshold_holdout=meta.get("threshold_holdout", 0.0))
      clf.config_ = clf._make_config()
      validation.validate(clf.config_, check_dataset=False)
      # Detectors saved before these were kept have neither (None, as a classical one).
      clf.plateau_ratio_ = _optional(meta, "plateau_ratio", float)
      clf.split_warning_ = _optional(meta, "split_warning", str)
      # Shapes only (from_bytes replaces every leaf): nothing to compile or run.
      template = jax.eval_shape(lambda: _template(clf.config_, image_shape))
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
    clf.image_shape_, clf._fitted = image_shape, fitted
    kind = _kind(clf.config_.method)
    if hasattr(kind, "load"):
      kind.load(clf, path)
    scores_path = os.path.join(path, "decision_scores.npy")
    holdout_path = os.path.join(path, "holdout_scores.npy")
    if os.path.exists(scores_path):
      scores = _load_scores(scores_path)
      # Detectors saved before holdouts placed the threshold on the training scores.
      held = _load_scores(holdout_path) if os.path.exists(holdout_path) else scores
      source = meta.get("threshold_source") or "training"
      given = meta.get("threshold") if source.startswith("calibrated") else None
      clf._set_decision_scores(scores, held, source, threshold_=given)
      if meta.get("threshold") is not None and not np.isclose(clf.threshold_,
                                                              meta["threshold"]):
        raise ValueError(f"{scores_path}: its scores give the threshold {clf.threshold_:.6g}, "
                         f"but {meta_path} says {meta['threshold']:.6g}")
    else:  # Detectors saved before thresholds have none.
      clf.threshold_ = None
    return clf


def _optional(meta: dict, key: str, kind: type):
  """`meta[key]` as `kind`, or None where it is missing or null; TypeError otherwise."""
  value = meta.get(key)
  if value is None:
    return None
  if not isinstance(value, (int, float) if kind is float else kind) or isinstance(value, bool):
    raise TypeError(f"{key} must be a {kind.__name__} or null, got {value!r}")
  return kind(value)


def _load_scores(path: str) -> np.ndarray:
  try:
    return np.load(path)  # allow_pickle=False: nothing is unpickled
  except Exception as e:  # an object array, a torn or foreign file
    raise ValueError(f"{path}: cannot be read ({type(e).__name__}: "
                     f"{' '.join(str(e).split())[:200]})") from None


def _template(config, image_shape):
  """Fitted arrays of a detector of `config.method` (stacked over one job where the
  method trains jobs), for deserialising."""
  return _kind(config.method).template(config, image_shape)
