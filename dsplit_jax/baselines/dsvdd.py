"""One-class Deep SVDD (Ruff et al., ICML 2018), as in the authors' PyTorch code.

Follows github.com/lukasruff/Deep-SVDD-PyTorch (`networks/mnist_LeNet.py`,
`networks/cifar10_LeNet.py`, `optim/ae_trainer.py`,
`optim/deepSVDD_trainer.py`, `deepSVDD.py`):

1. Autoencoder pretraining (MSE), Adam with L2 weight decay, lr / 10 at the
   milestone epoch.
2. The Deep SVDD network takes the encoder's weights *and* its BatchNorm
   running statistics (PyTorch copies the encoder part of the `state_dict`).
3. Centre c = mean of the initial representations of the training data (eval
   mode), entries with |c_i| < eps pushed to +-eps.
4. Loss = mean squared distance to c; score = squared distance to c, with
   BatchNorm in eval mode (running statistics).

Many (normal class, seed) jobs train at once: each epoch of a phase is one
`lax.scan` over mini-batches, `jit(vmap(...))` over jobs; Python only loops
over epochs. The training images live once on the device (`pool`); a job is
a padded list of indices into it.

Partial batches. PyTorch's loader gives ceil(n / B) batches per epoch, the
last one smaller. Every job here takes ceil(Nmax / B) scan steps over a
shuffled order with its valid indices first; padded positions are masked out
of the loss and of the BatchNorm statistics (flax `BatchNorm(mask=...)`), and
steps with no valid position leave the state (parameters, Adam moments,
running statistics) untouched. So each job sees PyTorch's batches exactly:
ceil(n / B) steps, the last one of n mod B images.

Known differences to PyTorch: running variances are updated with the biased
batch variance (PyTorch: unbiased; a factor n/(n-1) with n = B*H*W per
channel, < 1e-5 for the conv layers, 0.5% for CIFAR's 1-d BatchNorm of the
autoencoder); the decoder's transposed convolutions are not flipped (a
re-parametrisation, as in flax's ConvTranspose); ties in max pooling share
the gradient.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dsplit_jax import layers
from dsplit_jax.data import preprocessing as prep

NETS = ("auto", "mnist_lenet", "cifar10_lenet")


# --------------------------------------------------------------------------
# Networks. PyTorch's default init is U(+-1/sqrt(fan_in)); for a transposed
# convolution PyTorch's fan_in is out_channels * k * k (flax kernel axis -1).

_torch_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
_torch_init_transposed = nn.initializers.variance_scaling(
    1 / 3, "fan_in", "uniform", in_axis=-1, out_axis=-2)
# CIFAR-10: xavier_uniform_ with gain calculate_gain('leaky_relu') (0.01).
_xavier_leaky = nn.initializers.variance_scaling(
    2 / (1 + 0.01**2), "fan_avg", "uniform")

def _conv(features: int, padding: int, channels: int, *, transposed: bool, init: str,
          impl: str, name: str):
  """5x5 convolution without bias, stride 1, PyTorch's padding `padding`.

  `transposed=True` is PyTorch's stride-1 ConvTranspose2d(padding=p): a convolution
  with padding k - 1 - p whose kernel, as in flax's ConvTranspose, is not flipped (a
  re-parametrisation). The module is `layers.conv_modules(impl)`'s, the convolution of
  every network of the library (`model.conv_impl`). Under "auto" on CPU a convolution
  with few channels (C_in * C_out <= layers.TAPS_MAX: all of MNIST's) is "taps": there
  lax.conv ran 2x and im2col 3-4x slower (notes/baselines.md).
  """
  if (impl == "auto" and jax.default_backend() == "cpu"
      and channels * features <= layers.TAPS_MAX):
    impl = "taps"
  if init == "xavier":
    kernel_init = _xavier_leaky
  else:
    kernel_init = _torch_init_transposed if transposed else _torch_init
  pad = 4 - padding if transposed else padding
  conv, _ = layers.conv_modules(impl, kernel_init)
  return conv(features, (5, 5), padding=((pad, pad), (pad, pad)), use_bias=False,
              name=name)


class _Net(nn.Module):
  """Fields shared by the encoder and the autoencoder."""
  net: str = "mnist_lenet"
  bn_eps: float = 1e-4
  bn_momentum: float = 0.9
  slope: float = 0.01
  conv_impl: str = "auto"  # `model.conv_impl`: how convolutions are lowered

  def block(self, x, features, padding, names, train, mask, *,
            transposed=False, init="torch"):
    """conv 5x5 (no bias) -> BatchNorm (no affine) -> leaky ReLU.

    `names`: (conv, bn) module names, PyTorch's attribute names.
    """
    x = _conv(features, padding, x.shape[-1], transposed=transposed, init=init,
              impl=self.conv_impl, name=names[0])(x)
    return nn.leaky_relu(self.bn(x, train, mask, names[1]), self.slope)

  def bn(self, x, train, mask, name):
    """BatchNorm without affine over all axes but the channels; mask [B]."""
    m = None if mask is None else mask.reshape((-1,) + (1,) * (x.ndim - 1))
    return nn.BatchNorm(use_running_average=not train, axis=-1,
                        use_bias=False, use_scale=False, epsilon=self.bn_eps,
                        momentum=self.bn_momentum, use_fast_variance=False,
                        name=name)(x, mask=m)


def _pool(x):
  """2x2 max pool of NHWC as a reshape-max: its gradient is much faster on
  CPU than reduce_window's select-and-scatter (ties share the gradient)."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _upsample(x):
  """F.interpolate(scale_factor=2), nearest, of NHWC."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _flatten_chw(x):
  """PyTorch's x.view(B, -1) of the NCHW tensor; x is NHWC."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def _unflatten_chw(z, channels, size):
  """PyTorch's z.view(B, C, size, size), returned as NHWC."""
  return jnp.transpose(z.reshape(z.shape[0], channels, size, size),
                       (0, 2, 3, 1))


class Encoder(_Net):
  """The Deep SVDD network phi: MNIST_LeNet (rep 32) or CIFAR10_LeNet (rep 128).

  NHWC images in, [B, rep] out; no bias anywhere.
  """

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    mnist = self.net == "mnist_lenet"
    widths, rep, init = (((8, 4), 32, "torch") if mnist
                         else ((32, 64, 128), 128, "xavier"))
    for i, w in enumerate(widths, 1):
      names = (f"conv{i}", f"bn{i}" if mnist else f"bn2d{i}")
      x = _pool(self.block(x, w, 2, names, train, mask, init=init))
    return nn.Dense(rep, use_bias=False, kernel_init=_torch_init,
                    name="fc1")(_flatten_chw(x))


class Autoencoder(_Net):
  """MNIST_LeNet_Autoencoder / CIFAR10_LeNet_Autoencoder; NHWC in and out.

  Submodule `encoder` is phi (same parameter and statistics tree).
  """

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    channels = x.shape[-1]
    z = Encoder(self.net, self.bn_eps, self.bn_momentum, self.slope,
                self.conv_impl, name="encoder")(x, train, mask)
    if self.net == "mnist_lenet":
      # (2,4,4) -> up 8 -> deconv(p2) 8 -> up 16 -> deconv(p3) 14 -> up 28.
      x = _upsample(nn.leaky_relu(_unflatten_chw(z, 2, 4), self.slope))
      x = _upsample(self.block(x, 4, 2, ("deconv1", "bn3"), train, mask,
                               transposed=True))
      x = _upsample(self.block(x, 8, 3, ("deconv2", "bn4"), train, mask,
                               transposed=True))
      init, last = "torch", "deconv3"
    else:
      # BatchNorm1d on the code, (8,4,4) -> deconv 4 -> up 8 -> 16 -> 32.
      z = self.bn(z, train, mask, "bn1d")
      x = nn.leaky_relu(_unflatten_chw(z, 8, 4), self.slope)
      for i, w in enumerate((128, 64, 32), 1):
        x = _upsample(self.block(x, w, 2, (f"deconv{i}", f"bn2d{i + 3}"),
                                 train, mask, transposed=True, init="xavier"))
      init, last = "xavier", "deconv4"
    x = _conv(channels, 2, x.shape[-1], transposed=True, init=init,
              impl=self.conv_impl, name=last)(x)
    return nn.sigmoid(x)


# --------------------------------------------------------------------------
# Training: pure per-job functions, vmapped over jobs, one jit call an epoch.


@flax.struct.dataclass
class State:
  params: Any
  batch_stats: Any
  opt_state: Any


def networks(cfg, channels: int, conv_impl: str = "auto"
             ) -> tuple[Autoencoder, Encoder]:
  """(autoencoder, phi) for `cfg`; cfg.net "auto" picks by channel count."""
  net = cfg.net
  if net == "auto":
    net = "mnist_lenet" if channels == 1 else "cifar10_lenet"
  if net not in NETS[1:]:
    raise ValueError(f"cfg.net must be one of {NETS}, got {cfg.net!r}")
  kw = dict(net=net, bn_eps=cfg.bn_eps, bn_momentum=cfg.bn_momentum,
            slope=cfg.leaky_slope, conv_impl=conv_impl)
  return Autoencoder(**kw), Encoder(**kw)


def adam_l2(weight_decay: float) -> optax.GradientTransformation:
  """PyTorch Adam(weight_decay=wd): wd * param added to the gradient, then Adam.

  The learning rate is applied by the caller (it changes per epoch).
  """
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8))


