"""Networks of the paper (section 3.1), as flax linen modules.

AlexNet is adapted to small images (28x28x1, 32x32x3): the 11x11/4 first layer of the
ImageNet network would leave nothing of a 28x28 digit, so the first convolution is 5x5
with stride 1; the rest keeps AlexNet's order (5 convolutions, 3 overlapping 3x3/2 max
pools, 2 dense layers, output layer). Widths come from the config so that the `cpu`
preset can train a narrower copy. The exact layer table is in BUILD_NOTES.md.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dsplit_jax import layers


# He initialisation: with flax's default (LeCun) the signal halves at every ReLU, and
# the 12-layer autoencoder then starts in a plateau that outputs a constant image.
_kaiming = nn.initializers.kaiming_normal()


def _he(key, shape, dtype=jnp.float32):
  """`kaiming_normal()(key, shape)`, the same numbers, drawn on the [fan_in, out] view.

  Why: XLA:CPU compiles threefry's bits for a 4-d kernel about 4x slower than for a
  2-d one (the initialisation programs took as long as a training chunk). The numbers
  do not change: fan_in is the product of all axes but the last either way, and the
  partitionable threefry's bits of a shape are those of its row-major flattening.
  """
  shape = tuple(shape)
  if len(shape) <= 2:
    return _kaiming(key, shape, dtype)
  return _kaiming(key, (math.prod(shape[:-1]), shape[-1]), dtype).reshape(shape)


# The classifier's kernel initialisers (`model.init`): He (as above; biases 0) or
# Glorot uniform, the default of the Keras/TensorFlow layers the authors used. Dense
# layers, the output and the distance head get the same one (flax's default, LeCun,
# stays on the output and head under "he_normal": how every record was trained).
INITS = ("he_normal", "glorot_uniform")


def _kernel_inits(init: str):
  """(features' kernels, output and distance-head kernels)."""
  if init == "he_normal":
    return _he, nn.initializers.lecun_normal()
  if init == "glorot_uniform":
    return (nn.initializers.glorot_uniform(),) * 2
  raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")


def _pool(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class AlexNetFeatures(nn.Module):
  """AlexNet up to its second-last layer; returns (dense output, pooled conv features).

  Both ends are returned because the paper's split of the network into a feature
  extraction and a classification subnetwork can be read at either (`LATENTS`).
  """
  conv_features: Sequence[int] = (96, 256, 384, 384, 256)
  dense_features: Sequence[int] = (4096, 4096)
  conv_impl: str = "auto"        # see layers.py: same function, different lowering
  dropout: float = 0.0           # AlexNet's dropout after each dense layer (0: none)
  kernel_init: Callable = _he
  dtype: Any = None              # compute dtype (`model.dtype`); parameters stay float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    c1, c2, c3, c4, c5 = self.conv_features
    Conv, _ = layers.conv_modules(self.conv_impl, self.kernel_init, self.dtype)
    x = _pool(nn.relu(Conv(c1, (5, 5), name="conv1")(x)))
    x = _pool(nn.relu(Conv(c2, (5, 5), name="conv2")(x)))
    x = nn.relu(Conv(c3, (3, 3), name="conv3")(x))
    x = nn.relu(Conv(c4, (3, 3), name="conv4")(x))
    x = _pool(nn.relu(Conv(c5, (3, 3), name="conv5")(x)))
    conv = x = x.reshape(x.shape[:-3] + (-1,))
    for i, width in enumerate(self.dense_features):
      x = nn.relu(nn.Dense(width, kernel_init=self.kernel_init, dtype=self.dtype,
                           name=f"dense{i + 1}")(x))
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return x, conv


# Distance subnetworks (section 3.1, eq. 1). The paper's is one subtraction layer and
# one dense layer; its logit w.(z_i - z_j) + b is antisymmetric in the pair, so it
# cannot give dist(z_i, z_j) = dist(z_j, z_i) = 1 (eq. 1) for pairs drawn in random
# order, and both pair losses stay at log 2 (BUILD_NOTES.md, "The method"). The others are
# symmetric: a weighted L1 or squared-L2 distance (Siamese verification networks) or a
# monotone function of the Euclidean distance.
DISTANCE_HEADS = ("paper_literal", "abs_difference", "squared_difference", "metric",
                  "metric_normalized")


def _softplus_inverse(y: float) -> float:
  return math.log(math.expm1(y))  # plain floats: also called while tracing init


class DistanceHead(nn.Module):
  """dist(z_i, z_j) = sigmoid of the returned logit, in [0, 1].

  paper_literal: dense(z_i - z_j). abs_difference: dense(|z_i - z_j|).
  squared_difference: dense((z_i - z_j)^2). metric: a * mean((z_i - z_j)^2) + b and
  metric_normalized: a * ||z_i/|z_i| - z_j/|z_j| ||^2 + b, with a = softplus(w) > 0,
  so the distance grows with the Euclidean distance. The mean (not the sum) keeps the
  un-normalised metric independent of the width of z; normalised latents have
  ||.||^2 in [0, 4] (in [0, 2] for the non-negative ReLU features), so that head starts
  at a = 5, b = -5: dist = 1/2 at ||.||^2 = 1, and both ends of the range reachable.
  """
  kind: str = "abs_difference"
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Any = None

  @nn.compact
  def __call__(self, z_i, z_j):
    dz = z_i - z_j
    if self.kind in ("paper_literal", "abs_difference", "squared_difference"):
      features = {"paper_literal": dz, "abs_difference": jnp.abs(dz),
                  "squared_difference": jnp.square(dz)}[self.kind]
      return nn.Dense(1, kernel_init=self.kernel_init, dtype=self.dtype,
                      name="dense")(features)[..., 0]
    if self.kind == "metric":
      d2, a0, b0 = jnp.mean(jnp.square(dz), axis=-1), 1.0, 0.0
    elif self.kind == "metric_normalized":
      def unit(z):
        return z / jnp.sqrt(jnp.sum(jnp.square(z), axis=-1, keepdims=True) + 1e-12)
      d2, a0, b0 = jnp.sum(jnp.square(unit(z_i) - unit(z_j)), axis=-1), 5.0, -5.0
    else:
      raise ValueError(f"distance head must be one of {', '.join(DISTANCE_HEADS)}, "
                       f"got {self.kind!r}")
    w = self.param("scale", nn.initializers.constant(_softplus_inverse(a0)), ())
    b = self.param("bias", nn.initializers.constant(b0), ())
    return jax.nn.softplus(w) * d2 + b


# Where z, the input of the distance head, is taken (Fig. 2: feature extraction
# subnetwork -> z -> classification subnetwork). "dense": after AlexNet's two dense
# layers, so the classification subnetwork is the output layer alone (a hyperplane on
# z). "conv": AlexNet's own split (its `features` and `classifier`): z is the pooled
# conv5 output and the classification subnetwork is dense1, dense2 and the output.
# The network and its parameters are the same; only the distance head's input moves.
LATENTS = ("dense", "conv")


class _WithDistanceHead:
  """The classifier networks' distance head in float32, and one call that initialises
  every parameter (the classifier and the head) at once."""

  def distance_logit(self, z_i, z_j):
    return self.distance(z_i, z_j).astype(jnp.float32)

  def init_all(self, x):
    logit, z = self(x)
    return logit, self.distance_logit(z, z)


class OneClassNet(_WithDistanceHead, nn.Module):
  """Feature extractor + classification output (one logit) + distance head.

  The distance subnetwork (`DistanceHead`, used in training only) maps a pair of
  latents to a logit whose sigmoid is dist(z_i, z_j) in [0, 1].
  """
  conv_features: Sequence[int] = (96, 256, 384, 384, 256)
  dense_features: Sequence[int] = (4096, 4096)
  distance_head: str = "abs_difference"
  conv_impl: str = "auto"
  latent: str = "dense"
  dropout: float = 0.0
  weight_init: str = "he_normal"  # INITS (`init` is the Module's method)
  # Compute dtype (`model.dtype`): None or float32, or bfloat16 on accelerators.
  # Parameters, and what leaves the network (logits, z), are float32, so the losses
  # and the optimiser run in float32 whatever it is.
  dtype: Any = None

  def setup(self):
    if self.latent not in LATENTS:
      raise ValueError(f"latent must be one of {', '.join(LATENTS)}, got {self.latent!r}")
    features_init, output_init = _kernel_inits(self.weight_init)
    self.features = AlexNetFeatures(self.conv_features, self.dense_features, self.conv_impl,
                                    self.dropout, features_init, self.dtype)
    self.classifier = nn.Dense(1, kernel_init=output_init, dtype=self.dtype)
    self.distance = DistanceHead(self.distance_head, output_init, self.dtype)

  def __call__(self, x, train: bool = False):
    """Returns (logit of "atypical/abnormal", latent z).

    `train=True` applies the dropout (if any) and needs a "dropout" rng; scoring does not.
    """
    hidden, conv = self.features(x, train)
    z = hidden if self.latent == "dense" else conv
    return (self.classifier(hidden)[..., 0].astype(jnp.float32), z.astype(jnp.float32))


def _bottleneck_size(image_size: int) -> int:
  if image_size % 4:
    raise ValueError(f"image size {image_size} must be a multiple of 4 for the autoencoder")
  return image_size // 4


class Autoencoder(nn.Module):
  """Splitting autoencoder: AlexNet-like encoder whose dense layers are one convolution.

  Encoder: two strided 5x5 convolutions (the downsampling AlexNet does with stride and
  pooling), three 3x3 convolutions, and one convolution whose kernel covers the whole
  remaining map (it replaces the dense layers) giving a 1x1 code. The decoder mirrors
  it with transposed convolutions and ends in a sigmoid since images are in [0, 1].
  """
  conv_features: Sequence[int] = (96, 256, 384, 384, 256)
  code_features: int = 256
  channels: int = 1
  image_size: int = 28
  conv_impl: str = "auto"
  dtype: Any = None  # compute dtype; the reconstruction is float32 (MSE, SSIM)

  @nn.compact
  def __call__(self, x):
    c1, c2, c3, c4, c5 = self.conv_features
    Conv, ConvTranspose = layers.conv_modules(self.conv_impl, _he, self.dtype)
    s = _bottleneck_size(self.image_size)
    x = nn.relu(Conv(c1, (5, 5), strides=2, name="conv1")(x))
    x = nn.relu(Conv(c2, (5, 5), strides=2, name="conv2")(x))
    x = nn.relu(Conv(c3, (3, 3), name="conv3")(x))
    x = nn.relu(Conv(c4, (3, 3), name="conv4")(x))
    x = nn.relu(Conv(c5, (3, 3), name="conv5")(x))
    code = Conv(self.code_features, (s, s), padding="VALID", name="conv_code")(x)
    x = nn.relu(ConvTranspose(c5, (s, s), padding="VALID", name="deconv_code")(code))
    x = nn.relu(ConvTranspose(c4, (3, 3), name="deconv5")(x))
    x = nn.relu(ConvTranspose(c3, (3, 3), name="deconv4")(x))
    x = nn.relu(ConvTranspose(c2, (3, 3), name="deconv3")(x))
    x = nn.relu(ConvTranspose(c1, (5, 5), strides=(2, 2), name="deconv2")(x))
    x = ConvTranspose(self.channels, (5, 5), strides=(2, 2), name="deconv1")(x)
    return nn.sigmoid(x.astype(jnp.float32))


def conv_kernel_l2(params) -> jax.Array:
  """Sum of squared convolution kernels: the paper's L2 regularisation on every conv layer."""
  total = jnp.zeros((), jnp.float32)
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    names = [getattr(p, "key", "") for p in path]
    if names[-1] == "kernel" and any(str(n).startswith(("conv", "deconv")) for n in names):
      total = total + jnp.sum(jnp.square(leaf))
  return total


# --------------------------------------------------------------- the authors' program
# Networks of the authors' public program (patrickschlachter/deep-occ-using-ics,
# `models/build.py`; facts read there, BUILD_NOTES.md "The `authors` preset"): not
# AlexNet. Layer shapes and order follow that file; `ARCHS` names the choice.
ARCHS = ("alexnet", "authors")

# Keras' TruncatedNormal(mean=0, stddev=0.01): a normal of std 0.01 redrawn outside
# two standard deviations (jax's truncated_normal, whose `stddev` is the untruncated
# one, as Keras'). The authors' distance head has Keras' default, Glorot uniform.
_authors_init = nn.initializers.truncated_normal(stddev=0.01)


def _leaky(x, slope):
  return nn.leaky_relu(x, negative_slope=slope)


class AuthorsFeatures(nn.Module):
  """The feature extractor of the authors' ICSNET, returning the latent z.

  Four stages: two 3x3 bias-free linear convolutions whose outputs are concatenated,
  LeakyReLU, 2x2 average pooling, BatchNorm (28-pixel inputs are zero-padded by one
  after the second pooling, 7 -> 9, as there); then two parallel 1x1 convolutions of
  the same input, concatenated, LeakyReLU, BatchNorm; flatten; dense, LeakyReLU,
  dropout; dense, LeakyReLU = z.
  """
  conv_features: Sequence[int] = (16, 32, 64, 128, 256)
  dense_features: Sequence[int] = (256, 128)
  dropout: float = 0.5
  leaky_slope: float = 0.2
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  conv_impl: str = "auto"
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    Conv, _ = layers.conv_modules(self.conv_impl, _authors_init, self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                             dtype=self.dtype)
    padded_28 = x.shape[-3] == 28
    *stages, last = self.conv_features
    for i, width in enumerate(stages):
      a = Conv(width, (3, 3), use_bias=False, name=f"conv{i + 1}a")(x)
      b = Conv(width, (3, 3), use_bias=False, name=f"conv{i + 1}b")(a)
      x = _leaky(jnp.concatenate([a, b], axis=-1), self.leaky_slope)
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
      if i == 1 and padded_28:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)])
      x = norm(name=f"bn{i + 1}")(x)
    a = Conv(last, (1, 1), use_bias=False, name=f"conv{len(stages) + 1}a")(x)
    b = Conv(last, (1, 1), use_bias=False, name=f"conv{len(stages) + 1}b")(x)
    x = norm(name=f"bn{len(stages) + 1}")(
        _leaky(jnp.concatenate([a, b], axis=-1), self.leaky_slope))
    x = x.reshape(x.shape[:-3] + (-1,))
    *hidden, latent = self.dense_features
    for i, width in enumerate(hidden):
      x = _leaky(nn.Dense(width, kernel_init=_authors_init, dtype=self.dtype,
                          name=f"dense{i + 1}")(x), self.leaky_slope)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return _leaky(nn.Dense(latent, kernel_init=_authors_init, dtype=self.dtype,
                           name=f"dense{len(hidden) + 1}")(x), self.leaky_slope)


