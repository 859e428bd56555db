"""The program of the authors' public code, re-implemented from its facts.

  python -m dsplit_jax.main --preset=authors --dataset=cifar10 --normal_class=0

patrickschlachter/deep-occ-using-ics (`main.py`, `models/build.py`, `models/train.py`,
`toolkits/utils.py`): not AlexNet but a five-stage network with BatchNorm and dropout
(models.AuthorsNet), trained 800 iterations of 3 closeness + dispersion updates and 4
intra-class updates on balanced batches (train.py's "balanced" schedule) with one Adam
(3e-4, beta_1 0.5) and L2 1e-3 on every kernel; the split by a BatchNorm autoencoder
(models.AuthorsAutoencoder) trained with RMSprop on MSE, and SSIM with scikit-image's
float range 2. Every fact and every remaining difference: BUILD_NOTES.md, "The `authors`
preset". The authors report the checkpoint their selection picks: add
`--set=eval.protocol=authors_selection` for that.
"""

from dsplit_jax.configs import base


def get_config():
  c = base.get_config()
  c.preset = "authors"
  c.model.arch = "authors"
  c.model.conv_features = (16, 32, 64, 128, 256)
  c.model.dense_features = (256, 128)    # the last is z (`latent_fea=128`)
  c.model.distance_head = "paper_literal"  # Subtract, then Dense(1, sigmoid)
  c.model.dropout = 0.5
  c.model.ae_arch = "authors"
  c.model.ae_conv_features = (8, 16, 32, 64)
  c.model.ae_code_features = 128
  # 50 epochs of batches of 64: 3950 steps for a CIFAR-10 class of 5000 images; one
  # step count for every job (about 43 epochs of an MNIST class of 6000).
  c.ae.steps = 4000
  c.ae.chunk_steps = 500
  c.ae.batch_size = 64
  c.ae.optimizer = "rmsprop"
  c.ae.learning_rate = 1e-3
  c.ae.warmup_steps = 0
  c.ae.weight_decay = 1e-5
  c.ae.restarts = 0                      # the program has no plateau test
  c.ae.ssim_max_val = 2.0
  c.train.steps = 800
  c.train.chunk_steps = 100
  c.train.batch_size = 64
  c.train.schedule = "balanced"
  c.train.pair_updates = 3
  c.train.intra_updates = 4
  c.train.learning_rate = 3e-4
  c.train.adam_b1 = 0.5
  c.train.weight_decay = 1e-3
  c.eval.every = 100
  return c
