"""Pure training functions for one job, written to be vmapped over (class, seed) jobs.

A job sees the shared image `pool` through its own padded index arrays (`*_idx` with a
`*_count` of valid entries), so stacking jobs never copies images. Batches are drawn
inside the compiled program; a chunk of steps is one `lax.scan`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dsplit_jax import losses
from dsplit_jax import methods
from dsplit_jax import models
from dsplit_jax import curves
# The split's functions, under the names pipeline.py uses.
from dsplit_jax.split import Split, plateau_ratio, split_by_ssim, ssim_scores  # noqa: F401

# Every random stream of a job is `fold_in(job_key, PHASE)`, then `fold_in(., step)`.
PHASE_AE, PHASE_CLASSIFIER = 1, 2
# Which pairs of a batch the closeness and dispersion losses see (BUILD_NOTES.md,
# "The method"):
# "neighbours": B + 1 images give the B pairs (i, i + 1); "all": B images give all
# B(B - 1)/2 pairs i < j, from the same one forward pass.
PAIRINGS = ("neighbours", "all")
# How the three losses of dsplit take turns ("step by step", the paper's section 2.3;
# BUILD_NOTES.md, "The method"):
# "interleaved": one step of each in every iteration; "epochs": one epoch of each in
# turn, as three Keras models sharing layers fitted for an epoch each would (closeness
# over the typical images, intra-class over the normal set, dispersion over the
# atypical ones; ceil(count / batch) steps each), every scan step one update of one loss.
# "balanced": the authors' program (BUILD_NOTES.md, "The `authors` preset"): each
# iteration draws 2B typical and 2B atypical images, makes `train.pair_updates` updates
# of closeness + dispersion on the pairs (k, k + B) of each, then `train.intra_updates`
# intra-class updates on batches of B from those 4B images (half atypical), with one
# Adam step counter for both, as Keras' one optimiser shared by two models has.
SCHEDULES = ("interleaved", "epochs", "balanced")


@flax.struct.dataclass
class AEState:
  params: Any
  opt_state: Any


@flax.struct.dataclass
class ClassifierState:
  """One optimiser state per loss: the three losses take turns on shared layers."""
  params: Any
  opt_states: dict


def make_autoencoder(config: ml_collections.ConfigDict, image_shape):
  h, _, c = image_shape
  m = config.model
  if m.ae_arch == "authors":
    return models.AuthorsAutoencoder(m.ae_conv_features, m.ae_code_features, channels=c,
                                     image_size=h, bn_momentum=m.bn_momentum,
                                     bn_epsilon=m.bn_epsilon, conv_impl=m.conv_impl,
                                     dtype=compute_dtype(config))
  return models.Autoencoder(m.ae_conv_features, m.ae_code_features, channels=c,
                            image_size=h, conv_impl=m.conv_impl,
                            dtype=compute_dtype(config))


def make_classifier(config: ml_collections.ConfigDict):
  m = config.model
  if m.arch == "authors":
    return models.AuthorsNet(m.conv_features, m.dense_features,
                             distance_head=m.distance_head, dropout=m.dropout,
                             leaky_slope=m.leaky_slope, bn_momentum=m.bn_momentum,
                             bn_epsilon=m.bn_epsilon, conv_impl=m.conv_impl,
                             dtype=compute_dtype(config))
  return models.OneClassNet(m.conv_features, m.dense_features,
                            distance_head=m.distance_head, conv_impl=m.conv_impl,
                            latent=m.latent, dropout=m.dropout, weight_init=m.init,
                            dtype=compute_dtype(config))


def l2_penalty(arch: str, skip: tuple[str, ...] = ()):
  """The sum of squares the weight decay multiplies: the paper's conv kernels
  ("alexnet"), or every kernel of the layers a loss uses ("authors": Keras' `l2` on
  each layer; `skip` names the top-level modules the loss does not use)."""
  if arch == "authors":
    return functools.partial(models.kernel_l2, skip=skip)
  return models.conv_kernel_l2


def _partition(variables):
  """({"params": ...}, the other collections, e.g. BatchNorm's `batch_stats`).

  Only the first is trained; for networks without BatchNorm it is all of `variables`,
  so their optimiser states and updates are those they always had."""
  return ({"params": variables["params"]},
          {k: v for k, v in variables.items() if k != "params"})


def _apply_train(model, variables, x, rngs=None):
  """A training-mode forward pass: (output, the updated non-trained collections)."""
  rest = [k for k in variables if k != "params"]
  if rngs is None and not rest:
    return model.apply(variables, x), {}
  if not rest:
    return model.apply(variables, x, train=True, rngs=rngs), {}
  return model.apply(variables, x, train=True, rngs=rngs or {}, mutable=rest)


# `model.dtype`: the networks' compute dtype. "float32" keeps every result as it was
# (None: flax's own promotion of float32 inputs and parameters).
DTYPES = ("float32", "bfloat16")


def compute_dtype(config):
  name = config.model.dtype
  if name not in DTYPES:
    raise ValueError(f"model.dtype must be one of {', '.join(DTYPES)}, got {name!r}")
  return None if name == "float32" else jnp.dtype(name)


def sample_positions(key, count, size: int, batch_size: int) -> jax.Array:
  """Batch positions among the first `count` of `size`, without replacement.

  A random permutation of the valid positions, cycled when `count < batch_size`; so
  neighbouring entries (the pairs i, i+1 of the pair losses) differ whenever count >= 2.
  """
  u = jax.random.uniform(key, (size,))
  u = jnp.where(jnp.arange(size) < count, u, 2.0)
  perm = jnp.argsort(u)
  return perm[jnp.arange(batch_size) % jnp.maximum(count, 1)]


def draw(key, pool, idx, count, batch_size: int) -> jax.Array:
  return pool[idx[sample_positions(key, count, idx.shape[0], batch_size)]]


# ----------------------------------------------------------------------------- AE

def init_ae_state(key, mean_pixel=None, *, model, tx, image_shape) -> AEState:
  """With `mean_pixel` ([C], in (0, 1)), the decoder's output bias starts at its logit.

  The sigmoid output then starts at the class's mean intensity (dark grey on MNIST)
  instead of 0.5 everywhere; the first large push towards the black background, which
  can kill the decoder's ReLUs and leave an all-black output for good, does not happen.
  """
  params = model.init(key, jnp.zeros((1, *image_shape)))
  if mean_pixel is not None:
    p = jnp.clip(mean_pixel, 1e-3, 1 - 1e-3)
    inner = dict(params["params"])
    out = getattr(model, "output_layer", "deconv1")
    inner[out] = dict(inner[out], bias=jnp.log(p) - jnp.log1p(-p))
    params = {**params, "params": inner}
  return AEState(params=params, opt_state=tx.init(_partition(params)[0]))


def mean_pixel(pool, idx, count) -> jax.Array:
  """Mean intensity per channel of a job's training images: [C]."""
  mask = (jnp.arange(idx.shape[0]) < count).astype(pool.dtype)
  per_image = jnp.mean(pool[idx], axis=(1, 2))  # [N, C]
  return jnp.tensordot(mask, per_image, axes=1) / jnp.maximum(jnp.sum(mask), 1.0)


def ae_step(state: AEState, step, key, train_idx, train_count, pool, *, model, tx, config):
  """One autoencoder step of one job; the batch is drawn in the graph from `step`."""
  images = draw(jax.random.fold_in(key, step), pool, train_idx, train_count,
                config.ae.batch_size)
  params, rest = _partition(state.params)
  l2 = l2_penalty(config.model.ae_arch)

  def loss_fn(p):
    reconstruction, new_rest = _apply_train(model, {**rest, **p}, images)
    mse = jnp.mean(jnp.square(reconstruction - images))
    return mse + config.ae.weight_decay * l2(p), (mse, new_rest)
  grads, (mse, new_rest) = jax.grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, state.opt_state, params)
  params = {**rest, **new_rest, **optax.apply_updates(params, updates)}
  return AEState(params, opt_state), {"mse": mse}


