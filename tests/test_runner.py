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
