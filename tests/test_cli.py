"""Bad input stops before any training: one line on stderr, exit code 2."""

import os
import socket
import subprocess
import sys
import tomllib

import pytest

from dsplit_jax import cli
from dsplit_jax import configs
from dsplit_jax import runner


def _flags(**kw):
  base = dict(preset="test", dataset="mnist", normal_class="0", method="dsplit", rho=None,
              seed=0, num_seeds=1, data_dir=None, overrides=[])
  base.update(kw)
  return base


@pytest.mark.parametrize("kw, message", [
    (dict(dataset="imagenet"), "unknown dataset 'imagenet'"),
    (dict(method="svm"), "unknown method 'svm'"),
    (dict(rho=0.0), "rho=0.0 is not allowed: must be a finite number in (0, 100)"),
    (dict(rho=100.0), "rho=100.0 is not allowed: must be"),
    (dict(normal_class="ten"), "--normal_class must be an integer"),
    (dict(num_seeds=0), "--num_seeds=0 is not allowed: must be an int in [1, "),
    (dict(overrides=["train.nope=1"]), "unknown config field 'train.nope'"),
    (dict(overrides=["train.steps=abc"]), "train.steps=abc: invalid literal for int()"),
    (dict(overrides=["train.steps"]), "--set wants key=value"),
    (dict(overrides=["train.steps=15"]),
     "train.steps=15 is not allowed: must be a multiple of train.chunk_steps=10"),
    (dict(overrides=["model.conv_impl=cudnn"]),
     "model.conv_impl='cudnn' is not allowed: must be one of"),
    (dict(overrides=["job_map=pmap"]),
     "job_map='pmap' is not allowed: must be one of auto, map, vmap"),
    (dict(overrides=["ae.restarts=-1"]), "ae.restarts=-1 is not allowed: must be an int in [0, "),
])
def test_bad_flags_raise_one_line(kw, message):
  with pytest.raises(ValueError) as e:
    cli.config_from_flags(**_flags(**kw))
  assert message in str(e.value) and "\n" not in str(e.value)


def test_class_out_of_range(mnist_dir):
  with pytest.raises(ValueError, match=r"normal class 10 out of range for mnist \(classes 0..9\)"):
    cli.config_from_flags(**_flags(normal_class="10", data_dir=str(mnist_dir)))


def test_overrides_are_typed():
  config, methods = cli.config_from_flags(**_flags(
      method="nnwds,ssim", overrides=["train.steps=40", "model.dense_features=(8, 8)",
                                      "train.learning_rate=1"]))
  assert methods == ["nnwds", "ssim"]
  assert config.train.steps == 40 and config.model.dense_features == (8, 8)
  assert config.train.learning_rate == 1.0
  # A repeated key: the last item wins, tuples too (absl alone would concatenate them).
  config, _ = cli.config_from_flags(**_flags(overrides=[
      "model.dense_features=(8, 8)", "train.steps=40", "model.dense_features=(4,)",
      "train.steps=20"]))
  assert config.model.dense_features == (4,) and config.train.steps == 20


def test_mismatched_workdir_config_is_refused(tmp_path):
  config, _ = cli.config_from_flags(**_flags())
  runner.check_run_dir(str(tmp_path), config)
  runner.check_run_dir(str(tmp_path), config)  # Same config: resumes.
  config.train.learning_rate = 0.5
  with pytest.raises(configs.ConfigError, match="holds a checkpoint of a different config"):
    runner.check_run_dir(str(tmp_path), config)


def _main(*args, env=None):
  return subprocess.run([sys.executable, "-m", "dsplit_jax.main", *args], capture_output=True,
                        text=True, timeout=300, env={**os.environ, **(env or {})})


def test_main_exits_2_with_one_line_for_bad_rho():
  out = _main("--preset=test", "--rho=150")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: rho=150.0 is not allowed: must be a finite number in (0, 100)"]