# ---------------------------------------------------------------------- classifier

def optimizer_names(config) -> tuple[str, ...]:
  """One optimiser state per loss (or, under "balanced", per Keras model)."""
  if config.train.schedule == "balanced":
    return ("pairs", "intra_class")
  return ("closeness", "intra_class", "dispersion")


def init_classifier_state(key, *, model, tx, image_shape,
                          names=("closeness", "intra_class", "dispersion")):
  params = model.init(key, jnp.zeros((2, *image_shape)), method=model.init_all)
  trained = _partition(params)[0]
  return ClassifierState(params=params, opt_states={name: tx.init(trained) for name in names})


def _update(state: ClassifierState, name: str, loss_fn, *, tx, weight_decay):
  def total(params):
    loss = loss_fn(params)
    return loss + weight_decay * models.conv_kernel_l2(params), loss
  grads, loss = jax.grad(total, has_aux=True)(state.params)
  updates, opt = tx.update(grads, state.opt_states[name], state.params)
  opt_states = dict(state.opt_states, **{name: opt})
  return ClassifierState(optax.apply_updates(state.params, updates), opt_states), loss


def pair_indices(batch: int, pairs: str) -> tuple[np.ndarray, np.ndarray]:
  """Positions (i, j), i != j, of the pairs of a batch of `batch` images."""
  if pairs == "neighbours":
    return np.arange(batch - 1), np.arange(1, batch)
  if pairs == "all":
    return np.triu_indices(batch, 1)
  raise ValueError(f"train.pairs must be one of {', '.join(PAIRINGS)}, got {pairs!r}")


