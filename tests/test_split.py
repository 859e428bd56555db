"""The mean image's share of a flat image's error: what tells aligned objects apart."""

import numpy as np

from dsplit_jax import split


def test_mean_image_share_is_small_on_aligned_images_and_near_one_on_varied_ones():
  rng = np.random.default_rng(0)
  obj = rng.uniform(0, 1, (1, 16, 16, 3))
  aligned = obj + rng.normal(0, 0.02, (50, 16, 16, 3))  # one object, a little noise
  varied = rng.uniform(0, 1, (50, 16, 16, 3))            # nothing in common
  assert split.mean_image_share(aligned) < 0.01 < split.ALIGNED_SHARE
  assert split.mean_image_share(varied) > 0.95
  # Invariant to the pixel scale: uint8 and [0, 1] images give the same share.
  assert np.isclose(split.mean_image_share(255 * varied), split.mean_image_share(varied))