class AuthorsNet(_WithDistanceHead, nn.Module):
  """The authors' ICSNET: `AuthorsFeatures` -> z -> dropout -> dense(1), and the
  distance head dense(z_i - z_j) ("paper_literal"). BatchNorm statistics live in the
  `batch_stats` collection; scoring (`train=False`) uses their running averages.

  The authors train the output as a normality score (typical = 1); here it is the
  logit of "atypical" (typical = 0), the same network and losses under a sign flip
  of the output layer, whose symmetric initialisation makes the two the same problem.
  """
  conv_features: Sequence[int] = (16, 32, 64, 128, 256)
  dense_features: Sequence[int] = (256, 128)
  distance_head: str = "paper_literal"
  dropout: float = 0.5
  leaky_slope: float = 0.2
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  conv_impl: str = "auto"
  dtype: Any = None

  def setup(self):
    self.features = AuthorsFeatures(self.conv_features, self.dense_features, self.dropout,
                                    self.leaky_slope, self.bn_momentum, self.bn_epsilon,
                                    self.conv_impl, self.dtype)
    self.drop = nn.Dropout(self.dropout)
    self.classifier = nn.Dense(1, kernel_init=_authors_init, dtype=self.dtype)
    self.distance = DistanceHead(self.distance_head, nn.initializers.glorot_uniform(),
                                 self.dtype)

  def __call__(self, x, train: bool = False):
    """(logit of "atypical/abnormal", latent z); `train=True` needs a "dropout" rng
    and a mutable `batch_stats`."""
    z = self.features(x, train)
    hidden = self.drop(z, deterministic=not train)
    return (self.classifier(hidden)[..., 0].astype(jnp.float32), z.astype(jnp.float32))


