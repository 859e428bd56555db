"""Tiny networks and a few steps, for the test suite only."""

from dsplit_jax.configs import base


def get_config():
  c = base.get_config()
  c.preset = "test"
  c.model.conv_features = (4, 8, 8, 8, 8)
  c.model.dense_features = (16, 16)
  c.model.ae_conv_features = (4, 8, 8, 8, 8)
  c.model.ae_code_features = 8
  c.ae.steps = 20
  c.ae.chunk_steps = 10
  c.ae.batch_size = 16
  c.ae.warmup_steps = 10
  c.ae.restarts = 0              # 20 steps leave every autoencoder "stuck"; tests set it
  c.train.steps = 20
  c.train.chunk_steps = 10
  c.train.batch_size = 16
  c.train.learning_rate = 1e-3
  c.eval_batch_size = 256
  c.dsvdd.ae_epochs, c.dsvdd.ae_lr_milestones = 3, (2,)
  c.dsvdd.epochs, c.dsvdd.lr_milestones = 3, (2,)
  # Adam divides by sqrt(v) + eps: with a tiny eps, gradients that are ~0 (a dead unit)
  # turn rounding noise into lr-sized steps, and a batched convolution rounds
  # differently from an unbatched one. A larger eps keeps the equivalence tests tight.
  c.ae.adam_eps = 1e-3
  c.train.adam_eps = 1e-3
  return c
