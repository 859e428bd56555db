"""Deep SVDD baseline: seconds per epoch, scoring time, and AUC per class.

  # Timing: MNIST class 0, batch 200, a few epochs of each phase.
  DSPLIT_DATA_DIR=/path/to/datasets python experiments/bench_dsvdd.py \
      --mode=timing --dataset=mnist --classes=0 --timing_epochs=5

  # AUC with a budget ("paper": 150 + 150 epochs, "cpu": 25 + 25), all the
  # given classes trained at once (vmapped):
  DSPLIT_DATA_DIR=/path/to/datasets python experiments/bench_dsvdd.py \
      --mode=auc --dataset=mnist --classes=0,1,2 --variant=paper

Timing reports the median wall time of the epochs after the first (which
compiles) and, as the machine may be shared, the process CPU time and the
load average too. The authors' PyTorch code on a 2-thread CPU: 2.45 s per AE
epoch, 1.29 s per Deep SVDD epoch, 1.2 s to score 10,000 images.
Results: notes/baselines.md.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from dsplit_jax import configs, data, layers, metrics, paper

# The authors' CIFAR-10 command, laid over the `paper` preset's `dsvdd` fields.
CIFAR10 = dict(ae_epochs=350, ae_lr_milestones=(250,), ae_weight_decay=0.5e-6)
from dsplit_jax.baselines import dsvdd


class _Clock:
  """Progress callback that keeps wall and CPU seconds per epoch."""

  def __init__(self, verbose: bool):
    self.verbose = verbose
    self.rows = []
    self.last = (time.perf_counter(), time.process_time())

  def __call__(self, phase, step, total, m):
    now = (time.perf_counter(), time.process_time())
    wall, cpu = now[0] - self.last[0], now[1] - self.last[1]
    self.last = now
    self.rows.append((phase, step, wall, cpu, m["loss"]))
    if self.verbose or step in (1, total) or step % 25 == 0:
      print(f"[{phase}] epoch {step}/{total} loss={m['loss']:.5g} "
            f"lr={m['lr']:.1e} {wall:.2f}s (cpu {cpu:.2f}s) "
            f"load={os.getloadavg()[0]:.1f}", flush=True)

  def median(self, phase):
    rows = [r for r in self.rows if r[0] == phase][1:]  # first one compiles
    return (float(np.median([r[2] for r in rows])),
            float(np.median([r[3] for r in rows])))


def _jobs(dataset, classes, seed, data_dir):
  images, labels = data.load(dataset, "train", data_dir)
  test, test_labels = data.load(dataset, "test", data_dir)
  rows = [np.flatnonzero(labels == c) for c in classes]
  pool_rows = np.concatenate(rows)
  pool = images[pool_rows].astype(np.float32) / 255.0
  counts = np.array([len(r) for r in rows], np.int32)
  idx = np.zeros((len(classes), counts.max()), np.int32)
  start = 0
  for j, n in enumerate(counts):
    idx[j, :n] = np.arange(start, start + n)
    start += n
  keys = jnp.stack([jax.random.fold_in(jax.random.key(seed), c)
                    for c in classes])
  return pool, idx, counts, keys, test.astype(np.float32) / 255.0, test_labels


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--mode", choices=("timing", "auc"), default="timing")
  p.add_argument("--dataset", default="mnist", choices=paper.DATASETS)
  p.add_argument("--classes", default="0")
  p.add_argument("--variant", default="paper",
                 choices=("paper", "cifar10", "cpu", "test"))
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--timing_epochs", type=int, default=5)
  p.add_argument("--conv_impl", default="auto", choices=layers.CONV_IMPLS,
                 help="model.conv_impl: patches (im2col), xla (lax.conv), auto")
  p.add_argument("--data_dir", default=None, help="default: $DSPLIT_DATA_DIR")
  p.add_argument("--verbose", action="store_true")
  args = p.parse_args(argv)

  cfg = configs.get_preset("paper" if args.variant == "cifar10" else args.variant).dsvdd
  if args.variant == "cifar10":  # the authors' CIFAR-10 command
    cfg.update(CIFAR10)
  if args.mode == "timing":
    cfg.ae_epochs = cfg.epochs = args.timing_epochs
  classes = [int(c) for c in args.classes.split(",")]
  if any(paper.lookup(args.dataset, c, "dsvdd") is None for c in classes):
    p.error(f"--classes must lie in 0..9, got {args.classes}")
  try:
    pool, idx, counts, keys, test, test_labels = _jobs(
        args.dataset, classes, args.seed, args.data_dir)
  except data.DataError as e:
    p.error(str(e))
  pool, test, affine = dsvdd.prepare(cfg.preprocessing, pool, idx, counts,
                                     test)
  print(f"{args.dataset} classes={classes} n={counts.tolist()} "
        f"variant={args.variant} AE {cfg.ae_epochs} epochs, Deep SVDD "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, conv_impl={args.conv_impl}, "
        f"devices={jax.devices()}", flush=True)
  clock = _Clock(args.verbose)
  t0 = time.perf_counter()
  scores = dsvdd.train_and_score(cfg, pool, idx, counts, keys, test,
                                 job_affine=affine, progress=clock,
                                 conv_impl=args.conv_impl)
  total = time.perf_counter() - t0

  if args.mode == "timing":
    # Scoring time of the compiled program on the whole test set.
    ae, phi = dsvdd.networks(cfg, pool.shape[-1], args.conv_impl)
    state = dsvdd.init_jobs(keys, jnp.asarray(pool[:1]), model=ae,
                            weight_decay=cfg.weight_decay)
    params, stats = state.params["encoder"], state.batch_stats["encoder"]
    affine = jnp.asarray(affine if affine is not None else
                         np.tile([0.0, 1.0], (len(classes), 1)), jnp.float32)
    center = dsvdd.center_jobs(params, stats, jnp.asarray(pool),
                               jnp.asarray(idx), jnp.asarray(counts), affine,
                               model=phi, eps=cfg.center_eps,
                               chunk=cfg.eval_batch_size)
    args_ = (params, stats, center, jnp.asarray(test), affine)
    kw = dict(model=phi, chunk=cfg.eval_batch_size)
    jax.block_until_ready(dsvdd.score_jobs(*args_, **kw))
    t = time.perf_counter()
    jax.block_until_ready(dsvdd.score_jobs(*args_, **kw))
    score_s = time.perf_counter() - t
    for phase, ref in (("ae", 2.45), ("dsvdd", 1.29)):
      wall, cpu = clock.median(phase)
      print(f"{phase}: {wall:.2f} s/epoch wall, {cpu:.2f} s/epoch CPU "
            f"(PyTorch reference {ref} s), {len(classes)} job(s)")
    print(f"scoring {len(test)} images: {score_s:.2f} s "
          f"(PyTorch reference 1.2 s); load average "
          f"{os.getloadavg()[0]:.1f}")
  print(f"total train_and_score: {total:.0f} s")
  aucs = []
  for j, c in enumerate(classes):
    auc = 100 * metrics.auc((test_labels != c).astype(np.int32), scores[j])
    ref = paper.lookup(args.dataset, c, "dsvdd")
    aucs.append(auc)
    print(f"class {c}: AUC {auc:.1f} (paper DSVDD {ref[0]:.1f} +- {ref[1]:.1f})")
  if len(classes) > 1:
    refs = [paper.lookup(args.dataset, c, "dsvdd")[0] for c in classes]
    print(f"mean {np.mean(aucs):.1f} (paper {np.mean(refs):.1f}), "
          f"MAD {np.mean(np.abs(np.array(aucs) - refs)):.1f}")


if __name__ == "__main__":
  main()
