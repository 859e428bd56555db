"""Convolutions written as patch extraction + one matrix product (im2col).

Why: under `vmap` over jobs every convolution has a per-job kernel, which XLA lowers to
a grouped convolution; XLA:CPU runs those several times slower than the same work as
batched matrix products (BUILD_NOTES.md, "Performance"). Patches are built from strided
slices, whose gradient is a pad, so the backward pass is matrix products too.

The modules have the parameters of `flax.linen.Conv` / `ConvTranspose` (same names,
shapes and initialisers) and compute the same function, so checkpoints and results
carry over between `conv_impl="xla"` and `"patches"`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

CONV_IMPLS = ("xla", "patches", "taps", "auto")
# "taps": for convolutions with few channels (C_in * C_out <= TAPS_MAX, Deep SVDD's
# MNIST network) on CPU, where both lax.conv and im2col are slow (notes/baselines.md).
TAPS_MAX = 64


def resolve_conv_impl(impl: str) -> str:
  """"auto" is "patches" on XLA:CPU (faster for vmapped jobs, and fast inside
  `lax.scan`, where lax.conv's gradients are 10x slower) and XLA's own elsewhere.
  (A network may choose "taps" for its smallest convolutions under "auto" on CPU.)"""
  if impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r}")
  if impl != "auto":
    return impl
  return "patches" if jax.default_backend() == "cpu" else "xla"


def _pairs(v, n=2):
  return tuple(v) if isinstance(v, Sequence) else (v,) * n


def _transpose_pads(k: int, s: int, padding: str):
  """`lax.conv_transpose`'s padding of the stride-dilated input for one dimension."""
  if padding == "SAME":
    pad_len = k + s - 2
    pad_a = k - 1 if s > k - 1 else -(-pad_len // 2)
  elif padding == "VALID":
    pad_len = k + s - 2 + max(k - s, 0)
    pad_a = k - 1
  else:
    raise ValueError(f"padding must be SAME or VALID, got {padding!r}")
  return pad_a, pad_len - pad_a


def conv_patches(x, kernel, strides, pads):
  """conv_general_dilated(x, kernel, strides, pads) in NHWC/HWIO, as strided slices of
  the padded input concatenated on channels, times the kernel."""
  kh, kw, cin, cout = kernel.shape
  config = [(0, 0, 0)] * (x.ndim - 3) + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
  x = lax.pad(x, jnp.zeros((), x.dtype), config)
  (sh, sw), (h, w) = strides, x.shape[-3:-1]
  out_h, out_w = (h - kh) // sh + 1, (w - kw) // sw + 1
  cols = [x[..., dy:dy + (out_h - 1) * sh + 1:sh, dx:dx + (out_w - 1) * sw + 1:sw, :]
          for dy in range(kh) for dx in range(kw)]
  patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
  return patches @ kernel.reshape(kh * kw * cin, cout)


class PatchConv(nn.Module):
  """`nn.Conv` (SAME/VALID or explicit ((lo, hi), (lo, hi)) padding, strides, optional
  bias) computed by `conv_patches`."""
  features: int
  kernel_size: Sequence[int]
  strides: int | Sequence[int] = 1
  padding: str | Sequence[tuple[int, int]] = "SAME"
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  # The compute dtype, as flax's `dtype`: parameters stay float32 (`param_dtype`), input
  # and parameters are cast to it for the product.
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    ks = tuple(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, ks + (x.shape[-1], self.features))
    bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = self._convolve(x, kernel, ks, _pairs(self.strides))
    if bias is not None:
      y = y + bias
    return y

  def _convolve(self, x, kernel, ks, strides):
    if isinstance(self.padding, str):
      pads = lax.padtype_to_pads(x.shape[-3:-1], ks, strides, self.padding)
    else:
      pads = [tuple(p) for p in self.padding]
    return conv_patches(x, kernel, strides, pads)


def _phase_taps(k: int, s: int, pad_lo: int, in_len: int, phases_len: int):
  """For each output phase r (outputs o = s * q + r): the kernel taps k0, k0 + s, ...
  that reach it and the (lo, hi) padding of the input for a stride-1 correlation."""
  out = []
  for r in range(s):
    k0 = (pad_lo - r) % s
    taps = len(range(k0, k, s))
    offset = (r + k0 - pad_lo) // s          # input index of tap m at q: q + m + offset
    out.append((k0, taps, (-offset, phases_len + taps - 2 + offset - (in_len - 1))))
  return out


def conv_transpose_patches(x, kernel, strides, pads):
  """`lax.conv_transpose` (kernel not flipped) without multiplying inserted zeros.

  Output o = s * q + r of a stride-s transposed convolution only meets the kernel taps
  k = k0(r) + s * m, so each of the s * s output phases is an ordinary stride-1
  convolution of x with a sub-kernel (`conv_patches`); the phases are then interleaved.
  """
  kh, kw, _, cout = kernel.shape
  (h, w), (sh, sw) = x.shape[-3:-1], strides
  out_h = (h - 1) * sh + 1 + sum(pads[0]) - kh + 1
  out_w = (w - 1) * sw + 1 + sum(pads[1]) - kw + 1
  if h == w == 1:  # A 1x1 input (the autoencoder's code): the output is the kernel, scaled.
    def taps(k, pad_lo, out):
      idx = pad_lo - jnp.arange(out)
      return jnp.clip(idx, 0, k - 1), (idx >= 0) & (idx < k)
    (iy, my), (ix, mx) = taps(kh, pads[0][0], out_h), taps(kw, pads[1][0], out_w)
    sub = kernel[iy][:, ix] * (my[:, None] & mx[None, :])[..., None, None]
    return jnp.einsum("...c,yxcd->...yxd", x[..., 0, 0, :], sub)
  qh, qw = -(-out_h // sh), -(-out_w // sw)
  rows = []
  for k0y, ty, pad_y in _phase_taps(kh, sh, pads[0][0], h, qh):
    cols = []
    for k0x, tx, pad_x in _phase_taps(kw, sw, pads[1][0], w, qw):
      if ty and tx:
        cols.append(conv_patches(x, kernel[k0y::sh, k0x::sw], (1, 1), (pad_y, pad_x)))
      else:  # A kernel smaller than the stride leaves this phase empty.
        cols.append(jnp.zeros(x.shape[:-3] + (qh, qw, cout), x.dtype))
    rows.append(jnp.stack(cols, axis=-2))          # [..., qh, qw, sw, C]
  y = jnp.stack(rows, axis=-4)                     # [..., qh, sh, qw, sw, C]
  y = y.reshape(x.shape[:-3] + (qh * sh, qw * sw, cout))
  return y[..., :out_h, :out_w, :]


def _taps_hwcn(x, kernel, pads):
  """Stride-1 cross-correlation of x [H, W, C, B] as k*k*C broadcast multiply-adds
  of shifted [H, W, 1, B] slices with [O, 1] kernel columns: the batch is in the
  vector lanes. One fused loop per kernel row; the barriers keep the fusions small
  (compile time, registers) and stop XLA from recomputing x's producer per tap."""
  kh, kw, cin, _ = kernel.shape
  x = lax.optimization_barrier(x)
  xp = jnp.pad(x, (tuple(pads[0]), tuple(pads[1]), (0, 0), (0, 0)))
  ho, wo = xp.shape[0] - kh + 1, xp.shape[1] - kw + 1
  acc = 0.0
  for i in range(kh):
    row = 0.0
    for j in range(kw):
      for c in range(cin):
        row = row + xp[i:i + ho, j:j + wo, c:c + 1] * kernel[i, j, c][:, None]
    acc = lax.optimization_barrier(acc + row)
  return acc


def _conv_hwcn(x, kernel, pads):
  return lax.conv_general_dilated(x, kernel, (1, 1), pads,
                                  dimension_numbers=("HWCN", "HWIO", "HWCN"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_taps(x, kernel, pads):
  """`_taps_hwcn`, whose input gradient is taps again (the flipped, transposed kernel;
  few channels) and whose kernel gradient is XLA's (fast enough for these shapes)."""
  return _taps_hwcn(x, kernel, pads)


def _conv_taps_fwd(x, kernel, pads):
  return _taps_hwcn(x, kernel, pads), (x, kernel)


def _conv_taps_bwd(pads, res, g):
  x, kernel = res
  kh, kw = kernel.shape[:2]
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx = _taps_hwcn(g, flipped, ((kh - 1 - pads[0][0], kh - 1 - pads[0][1]),
                               (kw - 1 - pads[1][0], kw - 1 - pads[1][1])))
  dk = jax.vjp(lambda w: _conv_hwcn(x, w, pads), kernel)[1](g)[0]
  return dx, dk


conv_taps.defvjp(_conv_taps_fwd, _conv_taps_bwd)


class TapsConv(PatchConv):
  """`nn.Conv` computed by `conv_taps` on [B, H, W, C] inputs (stride 1; other
  strides by `conv_patches`)."""

  def _convolve(self, x, kernel, ks, strides):
    if tuple(strides) != (1, 1) or x.ndim != 4:
      return super()._convolve(x, kernel, ks, strides)
    if isinstance(self.padding, str):
      pads = lax.padtype_to_pads(x.shape[-3:-1], ks, strides, self.padding)
    else:
      pads = [tuple(p) for p in self.padding]
    pads = tuple(tuple(int(v) for v in p) for p in pads)
    y = conv_taps(jnp.transpose(x, (1, 2, 3, 0)), kernel, pads)
    return jnp.transpose(y, (3, 0, 1, 2))


class PatchConvTranspose(PatchConv):
  """`nn.ConvTranspose` (transpose_kernel=False) computed by `conv_transpose_patches`."""

  def _convolve(self, x, kernel, ks, strides):
    if not isinstance(self.padding, str):
      raise ValueError(f"PatchConvTranspose takes SAME or VALID padding, got {self.padding!r}")
    pads = [_transpose_pads(k, s, self.padding) for k, s in zip(ks, strides)]
    return conv_transpose_patches(x, kernel, strides, pads)


def conv_modules(impl: str, kernel_init: Callable, dtype=None):
  """(Conv, ConvTranspose) constructors for `impl`, with `kernel_init` and the compute
  `dtype` (None: the inputs' and parameters' own, float32)."""
  impl = resolve_conv_impl(impl)
  conv, conv_t = {"xla": (nn.Conv, nn.ConvTranspose), "taps": (TapsConv, PatchConvTranspose),
                  "patches": (PatchConv, PatchConvTranspose)}[impl]
  return (functools.partial(conv, kernel_init=kernel_init, dtype=dtype),
          functools.partial(conv_t, kernel_init=kernel_init, dtype=dtype))