def pair_batch_size(batch_size: int, pairs: str) -> int:
  """Images drawn for a pair loss: B + 1 neighbours give B pairs; "all" uses B images."""
  return batch_size + 1 if pairs == "neighbours" else batch_size


def _forward(params, images, model, dropout_key):
  """(logits, z) of a training batch; with a `dropout_key` the dropout is applied."""
  if dropout_key is None:
    return model.apply(params, images)
  return model.apply(params, images, train=True, rngs={"dropout": dropout_key})


def _pair_distance_logits(params, images, model, pairs, dropout_key=None):
  _, z = _forward(params, images, model, dropout_key)
  i, j = pair_indices(images.shape[0], pairs)
  return model.apply(params, z[i], z[j], method=model.distance_logit)


def pair_step(state, images, *, name, target, model, tx, weight_decay, pairs="neighbours",
              dropout_key=None):
  """One update of the pair loss `name` on the pairs of `images` (target distance
  `target`): closeness and dispersion are this one step with their LOSSES entries."""
  def loss_fn(params):
    return losses.pair_loss(
        _pair_distance_logits(params, images, model, pairs, dropout_key), target)
  state, loss = _update(state, name, loss_fn, tx=tx, weight_decay=weight_decay)
  return state, {name: loss}


def intra_class_step(state, images, labels, *, model, tx, weight_decay, dropout_key=None):
  def loss_fn(params):
    logits, _ = _forward(params, images, model, dropout_key)
    return losses.intra_class_loss(logits, labels)
  state, loss = _update(state, "intra_class", loss_fn, tx=tx, weight_decay=weight_decay)
  return state, {"intra_class": loss}


@dataclasses.dataclass(frozen=True)
class Loss:
  """One loss of the classifier (the paper's section 2.3), as `classifier_body` runs it.

  images: the pool its batches are drawn from, and the pool one of its epochs covers
    under the "epochs" schedule: "typical", "atypical" or "normal" (the whole training
    set; the intra-class batch mixes typical and atypical images by
    `train.atypical_fraction`, or is all normal images labelled 0 for naive_nn).
  target: a pair loss's target distance (losses.pair_loss); None for the intra-class
    loss, which is a binary cross-entropy on the classifier's logit.
  stream: which of an iteration's four random streams draws its batch (and, with
    dropout, its dropout key); fixed, so every record's streams stay as trained.
  """
  images: str
  target: float | None
  stream: int

  @property
  def pairs(self) -> bool:
    return self.target is not None


# The losses `methods.Method.losses` names, in the style of `methods.METHODS`.
LOSSES = {
    "closeness": Loss(images="typical", target=0.0, stream=0),
    "intra_class": Loss(images="normal", target=None, stream=1),
    "dispersion": Loss(images="atypical", target=1.0, stream=3),
}


def _pool(split: Split, train_idx, train_count, images: str):
  """(index array, count) of the pool `images` names (Loss.images)."""
  return {"typical": (split.typical_idx, split.typical_count),
          "atypical": (split.atypical_idx, split.atypical_count),
          "normal": (train_idx, train_count)}[images]


