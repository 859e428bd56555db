"""Scoring speed of a detector after compilation: arrays, and a folder streamed from disk.

  python -m experiments.bench_scoring [--preset=cpu] [--images=2000] [--side=28]

The parameters are freshly initialised (speed does not depend on training). Prints the
first call (compilation included), then images/s of `score` on arrays of several sizes
and of `score_files` on a folder of PNGs it writes to a temporary folder, and how many
XLA programs were compiled after the first call (should be 0). Results: BUILD_NOTES.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import numpy as np
from PIL import Image

from dsplit_jax import api
from dsplit_jax import configs


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", default="cpu", choices=configs.PRESETS)
  p.add_argument("--images", type=int, default=2000)
  p.add_argument("--side", type=int, default=28)
  args = p.parse_args(argv)

  clf = api.OneClassClassifier(config=configs.get_preset(args.preset))
  clf.image_shape = (args.side, args.side, 1)
  clf._fitted = api._template(clf.config, clf.image_shape)  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (args.images,) + clf.image_shape, dtype=np.uint8)
  compiled = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, _, **kw: compiled.append(kw.get("fun_name"))
      if event == "/jax/core/compile/backend_compile_duration" else None)

  start = time.perf_counter()
  clf.score(x[:1])
  print(f"preset {args.preset}, batch {clf.batch_size}, {jax.default_backend()}: first call "
        f"(1 image, compilation included) {time.perf_counter() - start:.2f} s")
  compiled.clear()
  for n in sorted({1, 7, clf.batch_size, args.images}):
    start = time.perf_counter()
    clf.score(x[:n])
    dt = time.perf_counter() - start
    print(f"score {n:5d} images: {dt:.3f} s, {n / dt:8.1f} images/s")
  with tempfile.TemporaryDirectory() as folder:
    for i, im in enumerate(x):
      Image.fromarray(im[..., 0]).save(f"{folder}/{i:06d}.png")
    start = time.perf_counter()
    n = sum(len(names) for names, _ in clf.score_files(folder))
    dt = time.perf_counter() - start
    print(f"score_files {n} PNGs (check, decode, score): {dt:.3f} s, {n / dt:8.1f} images/s")
  print(f"XLA programs compiled after the first call: {len(compiled)} {compiled}")


if __name__ == "__main__":
  main()
