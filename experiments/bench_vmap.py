"""Benchmark: the same work as (a) single-class runs one after another and (b) one
vmapped run of all classes; prints images/s, wall time, speed-up b/a, peak memory and
achieved GFLOP/s beside a large matmul's GFLOP/s measured in the same process.

  python -m experiments.bench_vmap --classes=0,1,2,3 --steps=50
  ... --set=model.conv_impl=xla   # lax.conv (host loop on CPU)

Both ways train the autoencoder and the classifier of every class for `--steps` steps
each (compile time excluded: every program is run once before timing).
"""

import argparse
import resource
import time

import jax
import jax.numpy as jnp

from dsplit_jax import cli
from dsplit_jax import pipeline
from dsplit_jax import data
from dsplit_jax import train


def _matmul_gflops(n=2048, reps=5):
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  t = time.perf_counter()
  for _ in range(reps):
    f(a).block_until_ready()
  return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def _work(programs, jobs):
  ae = pipeline.fit_autoencoders(programs, jobs)
  ssim = pipeline.ssim_of(programs, ae, jobs)
  splits = pipeline.split(programs.config, ssim, jobs)
  params = pipeline.fit_classifiers(programs, jobs, "dsplit", splits)
  jax.block_until_ready(params)


def _step_flops(config, image_shape):
  """FLOPs of one autoencoder step plus one classifier iteration, one job (XLA's count)."""
  ae_model = train.make_autoencoder(config, image_shape)
  model = train.make_classifier(config)
  x = jnp.zeros((config.train.batch_size, *image_shape))
  def flops(fn, *args):
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0))
  ae_state = train.init_ae_state(jax.random.PRNGKey(0), model=ae_model,
                                 tx=train.optimizer(config.ae), image_shape=image_shape)
  n = len(x)  # one step on a batch of the first n pool images
  f_ae = flops(lambda s, x: train.ae_step(
      s, 0, jax.random.PRNGKey(0), jnp.arange(n), n, x, model=ae_model,
      tx=train.optimizer(config.ae), config=config), ae_state, x)
  tx = train.optimizer(config.train)
  st = train.init_classifier_state(jax.random.PRNGKey(0), model=model, tx=tx,
                                   image_shape=image_shape)
  xb = jnp.zeros((config.train.batch_size + 1, *image_shape))
  kw = dict(model=model, tx=tx, weight_decay=0.0)
  f_c = flops(lambda s, x: train.pair_step(s, x, name="closeness", target=0.0, **kw), st, xb)
  f_i = flops(lambda s, x: train.intra_class_step(s, x[1:], jnp.zeros(len(x) - 1), **kw), st, xb)
  return f_ae, 2 * f_c + f_i  # closeness and dispersion cost the same


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dataset", default="mnist")
  p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
  p.add_argument("--steps", type=int, default=50)
  p.add_argument("--preset", default="cpu")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--set", action="append", default=[],
                 help="config overrides, e.g. --set=model.conv_impl=xla --set=loop=host")
  args = p.parse_args()
  sets = [f"ae.steps={args.steps}", f"ae.chunk_steps={args.steps}",
          f"train.steps={args.steps}", f"train.chunk_steps={args.steps}"] + args.set
  config, _ = cli.config_from_flags(preset=args.preset, dataset=args.dataset,
                                    normal_class=args.classes, method="dsplit", rho=None,
                                    seed=0, num_seeds=1, data_dir=args.data_dir, overrides=sets)
  jobs = data.load_jobs(config)
  n = len(jobs.classes)
  singles = [jobs.subset([j]) for j in range(n)]
  programs = pipeline.make_programs(config, jobs.pool.shape[1:])  # one for every run below
  _work(programs, singles[0]); _work(programs, jobs)  # Compile both shapes first.
  t = time.perf_counter()
  for s in singles:
    _work(programs, s)
  wall_a = time.perf_counter() - t
  t = time.perf_counter()
  _work(programs, jobs)
  wall_b = time.perf_counter() - t
  b = config.train.batch_size
  images = n * args.steps * (config.ae.batch_size + 3 * b + 2)
  f_ae, f_clf = _step_flops(config, jobs.pool.shape[1:])
  flops = n * args.steps * (f_ae + f_clf)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"{n} classes x {args.steps} autoencoder + {args.steps} classifier steps, "
        f"preset {args.preset}, {jax.device_count()} {jax.default_backend()} device(s), "
        f"loop {pipeline.loop_mode(config)}, convolutions {config.model.conv_impl}")
  print(f"(a) one class after another: {wall_a:.1f} s, {images / wall_a:.0f} images/s, "
        f"{flops / wall_a / 1e9:.1f} GFLOP/s")
  print(f"(b) one vmapped program:     {wall_b:.1f} s, {images / wall_b:.0f} images/s, "
        f"{flops / wall_b / 1e9:.1f} GFLOP/s")
  print(f"speed-up b over a: {wall_a / wall_b:.2f}x; peak RSS {peak:.0f} MiB; "
        f"large matmul: {_matmul_gflops():.1f} GFLOP/s")


if __name__ == "__main__":
  main()