class AuthorsAutoencoder(nn.Module):
  """The authors' splitting autoencoder (`build_ae`): four stages of two 3x3 ReLU
  convolutions concatenated, 2x2 max pooling and BatchNorm down to a 2x2 map, a 1x1
  ReLU code convolution and BatchNorm, then four stages of a stride-2 transposed 3x3
  convolution and a 3x3 convolution concatenated with BatchNorm, and a 3x3 sigmoid
  output. 28-pixel inputs are zero-padded to 32 and the output cropped back.
  `conv_features`: the encoder's four widths; the decoder's are those of the stage
  below (the authors' 32, 32, 16, 8 for 8, 16, 32, 64).
  """
  conv_features: Sequence[int] = (8, 16, 32, 64)
  code_features: int = 128
  channels: int = 1
  image_size: int = 32
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  conv_impl: str = "auto"
  dtype: Any = None
  output_layer = "conv_out"  # the layer whose bias `train.init_ae_state` may set

  @nn.compact
  def __call__(self, x, train: bool = False):
    Conv, ConvTranspose = layers.conv_modules(self.conv_impl, _authors_init, self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                             dtype=self.dtype)
    size = x.shape[-3]
    if size != 28 and size % 16:
      raise ValueError(f"image size {size} must be 28 or a multiple of 16 for the authors' "
                       "autoencoder (four 2x2 poolings)")
    crop = 2 if size == 28 else 0
    if crop:
      x = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(crop, crop), (crop, crop), (0, 0)])
    for i, width in enumerate(self.conv_features):
      a = nn.relu(Conv(width, (3, 3), use_bias=False, name=f"conv{i + 1}a")(x))
      b = nn.relu(Conv(width, (3, 3), use_bias=False, name=f"conv{i + 1}b")(a))
      x = nn.max_pool(jnp.concatenate([b, a], axis=-1), (2, 2), strides=(2, 2))
      x = norm(name=f"bn{i + 1}")(x)
    x = norm(name="bn_code")(nn.relu(Conv(self.code_features, (1, 1), name="conv_code")(x)))
    f = tuple(self.conv_features)
    widths = (f[-2], *f[-2:0:-1], f[0])  # the authors' 32, 32, 16, 8 for 8, 16, 32, 64
    for i, width in enumerate(widths):
      a = nn.relu(ConvTranspose(width, (3, 3), strides=(2, 2), use_bias=False,
                                name=f"deconv{i + 1}a")(x))
      b = nn.relu(Conv(width, (3, 3), use_bias=False, name=f"deconv{i + 1}b")(a))
      x = norm(name=f"bn_dec{i + 1}")(jnp.concatenate([b, a], axis=-1))
    x = Conv(self.channels, (3, 3), name=self.output_layer)(x)
    if crop:
      x = x[..., crop:-crop, crop:-crop, :]
    return nn.sigmoid(x.astype(jnp.float32))


def kernel_l2(params, skip: tuple[str, ...] = ()) -> jax.Array:
  """Sum of squared kernels of every layer (Keras' `l2` on each layer's kernel, the
  authors' regularisation), except those under the top-level modules in `skip`."""
  total = jnp.zeros((), jnp.float32)
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    names = [str(getattr(p, "key", "")) for p in path]
    if names[-1] == "kernel" and not (len(names) > 2 and names[1] in skip):
      total = total + jnp.sum(jnp.square(leaf))
  return total