def test_main_reports_missing_data_in_one_line(tmp_path):
  with socket.socket() as s:  # A port nothing listens on: the download fails at once.
    s.bind(("127.0.0.1", 0))
    mirror = f"http://127.0.0.1:{s.getsockname()[1]}"
  out = _main("--preset=test", f"--workdir={tmp_path}", "--dataset=cifar10",
              env={"DSPLIT_DATA_DIR": str(tmp_path), "DSPLIT_DATA_MIRROR": mirror,
                   "XDG_CACHE_HOME": str(tmp_path / "cache")})
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and "cifar10" in lines[0]
  assert "python -m dsplit_jax.data.download cifar10" in lines[0]
  assert f"downloading cifar10 (cifar-10-binary.tar.gz) into {tmp_path / 'cifar10'}" in out.stdout
  assert not os.path.exists(tmp_path / "cifar10")  # The failed download left nothing.
  assert not os.path.exists(tmp_path / "results.jsonl")


def test_main_rejects_empty_folder(tmp_path):
  (tmp_path / "empty").mkdir()
  out = _main("--preset=test", f"--workdir={tmp_path}", "--dataset=folder",
              f"--data_dir={tmp_path / 'empty'}")
  assert out.returncode == 2
  assert len(out.stderr.strip().splitlines()) == 1


def test_print_config_shows_every_field_and_exits_0(tmp_path):
  out = _main("--preset=test", "--print_config", "--set=train.steps=40", "--method=nnwds,ssim",
              f"--workdir={tmp_path / 'w'}")
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.startswith("# methods: nnwds, ssim\n")
  assert "preset: test" in out.stdout and "  steps: 40" in out.stdout
  assert "distance_head:" in out.stdout  # Nested fields too, not just the top level.
  assert not os.path.exists(tmp_path / "w")


def test_installed_command_help_lists_presets_and_flags():
  # The `dsplit` script calls main.run() from a __main__ without a docstring or flags.
  pyproject = tomllib.loads(open(os.path.join(os.path.dirname(__file__), "..",
                                              "pyproject.toml")).read())
  assert pyproject["project"]["scripts"]["dsplit"] == "dsplit_jax.main:run"
  code = "import sys; sys.argv = ['dsplit', '--help']; from dsplit_jax.main import run; run()"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
  for text in ("paper (accelerators)", "cpu (a 2-core machine)", "test (tiny",
               "--print_config", "--normal_class", "--set"):
    assert text in out.stdout, text


TEST_CONFIG = os.path.join(os.path.dirname(__file__), "..", "dsplit_jax", "configs", "test.py")


def test_config_file_with_overrides_is_the_preset_with_set():
  a = _main(f"--config={TEST_CONFIG}", "--config.train.steps=40",
            "--config.model.dense_features=(8, 8)", "--print_config")
  b = _main("--preset=test", "--set=train.steps=40", "--set=model.dense_features=(8, 8)",
            "--print_config")
  assert a.returncode == b.returncode == 0, a.stderr[-2000:] + b.stderr[-2000:]
  assert a.stdout == b.stdout
  assert "  steps: 40" in a.stdout and "  dense_features: [8, 8]\n" in a.stdout


@pytest.mark.parametrize("args", [(f"--config={TEST_CONFIG}", "--config.train.stepz=40"),
                                  ("--preset=test", "--set=train.stepz=40")])
def test_a_misspelt_field_is_a_one_line_error(args):
  out = _main(*args)
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and "unknown config field" in lines[0] and "stepz" in lines[0], lines


def test_configs_are_locked():
  with pytest.raises(AttributeError, match="locked"):
    configs.get_preset("cpu").train.stepz = 3
  config, _ = cli.config_from_flags(**_flags())
  with pytest.raises(AttributeError, match="locked"):
    config.rhoo = 20.0


def test_the_flags_build_a_new_config_and_leave_the_one_given_as_it_was():
  given = configs.get_preset("test")
  before = given.to_dict()
  config, methods = cli.config_from_flags(**_flags(
      config=given, normal_class="1,2", method="dsplit,nnwds", seed=4, num_seeds=2,
      overrides=["train.steps=40"]))
  assert given.to_dict() == before
  assert (config.normal_classes, config.seeds, config.method, config.train.steps) == (
      (1, 2), (4, 5), "dsplit", 40) and methods == ["dsplit", "nnwds"]
  assert config.is_locked
  assert configs.override(given, ["train.steps=60"]).train.steps == 60
  assert given.to_dict() == before
