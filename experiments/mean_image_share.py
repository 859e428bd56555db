"""The mean image's share of a flat image's MSE per class (`split.mean_image_share`,
on the first `ae.plateau_images` = 512 training images of each class): where the
plateau test is meaningful (share near 1) and where the mean image is a strong
reconstruction (aligned objects, below `split.ALIGNED_SHARE`).

  DSPLIT_DATA_DIR=... python -m experiments.mean_image_share --datasets=mnist,fashion_mnist,cifar10
"""

import argparse

from dsplit_jax import data
from dsplit_jax import split


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--datasets", default="mnist,fashion_mnist,cifar10")
  p.add_argument("--images", type=int, default=512)
  a = p.parse_args()
  for ds in a.datasets.split(","):
    x, y = data.load(ds, "train")
    shares = [split.mean_image_share(x[y == c][:a.images]) for c in sorted(set(y.tolist()))]
    print(f"{ds}: " + " ".join(f"{s:.2f}" for s in shares)
          + f"  (min {min(shares):.2f}, max {max(shares):.2f})")


if __name__ == "__main__":
  main()
