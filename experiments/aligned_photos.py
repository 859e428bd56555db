"""Aligned objects from real photographs: a detector fit on crops of one of
scikit-image's sample photographs, scored on more of them and on crops of others.

  python -m experiments.aligned_photos --preset=test --method=dsplit --size=64 \\
      --output_bias=zero --ae_steps=20

Without --output_bias / --ae_steps the preset is used as a user's folder gets it
(`configs.for_folder`). Prints one RESULT line (BUILD_NOTES.md, "Robustness").
"""

import argparse
import time

import numpy as np
import skimage.data
import skimage.transform
from sklearn.metrics import roc_auc_score

import dsplit_jax
from dsplit_jax import configs

OTHERS = ("coffee", "chelsea", "rocket", "immunohistochemistry")


def photo_crops(name, n, size, rng, at=(0, 120), window=256, jitter=3):
  """`n` crops of one sample photograph at the same place, shifted by up to `jitter`
  pixels, with a brightness change of up to 10 % and faint noise: an aligned object."""
  photo = getattr(skimage.data, name)()
  photo = photo[..., None] if photo.ndim == 2 else photo
  out = []
  for _ in range(n):
    dy, dx = rng.integers(-jitter, jitter + 1, 2)
    y, x = at[0] + jitter + dy, at[1] + jitter + dx
    crop = skimage.transform.resize(
        photo[y:y + window, x:x + window].astype(np.float32) / 255, (size, size),
        anti_aliasing=True)
    crop = crop * rng.uniform(0.9, 1.1) + rng.normal(0, 0.01, crop.shape)
    out.append(np.clip(crop * 255, 0, 255).astype(np.uint8))
  return np.stack(out)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--preset", default="test")
  p.add_argument("--method", default="dsplit")
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--output_bias", default=None)
  p.add_argument("--ae_steps", type=int, default=None)
  a = p.parse_args()
  rng = np.random.default_rng(0)
  good = photo_crops("astronaut", 120, a.size, rng)
  bad = np.concatenate([photo_crops(n, 10, a.size, rng, at=(20, 20)) for n in OTHERS])
  test_good = photo_crops("astronaut", 40, a.size, rng)
  config = None
  if a.output_bias or a.ae_steps:
    config = configs.get_preset(a.preset)
    config.ae.output_bias = a.output_bias or config.ae.output_bias
    if a.ae_steps:
      config.ae.steps = a.ae_steps
      config.ae.warmup_steps = min(a.ae_steps, config.ae.warmup_steps)
  t = time.time()
  clf = dsplit_jax.OneClassClassifier(a.preset, method=a.method, config=config).fit(good)
  scores = clf.score(np.concatenate([test_good, bad]))
  auc = roc_auc_score([0] * len(test_good) + [1] * len(bad), scores)
  print(f"RESULT preset={a.preset} method={a.method} size={a.size} "
        f"output_bias={clf.config_.ae.output_bias} plateau_ratio={clf.plateau_ratio_} "
        f"auc={auc:.3f} fit+score={time.time() - t:.0f}s warning={clf.split_warning_}")


if __name__ == "__main__":
  main()