def lr_at(base: float, milestones, epoch: int) -> float:
  """Learning rate of 0-based `epoch` under the authors' MultiStepLR(gamma=0.1).

  Their loop calls scheduler.step() at the *start* of every epoch, so epoch e
  runs with last_epoch = e + 1: the rate drops from epoch milestone - 1 on.
  """
  return base * 0.1 ** sum(epoch + 1 >= m for m in milestones)


def _scale(x, affine):
  return (x - affine[0]) / (affine[1] - affine[0])


def _epoch_order(key, epoch, count, nmax: int, steps: int, batch: int):
  """Shuffled positions, the job's `count` valid ones first, as [steps, batch].

  A position's sort key is a hash of (key, epoch, position) alone, so a job's
  batches do not depend on how much padding other jobs impose (nmax).
  """
  with _fast_rng():
    key = jax.random.fold_in(key, epoch)
    hashes = jax.random.key_data(jax.vmap(
        lambda i: jax.random.fold_in(key, i))(jnp.arange(nmax)))[:, 0]
  hashes = jnp.where(jnp.arange(nmax) < count, hashes, jnp.uint32(2**32 - 1))
  order = jnp.argsort(hashes, stable=True)  # ties: valid (lower) positions first
  return jnp.pad(order, (0, steps * batch - nmax)).reshape(steps, batch)