def classifier_body(state, step, key, split: Split, train_idx, train_count, pool,
                    *, model, tx, config, method: str):
  """One iteration of one job: the method's losses in turn, batches drawn in the graph.

  `methods.get(method).losses`: dsplit closeness, intra-class, dispersion (section 2.3);
  nnwds intra-class only; naive_nn binary cross-entropy with every normal image
  labelled 0 (no split). `train.schedule` (SCHEDULES) says whether an iteration is one
  step of each loss or, for "epochs", one step of the loss whose epoch it is in.
  """
  spec = methods.get(method)
  if not spec.trains_classifier:
    raise ValueError(f"not a classifier method: {method}")
  if config.train.schedule == "balanced":
    return balanced_body(state, step, key, split, train_idx, train_count, pool,
                         model=model, tx=tx, config=config, spec=spec)
  b = config.train.batch_size
  n_atyp = int(round(b * config.train.atypical_fraction))
  kw = dict(model=model, tx=tx, weight_decay=config.train.weight_decay)
  keys = jax.random.split(jax.random.fold_in(key, step), 4)

  def dropout_key(batch_key):  # a stream of its own; none (and the old streams) at 0
    return jax.random.fold_in(batch_key, 1) if config.model.dropout else None
  pairs = config.train.pairs
  b_pairs = pair_batch_size(b, pairs)

  def loss_step(name):
    """(batch, update) of loss `name`: its images, and its step as a partial to call on
    them, so that the step is called from this body itself."""
    loss = LOSSES[name]
    k = keys[loss.stream]
    if loss.pairs:
      x = draw(k, pool, *_pool(split, train_idx, train_count, loss.images), b_pairs)
      return x, functools.partial(pair_step, name=name, target=loss.target, pairs=pairs,
                                  dropout_key=dropout_key(k), **kw)
    if spec.labels_from_split:
      x = jnp.concatenate([
          draw(k, pool, split.typical_idx, split.typical_count, b - n_atyp),
          draw(keys[2], pool, split.atypical_idx, split.atypical_count, n_atyp)])
      y = jnp.concatenate([jnp.zeros(b - n_atyp), jnp.ones(n_atyp)])
    else:  # naive_nn: every normal image, labelled 0
      x, y = draw(k, pool, train_idx, train_count, b), jnp.zeros(b)
    return x, functools.partial(intra_class_step, labels=y, dropout_key=dropout_key(k), **kw)
  if len(spec.losses) > 1 and config.train.schedule == "epochs":
    def epoch_of(name):  # the batch is drawn inside the branch that runs
      def run(state):
        x, update = loss_step(name)
        return update(state, x)
      return run
    counts = [_pool(split, train_idx, train_count, LOSSES[name].images)[1]
              for name in spec.losses]
    return _one_epoch_step(state, step, [epoch_of(name) for name in spec.losses],
                           spec.losses, counts, b)
  metrics = {}
  for name in spec.losses:
    x, update = loss_step(name)
    state, m = update(state, x)
    metrics.update(m)
  return state, metrics


