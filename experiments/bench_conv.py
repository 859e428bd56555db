"""Benchmark: each autoencoder/classifier convolution, forward + backward, by lowering.

  python -m experiments.bench_conv [--jobs=10]

Times `jax.grad` of every convolution shape of the `cpu` preset (batch 64, 28x28) under
`lax.conv` ("xla") and im2col ("patches", dsplit_jax/layers.py), for one job or for
`--jobs` vmapped jobs with their own kernels (what the vmapped pipeline runs). This is
the measurement behind `model.conv_impl="auto"`.
"""

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from dsplit_jax import layers

# name, input [H, W, C], features, kernel, stride, padding, transposed
SHAPES = [
    ("clf conv1 5x5", (28, 28, 1), 16, 5, 1, "SAME", False),
    ("clf conv2 5x5", (13, 13, 16), 32, 5, 1, "SAME", False),
    ("clf conv3 3x3", (6, 6, 32), 48, 3, 1, "SAME", False),
    ("ae conv1 5x5/2", (28, 28, 1), 16, 5, 2, "SAME", False),
    ("ae conv2 5x5/2", (14, 14, 16), 32, 5, 2, "SAME", False),
    ("ae conv3 3x3", (7, 7, 32), 48, 3, 1, "SAME", False),
    ("ae code 7x7 VALID", (7, 7, 32), 32, 7, 1, "VALID", False),
    ("ae decode 7x7 VALID^T", (1, 1, 32), 32, 7, 1, "VALID", True),
    ("ae deconv3 3x3^T", (7, 7, 48), 32, 3, 1, "SAME", True),
    ("ae deconv2 5x5/2^T", (7, 7, 32), 16, 5, 2, "SAME", True),
    ("ae deconv1 5x5/2^T", (14, 14, 16), 1, 5, 2, "SAME", True),
]


def time_grad(module, x, jobs, repeats):
  keys = jax.random.split(jax.random.PRNGKey(1), jobs)
  params = jax.vmap(lambda k: module.init(k, x))(keys)
  loss = lambda p, x: jnp.sum(jnp.square(module.apply(p, x)))
  grad = jax.jit(jax.vmap(jax.grad(loss, (0, 1)), in_axes=(0, None)))
  jax.block_until_ready(grad(params, x))
  start = time.perf_counter()
  for _ in range(repeats):
    out = grad(params, x)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--jobs", type=int, default=1)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  print(f"{jax.default_backend()}: forward+backward ms per call, {args.jobs} job(s), "
        f"batch {args.batch}")
  print("| convolution | xla | patches | xla / patches |")
  print("|---|---|---|---|")
  totals = {"xla": 0.0, "patches": 0.0}
  for name, shape, features, k, s, padding, transposed in SHAPES:
    x = jax.random.normal(jax.random.PRNGKey(0), (args.batch,) + shape)
    ms = {}
    for impl in ("xla", "patches"):
      conv, conv_t = layers.conv_modules(impl, nn.initializers.lecun_normal())
      module = (conv_t if transposed else conv)(features, (k, k), strides=s, padding=padding)
      ms[impl] = 1000 * time_grad(module, x, args.jobs, args.repeats)
      totals[impl] += ms[impl]
    print(f"| {name} | {ms['xla']:.2f} | {ms['patches']:.2f} | "
          f"{ms['xla'] / ms['patches']:.2f} |", flush=True)
  print(f"| total | {totals['xla']:.2f} | {totals['patches']:.2f} | "
        f"{totals['xla'] / totals['patches']:.2f} |")


if __name__ == "__main__":
  main()