def _fast_rng():
  """Non-partitionable threefry for the draws of this module: it compiles
  5-7x faster on CPU (seconds per program here); each job runs on one
  device, so partitionable random bits would buy nothing."""
  return jax.threefry_partitionable(False)


def _typed_keys(keys):
  keys = jnp.asarray(keys)
  if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
    return keys
  return jax.random.wrap_key_data(keys)


def ae_loss(model, params, batch_stats, aux, x, mask, bn_mask):
  """nn.MSELoss over the valid images; aux unused."""
  del aux
  recon, upd = model.apply({"params": params, "batch_stats": batch_stats}, x,
                           train=True, mask=bn_mask, mutable=["batch_stats"])
  per = jnp.mean((recon - x) ** 2, axis=(1, 2, 3))
  return jnp.sum(per * mask) / jnp.maximum(mask.sum(), 1), upd["batch_stats"]


def svdd_loss(model, params, batch_stats, center, x, mask, bn_mask):
  """One-class objective: mean of ||phi(x) - c||^2 over the valid images."""
  z, upd = model.apply({"params": params, "batch_stats": batch_stats}, x,
                       train=True, mask=bn_mask, mutable=["batch_stats"])
  dist = jnp.sum((z - center) ** 2, axis=-1)
  return jnp.sum(dist * mask) / jnp.maximum(mask.sum(), 1), upd["batch_stats"]


