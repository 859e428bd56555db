"""Runner details that need no training."""

import jax
import numpy as np

from dsplit_jax import configs
from dsplit_jax import runner


def test_only_process_zero_writes(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  runner._save_npz(str(tmp_path / "a.npz"), x=np.zeros(3))
  runner._atomic_write(str(tmp_path / "b.bin"), b"x")
  assert list(tmp_path.iterdir()) == []
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  runner._save_npz(str(tmp_path / "a.npz"), x=np.zeros(3))
  runner._atomic_write(str(tmp_path / "b.bin"), b"x")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.bin"]


def test_autoencoder_cache_ignores_classifier_settings():
  config = configs.get_preset("cpu")
  other = configs.get_preset("cpu")
  other.train.learning_rate, other.method, other.model.conv_features = 0.5, "nnwds", (8,) * 5
  other.model.conv_impl = "xla"  # the same function: the same cache
  assert runner._ae_dir("w", config, (28, 28, 1)) == runner._ae_dir("w", other, (28, 28, 1))
  other.ae.warmup_steps = 1
  assert runner._ae_dir("w", config, (28, 28, 1)) != runner._ae_dir("w", other, (28, 28, 1))


def test_config_hash_ignores_dsplit_only_fields_for_other_methods():
  a, b = configs.get_preset("cpu"), configs.get_preset("cpu")
  b.model.distance_head, b.train.pairs = "metric", "all"
  a.method = b.method = "nnwds"
  assert runner.config_hash(a) == runner.config_hash(b)
  a.method = b.method = "dsplit"
  assert runner.config_hash(a) != runner.config_hash(b)


def test_bad_distance_head_or_pairs_is_a_config_error():
  import pytest
  for field, value, message in [("model.distance_head", "cosine", "model.distance_head"),
                                ("model.latent", "pool", "model.latent"),
                                ("train.pairs", "random", "train.pairs")]:
    config = configs.get_preset("cpu")
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(runner.ConfigError, match=message):
      runner.validate_training(config)


def test_new_fields_at_their_old_behaviour_keep_old_hashes():
  # ae.output_bias="zero" is how every autoencoder was trained before the field existed:
  # the same config hash and autoencoder cache as a config without the field.
  config = configs.get_preset("cpu")
  legacy = configs.get_preset("cpu")
  del legacy.ae["output_bias"]
  assert runner.config_hash(config) == runner.config_hash(legacy)
  assert runner._ae_dir("w", config, (28, 28, 1)) == runner._ae_dir("w", legacy, (28, 28, 1))
  config.ae.output_bias = "mean_logit"
  assert runner.config_hash(config) != runner.config_hash(legacy)
  assert runner._ae_dir("w", config, (28, 28, 1)) != runner._ae_dir("w", legacy, (28, 28, 1))
  # model.latent="dense" is where z was read before the field existed; "conv" is a new
  # dsplit config, and it leaves the other methods' hashes alone (their network is the
  # same and they have no distance head).
  config, legacy = configs.get_preset("cpu"), configs.get_preset("cpu")
  del legacy.model["latent"]
  assert runner.config_hash(config) == runner.config_hash(legacy)
  config.model.latent = "conv"
  assert runner.config_hash(config) != runner.config_hash(legacy)
  config.method = legacy.method = "nnwds"
  assert runner.config_hash(config) == runner.config_hash(legacy)


def test_the_printed_split_size_is_the_one_used():
  from dsplit_jax import pipeline
  config = configs.get_preset("test")
  idx = np.arange(40, dtype=np.int32)[None]
  ssim = np.linspace(0, 1, 40, dtype=np.float32)[None]
  for rho, used, note in ((10.0, 4, False), (0.001, 2, True), (99.0, 38, True)):
    config.rho = rho
    split = pipeline.split(config, ssim, idx, np.array([40], np.int32))
    assert int(split.atypical_count[0]) == used
    line = runner.split_line(rho, used, 40)
    assert line.startswith(f"[split] rho={rho:g}%: {used} of 40 images atypical (first job)")
    assert ("kept within [2, 38] so that both pair losses have pairs" in line) == note
  assert runner.split_line(0.001, 2, 5923).endswith("rho asks for 0.0592, kept within "
                                                    "[2, 5921] so that both pair losses have pairs")
