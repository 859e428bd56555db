"""Settings shared by every preset; presets import this and change a few fields.

Every hyperparameter of the library lives in a config; code never hard-codes one.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.preset = "base"
  # What to run: main.py copies its flags here and nowhere else.
  c.dataset = "mnist"
  c.normal_classes = (0,)
  c.method = "dsplit"            # dsplit naive_nn nnwds ssim dsvdd ocsvm hog_ocsvm iforest
  c.seeds = (0,)
  c.rho = 10.0                   # percent of normal training images called atypical
  c.data_dir = ""
  c.image_size = 32              # folder datasets are resized to this (multiple of 4)

  # Networks (the paper's section 3.1); widths are AlexNet's in `paper`.
  c.model = ml_collections.ConfigDict()
  # The classifier's network (models.ARCHS): "alexnet", the paper's text; "authors", the
  # network of the authors' public program (models.AuthorsNet, the `authors` preset),
  # whose widths are `conv_features` (five stages) and `dense_features` (the last one
  # is z). `leaky_slope`, `bn_momentum` and `bn_epsilon` are read by "authors" only.
  c.model.arch = "alexnet"
  c.model.leaky_slope = 0.2
  c.model.bn_momentum = 0.99     # Keras' BatchNormalization defaults
  c.model.bn_epsilon = 1e-3
  c.model.conv_features = (96, 256, 384, 384, 256)
  c.model.dense_features = (4096, 4096)
  # Distance subnetwork (models.DISTANCE_HEADS): "paper_literal" is the paper's
  # dense(z_i - z_j), antisymmetric, so its pair losses stay at log 2; the default is
  # chosen by the distance-head study (BUILD_NOTES.md, "Results").
  c.model.distance_head = "abs_difference"
  # Where the distance head reads z (models.LATENTS): "dense" after AlexNet's dense
  # layers, "conv" after its convolutions (AlexNet's own features/classifier split).
  c.model.latent = "dense"
  # Dropout rate after each of the classifier's dense layers (AlexNet has 0.5 there; the
  # paper does not say): 0 = none, as in every record whose config has no
  # `model.dropout`.
  c.model.dropout = 0.0
  # The classifier's initialisation (models.INITS): "he_normal" (ours, BUILD_NOTES.md,
  # "The method") or "glorot_uniform", Keras' default for the authors' TensorFlow layers.
  # The splitting autoencoder always starts from He.
  c.model.init = "he_normal"
  # How convolutions are lowered (the same function, see layers.py): "patches" (im2col
  # matrix products), "xla" (lax.conv), "auto" = patches on CPU, xla elsewhere. On
  # XLA:CPU, lax.conv is slow when vmapped over jobs (grouped convolutions) and when
  # differentiated inside lax.scan; patches are not (BUILD_NOTES.md, "Performance").
  c.model.conv_impl = "auto"  # both networks
  # Compute dtype of both networks (train.DTYPES): "bfloat16" halves activation memory
  # and uses the accelerators' bf16 units; parameters, optimiser state, losses and the
  # SSIM stay float32. CPUs have no fast bf16: keep "float32" there.
  c.model.dtype = "float32"
  # The splitting autoencoder's network (models.ARCHS): "alexnet" (five widths) or
  # "authors" (models.AuthorsAutoencoder, four encoder widths).
  c.model.ae_arch = "alexnet"
  c.model.ae_conv_features = (96, 256, 384, 384, 256)
  c.model.ae_code_features = 256

  # Splitting autoencoder, trained with MSE on all normal images.
  c.ae = ml_collections.ConfigDict()
  c.ae.steps = 6000
  c.ae.batch_size = 64
  c.ae.learning_rate = 1e-3
  c.ae.adam_eps = 1e-7           # Keras' default, as in the authors' TensorFlow
  # "adam" or "rmsprop" (train.AE_OPTIMIZERS; the authors' program: RMSprop, decay 0.9,
  # Keras' epsilon outside the square root); `adam_eps` is either one's epsilon.
  c.ae.optimizer = "adam"
  c.ae.warmup_steps = 200        # without it some classes stall on the mean image
  c.ae.weight_decay = 1e-6       # L2 on conv kernels, as for the classifier
  c.ae.chunk_steps = 500
  # A job whose reconstructions are further from its images than its mean image is
  # (MSE ratio > 1; trained: 0.13-0.22, stuck on the plateau: 2.1-2.3 in the `cpu`
  # preset) is trained again from a new initialisation, at most `restarts` times
  # (BUILD_NOTES.md, "The method").
  c.ae.plateau_ratio = 1.0
  c.ae.plateau_images = 512
  c.ae.restarts = 2
  c.ae.ssim_filter_size = 11     # dm_pix.ssim defaults (Wang et al. 2004)
  # SSIM's dynamic range L: 1 for images in [0, 1]; the authors' program leaves
  # scikit-image's float default, 2, which changes the constants (K L)^2.
  c.ae.ssim_max_val = 1.0
  # Decoder output bias at start: "zero" (sigmoid output 0.5) or "mean_logit" (the logit
  # of the job's mean pixel; train.init_ae_state says why).
  c.ae.output_bias = "zero"

  # Classifier: the three losses of the paper's section 2.3 applied in turn every step.
  c.train = ml_collections.ConfigDict()
  c.train.steps = 6000
  c.train.batch_size = 64        # paper
  c.train.learning_rate = 1e-4
  c.train.adam_eps = 1e-7
  c.train.adam_b1 = 0.9          # Adam's beta_1 (the authors' program: 0.5)
  c.train.warmup_steps = 0
  # Learning-rate decay over the run (the paper does not say): "none" keeps Adam's rate
  # constant (as in every record whose config has no `train.lr_decay`), "cosine" decays
  # it to 0 at the last step.
  c.train.lr_decay = "none"
  c.train.weight_decay = 1e-6    # paper: L2 on every conv layer
  c.train.atypical_fraction = 0.5  # share of atypical images in an intra-class batch
  c.train.pairs = "neighbours"   # pairs of a batch for closeness/dispersion (train.PAIRINGS)
  c.train.schedule = "interleaved"  # how dsplit's losses take turns (train.SCHEDULES)
  # The "balanced" schedule's updates per iteration (the authors' program: 3 of the
  # joint closeness + dispersion model, then 4 of the classifier).
  c.train.pair_updates = 3
  c.train.intra_updates = 4
  c.train.chunk_steps = 500

  c.eval_batch_size = 500
  # Which model and which test images give the reported AUC (protocols.PROTOCOLS):
  # "full_test_last", the final model on the whole test split as the paper's text says;
  # "authors_selection", the checkpoint with the best AUC on the first
  # `selection_fraction` of the test normals and anomalies, reported on the rest, as the
  # authors' public program does (selection with test labels). Checkpoints are scored
  # at step 0 and every `every` steps (and the last); `curves` scores them under
  # "full_test_last" too, for the AUC-over-training curve.
  c.eval = ml_collections.ConfigDict()
  c.eval.protocol = "full_test_last"
  c.eval.every = 100
  c.eval.selection_fraction = 0.3
  c.eval.curves = False
  # "scan": each chunk is one compiled lax.scan; "host": one compiled call per step
  # (faster for lax.conv on XLA:CPU, see pipeline.loop_mode); "auto" picks.
  c.loop = "auto"
  # How a device runs its jobs (pipeline.job_map): "map" one after another, so that a
  # job's result does not depend on the jobs beside it; "vmap" all at once (the
  # accelerators' parallelism); "auto" = map on CPU, vmap elsewhere. Not part of the
  # config hash (like the device count): records carry the one used.
  c.job_map = "auto"

  # Classical baselines (the paper's Table 1 and section 3.1); see
  # dsplit_jax/baselines/classical.py.
  c.classical = ml_collections.ConfigDict()
  c.classical.preprocessing = "none"   # pixels in [0, 1] (measured faithful); or "gcn_minmax"
  c.classical.ocsvm_nu = 0.15
  c.classical.ocsvm_gamma = "auto"     # 1 / number of features
  c.classical.ocsvm_cache_mb = 1000.0
  c.classical.hog_orientations = 9
  c.classical.hog_pixels_per_cell = 8
  c.classical.hog_cells_per_block = 3
  c.classical.hog_block_norm = "L1"    # scikit-image's default before 0.15; "L2-Hys" now
  c.classical.hog_channel_mode = "grey"
  c.classical.iforest_trees = 100
  c.classical.iforest_max_samples = "auto"

  # Deep SVDD (baselines/dsvdd.py): the authors' MNIST command (Deep-SVDD-PyTorch's
  # README), also used for Fashion-MNIST and CIFAR-10; notes/baselines.md.
  c.dsvdd = ml_collections.ConfigDict()
  c.dsvdd.net = "auto"               # mnist_lenet for 1 channel, cifar10_lenet for 3
  # GCN (L1) + min-max of the normal class; "gcn_minmax_mnist": MNIST's bounds for the
  # class index on any dataset (the authors' constants, as a copy of their MNIST loader
  # would use on Fashion-MNIST); "none".
  c.dsvdd.preprocessing = "gcn_minmax"
  c.dsvdd.objective = "one-class"    # the only objective implemented
  c.dsvdd.bn_eps = 1e-4
  c.dsvdd.bn_momentum = 0.9          # flax convention; PyTorch's momentum 0.1
  c.dsvdd.leaky_slope = 0.01         # F.leaky_relu default
  c.dsvdd.center_eps = 0.1
  c.dsvdd.pretrain = True
  c.dsvdd.lr = 1e-4                  # Deep SVDD phase (--lr --n_epochs --lr_milestone)
  c.dsvdd.epochs = 150
  c.dsvdd.lr_milestones = (50,)
  c.dsvdd.batch_size = 200
  c.dsvdd.weight_decay = 0.5e-6
  c.dsvdd.ae_lr = 1e-4               # autoencoder phase (--ae_lr --ae_n_epochs ...)
  c.dsvdd.ae_epochs = 150
  c.dsvdd.ae_lr_milestones = (50,)
  c.dsvdd.ae_batch_size = 200
  c.dsvdd.ae_weight_decay = 0.5e-3
  c.dsvdd.eval_batch_size = 1000     # centre and scoring chunks; speed/memory only
  return c
