"""Builds the two folder sets `dsplit_jax.compare` is measured on, and measures it.

  python -m experiments.compare_folders --root=FOLDERS            (builds them)
  python -m experiments.compare_folders --root=FOLDERS --measure --methods=iforest,ocsvm

digits: scikit-learn's `load_digits` (8x8, 0..16) upscaled to 32x32 PNGs: train/ the
  first 120 zeros, val_good/ the other 58 zeros, val_bad/ the first 174 other digits.
sneakers: Fashion-MNIST (IDX files found as `data.load` finds them): train/ the first
  2000 training sneakers (class 7), val_good/ the first 300 test sneakers, val_bad/ the
  first 700 other test images.
--measure runs `compare` on each set with the chosen methods and PyOD's KNN on the
flattened pixels (the [0, 1] images as the detector sees them).
"""

import argparse
import os

import numpy as np
from PIL import Image


def _write(folder, images):
  os.makedirs(folder, exist_ok=True)
  for i, im in enumerate(images):
    Image.fromarray(im).save(os.path.join(folder, f"{i:05d}.png"))


def build(root):
  import sklearn.datasets
  from dsplit_jax import data
  d = sklearn.datasets.load_digits()
  im = (d.images * (255 / 16)).round().astype(np.uint8)
  big = np.stack([np.asarray(Image.fromarray(x).resize((32, 32), Image.BILINEAR)) for x in im])
  zeros, others = big[d.target == 0], big[d.target != 0]
  _write(f"{root}/digits/train", zeros[:120])
  _write(f"{root}/digits/val_good", zeros[120:178])
  _write(f"{root}/digits/val_bad", others[:174])
  x, y = data.load("fashion_mnist", "train")
  xt, yt = data.load("fashion_mnist", "test")
  _write(f"{root}/sneakers/train", x[y == 7][:2000, ..., 0])
  _write(f"{root}/sneakers/val_good", xt[yt == 7][:300, ..., 0])
  _write(f"{root}/sneakers/val_bad", xt[yt != 7][:700, ..., 0])


def pyod_knn(train, val):
  from pyod.models.knn import KNN
  flat = lambda x: (x.reshape(len(x), -1) / 255.0 if x.dtype == np.uint8
                    else x.reshape(len(x), -1))
  return KNN().fit(flat(train)).decision_function(flat(val))


def measure(root, methods, preset, out):
  from dsplit_jax import compare
  for name in ("digits", "sneakers"):
    train, val, y = compare.load_folders(f"{root}/{name}/train", f"{root}/{name}/val_good",
                                         f"{root}/{name}/val_bad")
    print(f"## {name}: {len(train)} to fit, {int((y == 0).sum())} + {int(y.sum())} to "
          f"validate, images {train.shape[1:]}")
    rows = compare.compare(train, val, y, methods=methods, preset=preset,
                           out_dir=f"{out}/{name}", extra={"pyod_knn": pyod_knn})
    print(compare.markdown(rows))


if __name__ == "__main__":
  p = argparse.ArgumentParser()
  p.add_argument("--root", required=True)
  p.add_argument("--measure", action="store_true")
  p.add_argument("--methods", default="iforest,ocsvm,hog_ocsvm")
  p.add_argument("--preset", default="cpu")
  p.add_argument("--out", default="compare_out")
  a = p.parse_args()
  if not os.path.isdir(f"{a.root}/sneakers/val_bad"):
    build(a.root)
  if a.measure:
    measure(a.root, a.methods.split(","), a.preset, a.out)
