"""The run's pieces that need no training: work-dir files, hashes, the split line."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import methods
from dsplit_jax import records
from dsplit_jax import runner
from dsplit_jax import validation


def test_only_process_zero_writes(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  records.save_npz(str(tmp_path / "a.npz"), x=np.zeros(3))
  records.atomic_write(str(tmp_path / "b.bin"), b"x")
  assert list(tmp_path.iterdir()) == []
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  records.save_npz(str(tmp_path / "a.npz"), x=np.zeros(3))
  records.atomic_write(str(tmp_path / "b.bin"), b"x")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.bin"]


def _ae_dir(config):
  return records.autoencoder_dir("w", config.dataset, configs.autoencoder_hash(config),
                                 (28, 28, 1))


def test_autoencoder_cache_ignores_classifier_settings():
  config = configs.get_preset("cpu")
  other = configs.get_preset("cpu")
  other.train.learning_rate, other.method, other.model.conv_features = 0.5, "nnwds", (8,) * 5
  other.model.conv_impl = "xla"  # the same function: the same cache
  assert _ae_dir(config) == _ae_dir(other)
  assert _ae_dir(config).startswith("w/autoencoders/mnist-") and _ae_dir(config).endswith("-28x28x1")
  other.ae.warmup_steps = 1
  assert _ae_dir(config) != _ae_dir(other)


def test_config_hash_ignores_dsplit_only_fields_for_other_methods():
  a, b = configs.get_preset("cpu"), configs.get_preset("cpu")
  b.model.distance_head, b.train.pairs = "metric", "all"
  a.method = b.method = "nnwds"
  assert configs.config_hash(a) == configs.config_hash(b)
  a.method = b.method = "dsplit"
  assert configs.config_hash(a) != configs.config_hash(b)


def test_config_hash_ignores_the_splitting_autoencoder_for_methods_without_a_split():
  a, b = configs.get_preset("cpu"), configs.get_preset("cpu")
  b.ae.steps, b.ae.output_bias, b.model.ae_code_features = 123, "mean_logit", 7
  b.model.ae_conv_features = (8,) * 5
  for method in methods.NAMES:
    a.method = b.method = method
    same = configs.config_hash(a) == configs.config_hash(b)
    assert same != methods.get(method).needs_split, method
  # A field the other methods read still counts for them.
  b = configs.get_preset("cpu")
  b.method = a.method = "naive_nn"
  b.train.steps = 123
  assert configs.config_hash(a) != configs.config_hash(b)


def test_bad_distance_head_or_pairs_is_a_config_error():
  for field, value, message in [("model.distance_head", "cosine", "model.distance_head"),
                                ("model.latent", "pool", "model.latent"),
                                ("train.pairs", "random", "train.pairs"),
                                ("model.dropout", 1.0, r"model.dropout=1.0 is not allowed: must be a finite number in \[0, 1\)"),
                                ("model.dropout", -0.1, "model.dropout"),
                                ("train.lr_decay", "step", "train.lr_decay")]:
    config = configs.get_preset("cpu")
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(configs.ConfigError, match=message):
      validation.validate(config, check_dataset=False)


def test_new_fields_at_their_old_behaviour_keep_old_hashes():
  # ae.output_bias="zero" is how every autoencoder was trained before the field existed:
  # the same config hash and autoencoder cache as a config without the field.
  config = configs.get_preset("cpu")
  legacy = configs.get_preset("cpu")
  config.ae.output_bias = "zero"  # explicit, whatever the preset's own start is
  with legacy.unlocked():
    del legacy.ae["output_bias"]
  assert configs.config_hash(config) == configs.config_hash(legacy)
  assert _ae_dir(config) == _ae_dir(legacy)
  config.ae.output_bias = "mean_logit"
  assert configs.config_hash(config) != configs.config_hash(legacy)
  assert _ae_dir(config) != _ae_dir(legacy)
  # model.latent="dense" is where z was read before the field existed; "conv" is a new
  # dsplit config, and it leaves the other methods' hashes alone (their network is the
  # same and they have no distance head).
  config, legacy = configs.get_preset("cpu"), configs.get_preset("cpu")
  with legacy.unlocked():
    del legacy.model["latent"]
  assert configs.config_hash(config) == configs.config_hash(legacy)
  config.model.latent = "conv"
  assert configs.config_hash(config) != configs.config_hash(legacy)
  config.method = legacy.method = "nnwds"
  assert configs.config_hash(config) == configs.config_hash(legacy)
  # model.dropout=0 is the network every record was trained with, train.lr_decay="none"
  # the constant rate every classifier had: without the field, the same hashes. Another
  # value is a new config for every classifier method (they share the network and its
  # training), not for the autoencoder.
  for section, field, value in [("model", "dropout", 0.5), ("train", "lr_decay", "cosine")]:
    config, legacy = configs.get_preset("cpu"), configs.get_preset("cpu")
    with legacy.unlocked():
      del legacy[section][field]
    assert configs.config_hash(config) == configs.config_hash(legacy), field
    config[section][field] = value
    assert configs.config_hash(config) != configs.config_hash(legacy), field
    assert _ae_dir(config) == _ae_dir(legacy), field
    config.method = legacy.method = "nnwds"
    assert configs.config_hash(config) != configs.config_hash(legacy), field


def test_a_saved_config_reads_back_as_its_preset():
  # JSON turns tuples into lists; `from_saved` turns them back, so the model code needs
  # no tuple() of its own and the hashes stay those of the preset.
  for preset in configs.PRESETS:
    config = configs.get_preset(preset)
    assert not list(validation._lists(config))  # the presets hold tuples, never lists
    saved = json.loads(config.to_json_best_effort())
    back = configs.from_saved(saved)
    assert back.to_dict() == config.to_dict()  # (1, 2) != [1, 2]: the types are checked
    assert configs.config_hash(back) == configs.config_hash(config)
    assert configs.autoencoder_hash(back) == configs.autoencoder_hash(config)
  with pytest.raises(configs.ConfigError, match=r"model.conv_features.* must be tuples"):
    validation.validate(ml_collections.ConfigDict(saved), check_dataset=False)


def test_job_map_stays_out_of_the_hashes():
  # How a device runs its jobs (lax.map or vmap) is recorded, not hashed: the committed
  # records (computed under vmap) keep their cells under either.
  hashes = set()
  for job_map in ("auto", "map", "vmap"):
    config = configs.get_preset("cpu")
    config.dataset, config.job_map = "fashion_mnist", job_map
    hashes.add((configs.config_hash(config), _ae_dir(config)))
  assert len(hashes) == 1
  # studies/cpu/results.jsonl's dsplit cells ("f5d0430a66af" with a 750-step
  # autoencoder instead of the preset's 250)
  assert next(iter(hashes))[0] == "ed7f3bdcafa3"


def test_the_printed_split_size_is_the_one_used():
  from dsplit_jax import pipeline
  config = configs.get_preset("test")
  ssim = np.linspace(0, 1, 40, dtype=np.float32)[None]
  for rho, used, note in ((10.0, 4, False), (0.001, 2, True), (99.0, 38, True)):
    config.rho = rho
    split = pipeline.split(config, ssim, data.Jobs.of_images(np.zeros((40, 1, 1, 1)), 0))
    assert int(split.atypical_count[0]) == used
    line = runner.split_line(rho, used, 40)
    assert line.startswith(f"[split] rho={rho:g}%: {used} of 40 images atypical (first job)")
    assert ("kept within [2, 38] so that both pair losses have pairs" in line) == note
  assert runner.split_line(0.001, 2, 5923).endswith("rho asks for 0.0592, kept within "
                                                     "[2, 5921] so that both pair losses have pairs")


def test_work_dir_paths_are_the_ones_earlier_runs_wrote(tmp_path):
  """Existing work dirs (studies/cpu) are read back through these names."""
  w = str(tmp_path)
  assert records.scores_path(w, "mnist", 3, "dsplit", 10, 1, "ef0beb88ef0c") == (
      f"{w}/scores/mnist-c3-dsplit-rho10-s1-ef0beb88ef0c.npz")
  assert records.scores_path(w, "mnist", 3, "ocsvm", 12.5, 0) == f"{w}/scores/mnist-c3-ocsvm-rho12.5-s0.npz"
  assert records.split_path(w, "fashion_mnist", 8, 2) == f"{w}/splits/fashion_mnist-c8-s2.npz"
  config = configs.get_preset("cpu")
  config.dataset, config.method = "mnist", "nnwds"
  assert records.run_dir(w, config, [5, 2, 2], [0, 1, 0], "c4c3f25b72be") == (
      f"{w}/runs/mnist-nnwds-rho10-c2_5-s0_1-c4c3f25b72be")
  # A record finds its score file, hashed or written before hashes (render reads this way).
  rec = dict(dataset="mnist", normal_class=3, method="dsplit", rho=10.0, seed=1,
             config_hash="ef0beb88ef0c")
  assert records.scores_file(w, rec) is None
  records.save_scores(records.scores_path(w, "mnist", 3, "dsplit", 10, 1), [0.5], [1])
  assert records.scores_file(w, rec).endswith("mnist-c3-dsplit-rho10-s1.npz")
  records.save_scores(records.scores_path(w, "mnist", 3, "dsplit", 10, 1, "ef0beb88ef0c"),
                      [0.5], [1])
  assert records.scores_file(w, rec).endswith("-ef0beb88ef0c.npz")
  records.save_split(records.split_path(w, "mnist", 3, 1), np.array([0.2, 0.9]), np.array([7, 4]))
  ssim, index = records.load_split(records.split_file(w, rec))
  assert ssim.tolist() == [0.2, 0.9] and index.tolist() == [7, 4]