def train_epoch(state: State, aux, epoch, lr, pool, idx, count, key, affine,
                *, loss_fn: Callable, tx: optax.GradientTransformation,
                batch_size: int):
  """One epoch of one job as a `lax.scan`; returns (state, mean batch loss).

  loss_fn(params, batch_stats, aux, x, mask, bn_mask) -> (loss, batch_stats).
  """
  nmax = idx.shape[0]
  steps = -(-nmax // batch_size)
  order = _epoch_order(key, epoch, count, nmax, steps, batch_size)

  def step(state, s):
    mask = s * batch_size + jnp.arange(batch_size) < count
    any_valid = mask.any()
    # An empty step runs on arbitrary images (statistics over all of them,
    # so nothing is 0/0) and is then discarded as a whole.
    bn_mask = mask | ~any_valid
    x = _scale(pool[idx[order[s]]], affine)
    (loss, stats), grads = jax.value_and_grad(
        lambda p: loss_fn(p, state.batch_stats, aux, x, mask.astype(x.dtype),
                          bn_mask), has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(
        state.params, jax.tree.map(lambda u: -lr * u, updates))
    new = State(params, stats, opt_state)
    new = jax.tree.map(lambda n, o: jnp.where(any_valid, n, o), new, state)
    return new, (loss * any_valid, any_valid)

  state, (losses, valid) = jax.lax.scan(step, state, jnp.arange(steps))
  return state, losses.sum() / jnp.maximum(valid.sum(), 1)


_LOSSES = {"ae": ae_loss, "dsvdd": svdd_loss}


@functools.partial(jax.jit, donate_argnums=0,
                   static_argnames=("phase", "model", "weight_decay",
                                    "batch_size"))
def epoch_jobs(state, aux, epoch, lr, pool, job_idx, job_counts, job_keys,
               job_affine, *, phase: str, model, weight_decay: float,
               batch_size: int):
  """`train_epoch` of every job: state, aux, idx, counts, keys, affine are
  stacked over jobs; epoch, lr, pool shared. Returns (state, loss [J])."""
  fn = functools.partial(
      train_epoch, loss_fn=functools.partial(_LOSSES[phase], model),
      tx=adam_l2(weight_decay), batch_size=batch_size)
  return jax.vmap(fn, in_axes=(0, 0, None, None, None, 0, 0, 0, 0))(
      state, aux, epoch, lr, pool, job_idx, job_counts, job_keys, job_affine)


@functools.partial(jax.jit, static_argnames=("model", "weight_decay"))
def init_jobs(keys, sample, *, model, weight_decay: float) -> State:
  """Stacked initial states (PyTorch-style init, fresh Adam) for `keys`."""
  def one(key):
    with _fast_rng():
      variables = model.init(key, sample, train=False)
    params = variables["params"]
    return State(params, variables["batch_stats"],
                 adam_l2(weight_decay).init(params))
  return jax.vmap(one)(keys)


def _chunks(n: int, chunk: int):
  """(chunk, steps, padding) to cover n items in equal chunks of <= chunk."""
  chunk = min(chunk, n)
  steps = -(-n // chunk)
  return chunk, steps, steps * chunk - n


def init_center(model, variables, pool, idx, count, affine, *, eps: float,
                chunk: int):
  """Mean eval-mode phi of the job's training images; |c_i| < eps -> +-eps."""
  chunk, steps, pad = _chunks(idx.shape[0], chunk)
  idx = jnp.pad(idx, (0, pad)).reshape(steps, chunk)
  pos = jnp.arange(steps * chunk).reshape(steps, chunk)

  def body(total, s):
    z = model.apply(variables, _scale(pool[idx[s]], affine), train=False)
    return total + jnp.sum(z * (pos[s] < count)[:, None], axis=0), None

  rep = jax.eval_shape(lambda: model.apply(variables, pool[:1], train=False))
  total, _ = jax.lax.scan(body, jnp.zeros(rep.shape[-1], rep.dtype),
                          jnp.arange(steps))
  c = total / count
  c = jnp.where((jnp.abs(c) < eps) & (c < 0), -eps, c)
  return jnp.where((jnp.abs(c) < eps) & (c > 0), eps, c)


def score(model, variables, center, images, affine, chunk: int):
  """Anomaly score ||phi(x) - c||^2 of every image (eval-mode BatchNorm)."""
  n = images.shape[0]
  chunk, steps, pad = _chunks(n, chunk)
  xs = jnp.pad(images, ((0, pad),) + ((0, 0),) * (images.ndim - 1))
  xs = xs.reshape((steps, chunk) + images.shape[1:])
  z = jax.lax.map(
      lambda x: model.apply(variables, _scale(x, affine), train=False), xs)
  z = z.reshape(steps * chunk, -1)[:n]
  return jnp.sum((z - center) ** 2, axis=-1)


@functools.partial(jax.jit, static_argnames=("model", "eps", "chunk"))
def center_jobs(params, batch_stats, pool, job_idx, job_counts, job_affine, *,
                model, eps: float, chunk: int):
  """[J, rep] centres of stacked job states."""
  return jax.vmap(
      lambda p, s, i, n, a: init_center(
          model, {"params": p, "batch_stats": s}, pool, i, n, a, eps=eps,
          chunk=chunk))(params, batch_stats, job_idx, job_counts, job_affine)


@functools.partial(jax.jit, static_argnames=("model", "chunk"))
def score_jobs(params, batch_stats, center, test_images, job_affine, *, model,
               chunk: int):
  """[J, M] scores of stacked job states on shared `test_images`."""
  return jax.vmap(
      lambda p, s, c, a: score(model, {"params": p, "batch_stats": s}, c,
                               test_images, a, chunk))(
                                   params, batch_stats, center, job_affine)


def _run_phase(phase: str, state: State, aux, *, model, lr: float,
               milestones, epochs: int, weight_decay: float, batch_size: int,
               data, keys, affine, progress) -> State:
  """The Python loop over epochs of one phase; stops on a non-finite loss."""
  for epoch in range(epochs):
    rate = lr_at(lr, milestones, epoch)
    state, loss = epoch_jobs(
        state, aux, jnp.int32(epoch), jnp.float32(rate), *data, keys, affine,
        phase=phase, model=model, weight_decay=weight_decay,
        batch_size=batch_size)
    loss = np.asarray(loss)
    if not np.all(np.isfinite(loss)):
      raise FloatingPointError(
          f"{phase}: non-finite loss in epoch {epoch + 1}: {loss}")
    if progress is not None:
      progress(phase, epoch + 1, epochs, {"loss": float(loss.mean()),
                                          "lr": rate})
  return state


@flax.struct.dataclass
class Trained:
  """Trained Deep SVDD networks, stacked over jobs: what scoring needs."""
  params: Any
  batch_stats: Any
  center: Any   # [J, rep]
  affine: Any   # [J, 2] (lo, hi) of each job's min-max scaling


def train(cfg, pool, job_idx, job_counts, job_keys, *, job_affine=None, progress=None,
          conv_impl="auto") -> Trained:
  """Trains one Deep SVDD per job (arguments as `train_and_score`)."""
  if cfg.objective != "one-class":
    raise ValueError(f"only the one-class objective: {cfg.objective!r}")
  job_idx = np.asarray(job_idx, np.int32)
  job_counts = np.asarray(job_counts, np.int32)
  num_jobs, nmax = job_idx.shape
  if job_counts.shape != (num_jobs,) or np.any(job_counts < 1) or np.any(
      job_counts > nmax):
    raise ValueError(f"job_counts must be [{num_jobs}] ints in [1, {nmax}]")
  if job_idx.min() < 0 or job_idx.max() >= len(pool):
    raise ValueError("job_idx must index into pool (pad with a valid index)")
  if job_affine is None:
    job_affine = np.tile(np.array([0.0, 1.0], np.float32), (num_jobs, 1))
  pool = jnp.asarray(pool, jnp.float32)
  data = (pool, jnp.asarray(job_idx), jnp.asarray(job_counts))
  affine = jnp.asarray(job_affine, jnp.float32)
  ae, phi = networks(cfg, pool.shape[-1], conv_impl)
  job_keys = _typed_keys(job_keys)

  def fold(i):
    with _fast_rng():
      return jax.vmap(lambda k: jax.random.fold_in(k, i))(job_keys)


  # Phase 1: autoencoder pretraining.
  state = init_jobs(fold(0), pool[:1], model=ae,
                    weight_decay=cfg.ae_weight_decay)
  if cfg.pretrain:
    state = _run_phase(
        "ae", state, None, model=ae, lr=cfg.ae_lr,
        milestones=cfg.ae_lr_milestones, epochs=cfg.ae_epochs,
        weight_decay=cfg.ae_weight_decay, batch_size=cfg.ae_batch_size,
        data=data, keys=fold(1), affine=affine, progress=progress)
  # Phase 2: phi gets the encoder's weights and running statistics, a fresh
  # Adam, and its centre.
  params, stats = state.params["encoder"], state.batch_stats["encoder"]
  state = State(params, stats,
                jax.vmap(adam_l2(cfg.weight_decay).init)(params))
  center = center_jobs(params, stats, *data, affine, model=phi,
                       eps=cfg.center_eps, chunk=cfg.eval_batch_size)
  # Phase 3: Deep SVDD.
  state = _run_phase(
      "dsvdd", state, center, model=phi, lr=cfg.lr,
      milestones=cfg.lr_milestones, epochs=cfg.epochs,
      weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, data=data,
      keys=fold(2), affine=affine, progress=progress)
  return Trained(state.params, state.batch_stats, center, affine)


def score_trained(cfg, trained: Trained, images, conv_impl="auto") -> np.ndarray:
  """[J, M] scores ||phi(x) - c||^2 of `train`'s networks on shared `images`, which
  come preprocessed as the training pool was (`prepare`); its min-max `affine` is
  applied here."""
  _, phi = networks(cfg, images.shape[-1], conv_impl)
  return np.asarray(score_jobs(
      trained.params, trained.batch_stats, trained.center,
      jnp.asarray(images, jnp.float32), trained.affine, model=phi,
      chunk=cfg.eval_batch_size))


def init_trained(cfg, image_shape, num_jobs: int = 1, conv_impl="auto") -> Trained:
  """A `Trained` of freshly initialised networks, for its shapes and dtypes: run it
  under `jax.eval_shape` to deserialise `train`'s result without computing anything."""
  _, phi = networks(cfg, image_shape[-1], conv_impl)

  def one(key):
    x = jnp.zeros((1, *image_shape), jnp.float32)
    variables = phi.init(key, x, train=False)
    rep = phi.apply(variables, x, train=False).shape[-1]
    return Trained(variables["params"], variables["batch_stats"],
                   jnp.zeros(rep, jnp.float32), jnp.zeros(2, jnp.float32))

  return jax.vmap(one)(jax.random.split(jax.random.PRNGKey(0), num_jobs))


def train_and_score(cfg, pool, job_idx, job_counts, job_keys, test_images, *,
                    job_affine=None, progress=None, conv_impl="auto") -> np.ndarray:
  """Trains one Deep SVDD per job and scores `test_images`: [J, M] scores.

  pool: float32 [P, H, W, C] training images of all jobs, shared.
  job_idx: int32 [J, Nmax] indices into `pool`, padded with any valid index.
  job_counts: int32 [J] valid entries of each row of `job_idx`.
  job_keys: PRNG keys [J] (typed or raw); fold_in(key, 0/1/2) seeds the
    init, the AE epochs and the Deep SVDD epochs, then fold_in(., epoch).
  test_images: [M, H, W, C], shared.
  job_affine: float32 [J, 2] (lo, hi): x -> (x - lo) / (hi - lo) per job,
    applied to training and test images inside the compiled program (per-
    class min-max of Ruff et al. on a class-independently GCN'd pool).
  progress: callable(phase, step, total, metrics), called after every epoch
    with phase "ae" or "dsvdd" and metrics {"loss": mean over jobs, "lr"}.
  conv_impl: `model.conv_impl` (layers.py); the same function either way.
  """
  trained = train(cfg, pool, job_idx, job_counts, job_keys, job_affine=job_affine,
                  progress=progress, conv_impl=conv_impl)
  return score_trained(cfg, trained, test_images, conv_impl)


# The authors' code hard-codes, per MNIST digit, the (min, max) of the digit's GCN-L1
# training images (`datasets/mnist.py`); `prep` computes the same from the IDX files to
# float32 precision (tests/baselines/test_dsvdd.py). A Fashion-MNIST run made by
# swapping the dataset in that code keeps these bounds: "gcn_minmax_mnist" does that on
# purpose (BUILD_NOTES.md, "Baselines").
MNIST_GCN_MINMAX = (
    (-0.8826567065619495, 9.001545489292527), (-0.6661464580883915, 20.108062262467364),
    (-0.7820454743183202, 11.665100841080346), (-0.7645772083211267, 12.895051191467457),
    (-0.7253923114302238, 12.683235701611533), (-0.7698501867861425, 13.103278415430502),
    (-0.778418217980696, 10.457837397569108), (-0.7129780970522351, 12.057777597673047),
    (-0.8280402650205075, 10.581538445782988), (-0.7369959242164307, 10.697039838804978))
PREPROCESSING = ("none", "gcn_minmax", "gcn_minmax_mnist")


def prepare(preprocessing: str, pool, job_idx, job_counts, test_images, job_classes=None):
  """(pool, test, job_affine) for `train_and_score` from images in [0, 1].

  "gcn_minmax" (Ruff et al.): GCN-L1 of every image once, independent of the
  class, and per job the min and max of its GCN'd training images, which
  `train_and_score` applies to training and test images alike. "gcn_minmax_mnist":
  the same GCN, with the bounds of the MNIST digit of the job's class index
  (`job_classes`), whatever the dataset. "none": the images as they are, no affine.
  """
  if preprocessing == "none":
    return pool, test_images, None
  if preprocessing not in PREPROCESSING:
    raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING)}, "
                     f"got {preprocessing!r}")
  if preprocessing == "gcn_minmax_mnist":
    if job_classes is None or any(not 0 <= int(c) < 10 for c in job_classes):
      raise ValueError("preprocessing 'gcn_minmax_mnist' needs each job's class index "
                       f"in 0-9 (MNIST's digits), got {job_classes!r}")
  pool = prep.global_contrast_normalization(pool, "l1")
  test = prepare_new(preprocessing, test_images)
  if preprocessing == "gcn_minmax_mnist":
    affine = np.array([MNIST_GCN_MINMAX[int(c)] for c in job_classes], np.float32)
  else:
    affine = np.array([prep.minmax_bounds(pool[i[:n]])
                       for i, n in zip(job_idx, job_counts)], np.float32)
  if np.any(affine[:, 1] <= affine[:, 0]):
    raise ValueError("min-max scaling undefined: a job's GCN'd images are constant")
  return pool, test, affine


def prepare_new(preprocessing: str, images):
  """Images scored after training, as `prepare` turns test images: GCN-L1 unless
  "none" (the job's min-max scaling is part of `Trained`); None stays None."""
  if images is None or preprocessing == "none":
    return images
  return prep.global_contrast_normalization(images, "l1")


def run(config, jobs, progress=None) -> np.ndarray:
  """Deep SVDD scores [J, M] for `data.Jobs`, with `config.dsvdd` and
  `config.model.conv_impl`."""
  cfg = config.dsvdd
  pool, test, affine = prepare(cfg.preprocessing, jobs.pool, jobs.train_idx,
                               jobs.train_count, jobs.test_images,
                               job_classes=getattr(jobs, "classes", None))
  return train_and_score(cfg, pool, jobs.train_idx, jobs.train_count,
                         jobs.keys, test, job_affine=affine, progress=progress,
                         conv_impl=config.model.conv_impl)
