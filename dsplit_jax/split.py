"""The paper's data split: SSIM of each image with its autoencoder reconstruction,
the rho% lowest-SSIM images atypical, the rest typical; and the check that an
autoencoder is not stuck on the mean-image plateau (whose split would be noise).

Pure functions of one job, vmapped over jobs by `pipeline`.
"""

from __future__ import annotations

import dm_pix
import flax
import jax
import jax.numpy as jnp
import numpy as np

# Below this share of a flat image's MSE, the mean image is a strong reconstruction
# (aligned objects), and an autoencoder short of it may still follow each image: the
# plateau test is not meaningful there. Measured on the first 512 training images of
# each class: 0.47-0.66 (MNIST), 0.28-0.74 (Fashion-MNIST), 0.84-1.00 (CIFAR-10),
# 0.06 on aligned photograph crops (BUILD_NOTES.md, "A user's images").
ALIGNED_SHARE = 0.15


@flax.struct.dataclass
class Split:
  """Typical / atypical index arrays of one job (padded, with counts)."""
  typical_idx: jax.Array
  typical_count: jax.Array
  atypical_idx: jax.Array
  atypical_count: jax.Array


def ssim_scores(params, images, *, model, config) -> jax.Array:
  """SSIM between each image and its reconstruction (dm-pix), computed in batches."""
  def one_batch(x):
    return dm_pix.ssim(x, model.apply(params, x), max_val=config.ae.ssim_max_val,
                       filter_size=config.ae.ssim_filter_size)
  return jax.lax.map(lambda x: one_batch(x[None])[0], images,
                     batch_size=config.eval_batch_size)


def plateau_ratio(params, images, count, *, model) -> jax.Array:
  """Reconstruction MSE over the MSE of the mean image, on the first `count` images.

  Above 1, the autoencoder does worse than outputting one fixed image: it is on the
  plateau where it gives the same near-blank output for every input (its ReLUs are
  dead, no gradient leaves it), and its SSIM ranking, hence the split, is noise.
  Measured in the `cpu` preset: 2.1-2.3 when stuck, 0.13-0.22 when trained
  (BUILD_NOTES.md, "The method").
  """
  mask = (jnp.arange(images.shape[0]) < count).astype(images.dtype)
  n = jnp.maximum(jnp.sum(mask), 1.0)

  def mse(reconstruction):
    per_image = jnp.mean(jnp.square(reconstruction - images), axis=tuple(range(1, images.ndim)))
    return jnp.sum(mask * per_image) / n
  mean_image = jnp.tensordot(mask, images, axes=1) / n
  return mse(model.apply(params, images)) / jnp.maximum(mse(mean_image), 1e-12)


def mean_image_share(images) -> float:
  """The mean image's MSE over a flat image's (each channel's mean pixel) on `images`
  [N, H, W, C]: near 1 where images vary freely, small on aligned objects."""
  x = np.asarray(images, np.float64)
  mean_mse = np.mean(np.square(x - x.mean(axis=0, keepdims=True)))
  flat_mse = np.mean(np.square(x - x.mean(axis=(0, 1, 2), keepdims=True)))
  return float(mean_mse / max(flat_mse, 1e-12))


def split_by_ssim(ssim, idx, count, rho: float) -> Split:
  """The rho% lowest-SSIM images are atypical, the rest typical.

  The atypical count is rho% of `count` rounded half up, kept within [2, count - 2]
  so that both pair losses always have pairs; ties go to the lower position
  (stable sort), so the split is deterministic.
  """
  size = idx.shape[0]
  n_atyp = jnp.floor(rho / 100.0 * count + 0.5).astype(jnp.int32)
  n_atyp = jnp.clip(n_atyp, 2, jnp.maximum(count - 2, 2))
  valid = jnp.arange(size) < count
  order = jnp.argsort(jnp.where(valid, ssim, jnp.inf), stable=True)
  rank = jnp.zeros(size, jnp.int32).at[order].set(jnp.arange(size, dtype=jnp.int32))
  typical_order = jnp.argsort(jnp.where(valid & (rank >= n_atyp), rank, size + rank))
  return Split(typical_idx=idx[typical_order], typical_count=count - n_atyp,
               atypical_idx=idx[order], atypical_count=n_atyp)
