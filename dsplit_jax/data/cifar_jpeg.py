"""CIFAR-10 in the official binary layout from a tarball of JPEG files.

The tarball holds `train/<class>/*.jpg` and `test/<class>/*.jpg` (32x32 RGB), with the
class folders named as `sources.class_names("cifar10")`. It is a re-encoding of
CIFAR-10, so pixels differ slightly from the original batches. Written to
`OUT/cifar10/cifar-10-batches-bin/`: `data_batch_1..5.bin` and `test_batch.bin` (each
record: 1 label byte, then 3,072 pixel bytes as R, G and B planes, which
`cifar.parse_bin_batch` reads) and `batches.meta.txt`. Deterministic: members are read
in name order and the training records are shuffled with a fixed seed before they are
cut into five batches, as the original batches mix the classes.

  python -m dsplit_jax.data.cifar_jpeg cifar10-jpeg.tar.gz OUT
"""

from __future__ import annotations

import io
import os
import sys
import tarfile

import numpy as np

from dsplit_jax.data import cifar

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
TRAIN_BATCHES = 5
SHUFFLE_SEED = 0


def _decode(blob: bytes, name: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"), np.uint8)
  if image.shape != (32, 32, 3):
    raise ValueError(f"{name}: a {image.shape} image, CIFAR-10 images are 32x32x3")
  return image


def read_tar(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """split -> (images [N, 32, 32, 3] uint8, labels [N] uint8), in member-name order."""
  found: dict[str, list[tuple[str, int, bytes]]] = {"train": [], "test": []}
  with tarfile.open(path) as tar:
    for member in tar:
      parts = member.name.strip("./").split("/")
      if not member.isfile() or len(parts) != 3 or parts[0] not in found:
        continue
      split, cls, _ = parts
      if cls not in CLASSES:
        raise ValueError(f"{path}: {member.name} is in an unknown class folder {cls!r}; "
                         f"expected one of {', '.join(CLASSES)}")
      found[split].append((member.name, CLASSES.index(cls), tar.extractfile(member).read()))
  out = {}
  for split, items in found.items():
    if not items:
      raise ValueError(f"{path}: no {split}/<class>/*.jpg files")
    items.sort()
    out[split] = (np.stack([_decode(blob, name) for name, _, blob in items]),
                  np.array([label for _, label, _ in items], np.uint8))
  return out


def _records(images: np.ndarray, labels: np.ndarray) -> bytes:
  planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # HWC -> CHW planes
  return np.concatenate([labels[:, None], planes], axis=1).astype(np.uint8).tobytes()


def convert(tar_path: str, out_dir: str) -> str:
  """Writes the binary batches under `out_dir/cifar10/`; returns the batches folder."""
  splits = read_tar(tar_path)
  dest = os.path.join(out_dir, "cifar10", cifar.BIN_DIR)
  os.makedirs(dest, exist_ok=True)
  images, labels = splits["train"]
  order = np.random.default_rng(SHUFFLE_SEED).permutation(len(labels))
  batches = np.array_split(order, TRAIN_BATCHES)
  files = [(f"data_batch_{i + 1}.bin", images[b], labels[b]) for i, b in enumerate(batches)]
  files.append(("test_batch.bin",) + splits["test"])
  for name, x, y in files:
    tmp = os.path.join(dest, name + ".tmp")
    with open(tmp, "wb") as f:
      f.write(_records(x, y))
    os.replace(tmp, os.path.join(dest, name))  # a killed conversion leaves no half file
  with open(os.path.join(dest, "batches.meta.txt"), "w") as f:
    f.write("\n".join(CLASSES) + "\n")
  return dest


if __name__ == "__main__":
  if len(sys.argv) != 3:
    sys.exit("usage: python -m dsplit_jax.data.cifar_jpeg TARBALL OUT_DIR")
  print(convert(sys.argv[1], sys.argv[2]))