def _one_epoch_step(state, step, fns, names, counts, batch_size: int):
  """Step `step` of the "epochs" schedule: the update of the loss whose epoch it falls
  in; the others report `curves.NOT_RUN` (loop.py and the curves leave those out)."""
  lengths = [(jnp.asarray(c, jnp.int32) + batch_size - 1) // batch_size for c in counts]
  pos = jnp.asarray(step, jnp.int32) % sum(lengths)
  branch = sum((pos >= sum(lengths[:k + 1])).astype(jnp.int32) for k in range(len(fns) - 1))

  def only(fn):
    def run(state):
      state, m = fn(state)
      return state, {k: m.get(k, jnp.float32(curves.NOT_RUN)) for k in names}
    return run
  return jax.lax.switch(branch, [only(fn) for fn in fns], state)


def _counted_update(state: ClassifierState, name: str, loss_fn, count, *, tx,
                    weight_decay, l2):
  """One update of optimiser `name` whose Adam step counter is set to `count` (the
  updates of both models so far: one Keras optimiser's `iterations`)."""
  params, rest = _partition(state.params)

  def total(p):
    loss, (new_rest, parts) = loss_fn({**rest, **p})
    return loss + weight_decay * l2(p), (new_rest, parts)
  grads, (new_rest, parts) = jax.grad(total, has_aux=True)(params)
  opt = optax.tree_utils.tree_set(state.opt_states[name],
                                  count=jnp.asarray(count, jnp.int32))
  updates, opt = tx.update(grads, opt, params)
  params = {**rest, **new_rest, **optax.apply_updates(params, updates)}
  return ClassifierState(params, dict(state.opt_states, **{name: opt})), parts


def balanced_body(state, step, key, split: Split, train_idx, train_count, pool, *, model,
                  tx, config, spec):
  """One iteration of the "balanced" schedule (SCHEDULES) of one job.

  The pair updates see the pairs (k, k + B) of the 2B typical images (target distance
  0) and of the 2B atypical ones (target 1), their two losses summed as Keras sums a
  model's outputs' losses; every forward pass normalises its own B images (BatchNorm)
  and draws its own dropout. The intra-class updates take B of the 4B images at a time
  in a random order (typical 0, atypical 1). naive_nn draws 4B normal images labelled 0.
  """
  b, arch = config.train.batch_size, config.model.arch
  n_pair = config.train.pair_updates if spec.uses_distance_head else 0
  n_intra = config.train.intra_updates
  k_typ, k_atyp, k_perm, k_drop = jax.random.split(jax.random.fold_in(key, step), 4)
  if spec.labels_from_split:
    typ = draw(k_typ, pool, split.typical_idx, split.typical_count, 2 * b)
    atyp = draw(k_atyp, pool, split.atypical_idx, split.atypical_count, 2 * b)
    x = jnp.concatenate([typ, atyp])
    y = jnp.concatenate([jnp.zeros(2 * b), jnp.ones(2 * b)])
  else:
    x, y = draw(k_typ, pool, train_idx, train_count, 4 * b), jnp.zeros(4 * b)
  first = jnp.asarray(step, jnp.int32) * (n_pair + n_intra)
  kw = dict(tx=tx, weight_decay=config.train.weight_decay)

  def forward(variables, images, key):
    (logits, z), new_rest = _apply_train(model, variables, images, {"dropout": key})
    return logits, z, {**variables, **new_rest}

  def pair_logits(variables, images, keys):
    _, z_i, variables = forward(variables, images[:b], keys[0])
    _, z_j, variables = forward(variables, images[b:], keys[1])
    return model.apply(variables, z_i, z_j, method=model.distance_logit), variables

  def pair_loss(key):
    def loss_fn(variables):
      keys = jax.random.split(key, 4)
      d_typ, variables = pair_logits(variables, typ, keys[:2])
      d_atyp, variables = pair_logits(variables, atyp, keys[2:])
      close = losses.pair_loss(d_typ, LOSSES["closeness"].target)
      disp = losses.pair_loss(d_atyp, LOSSES["dispersion"].target)
      return close + disp, (_partition(variables)[1],
                            {"closeness": close, "dispersion": disp})
    return loss_fn

  def intra_loss(images, labels, key):
    def loss_fn(variables):
      logits, _, variables = forward(variables, images, key)
      loss = losses.intra_class_loss(logits, labels)
      return loss, (_partition(variables)[1], {"intra_class": loss})
    return loss_fn

  history = []
  for u in range(n_pair):
    state, parts = _counted_update(state, "pairs", pair_loss(jax.random.fold_in(k_drop, u)),
                                   first + u, l2=l2_penalty(arch, ("classifier",)), **kw)
    history.append(parts)
  order = jax.random.permutation(k_perm, 4 * b)
  for u in range(n_intra):
    rows = order[(u * b + jnp.arange(b)) % (4 * b)]
    state, parts = _counted_update(
        state, "intra_class", intra_loss(x[rows], y[rows], jax.random.fold_in(k_drop, n_pair + u)),
        first + n_pair + u, l2=l2_penalty(arch, ("distance",)), **kw)
    history.append(parts)
  names = spec.losses
  metrics = {k: jnp.mean(jnp.stack([h[k] for h in history if k in h])) for k in names}
  return state, metrics


def classifier_scores(params, images, *, model, config) -> jax.Array:
  """Anomaly scores: the classifier's logit (higher = more atypical = more abnormal)."""
  return jax.lax.map(lambda x: model.apply(params, x[None])[0][0], images,
                     batch_size=config.eval_batch_size)


LR_DECAYS = ("none", "cosine")


def learning_rate(phase_config: ml_collections.ConfigDict) -> optax.ScalarOrSchedule:
  """An optional linear warm-up (see BUILD_NOTES.md, "The method"), then constant or
  a cosine decay to 0 at `steps` (`lr_decay`; each loss's Adam counts its own steps).
  A constant rate stays a float: the optimiser state of earlier checkpoints."""
  peak, warmup = phase_config.learning_rate, phase_config.get("warmup_steps", 0)
  if phase_config.get("lr_decay", "none") == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, phase_config.steps)
  if warmup:
    return optax.linear_schedule(0.0, peak, warmup)
  return peak


AE_OPTIMIZERS = ("adam", "rmsprop")


def optimizer(phase_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam (the classifier's `adam_b1`) or, for the autoencoder's `optimizer="rmsprop"`,
  RMSprop as Keras has it (decay 0.9, epsilon added outside the square root), with
  `learning_rate`'s schedule."""
  lr = learning_rate(phase_config)
  # `optimizer` is a field of `ae` only, `adam_b1` of `train` only.
  name = phase_config.optimizer if "optimizer" in phase_config else "adam"
  if name == "rmsprop":
    return optax.rmsprop(lr, decay=0.9, eps=phase_config.adam_eps, eps_in_sqrt=False)
  if name != "adam":
    raise ValueError(f"ae.optimizer must be one of {', '.join(AE_OPTIMIZERS)}, got {name!r}")
  b1 = phase_config.adam_b1 if "adam_b1" in phase_config else 0.9
  return optax.adam(lr, b1=b1, eps=phase_config.adam_eps)
