"""Every config value is checked before work starts: one line, exit code 2.

The walk takes each field of each preset out of its allowed range (below, above, nan and
inf for numbers, a wrong type) and checks that the command line refuses it in one line
before anything is loaded or compiled; the probes are values that once got through.
"""

import math
import os
import subprocess
import sys

from absl import flags
import ml_collections
import pytest
import yaml

from dsplit_jax import cli
from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import main as main_lib
from dsplit_jax import pipeline
from dsplit_jax import runner
from dsplit_jax import validation
from dsplit_jax.configs import base


def _presets():
  return {"base": base.get_config(), **{p: configs.get_preset(p) for p in configs.PRESETS}}


@pytest.mark.parametrize("preset", ["base", *configs.PRESETS])
def test_every_field_has_one_row_and_every_row_a_field(preset):
  names = [name for name, _ in validation.leaves(_presets()[preset])]
  assert sorted(names) == sorted(validation.FIELDS)
  assert all(rule.meaning and rule.allowed() for rule in validation.FIELDS.values())
  validation.validate(_presets()[preset])  # the presets themselves are allowed


def test_a_field_without_a_row_is_refused():
  d = base.get_config().to_dict()
  d["train"]["new_knob"] = 1
  with pytest.raises(configs.ConfigError, match=r"^config field train.new_knob has no row"):
    validation.validate(ml_collections.ConfigDict(d), check_dataset=False)


def _outside(rule: validation.Rule) -> list:
  """Values just outside `rule`'s range, nan and inf for numbers, and a wrong type."""
  if rule.kind is bool:
    return [1, "yes"]
  if rule.kind is str:
    return [3] + ([] if rule.choices is None else ["no-such-choice"])
  if rule.kind is tuple:
    good = int(rule.lo)
    out = [(int(rule.lo) - 1,) + (good,) * max(rule.min_len - 1, 0),
           (int(rule.hi) + 1,) + (good,) * max(rule.min_len - 1, 0),
           (good,) * (rule.max_len + 1), [good] * max(rule.min_len, 1),
           (1.5,) * max(rule.min_len, 1)]
    if rule.min_len:
      out.append((good,) * (rule.min_len - 1))
    return out
  below = rule.lo if rule.open_lo else rule.lo - (1 if rule.kind is int else 1e-3)
  out = [below, "1"]
  if rule.hi is not None:
    out.append(rule.hi if rule.open_hi else rule.hi + (1 if rule.kind is int else 1e-3))
  if rule.kind is int:
    out += [1.5, True]
    if rule.multiple > 1:
      out.append(rule.lo + 1)
  out += [math.nan, math.inf, -math.inf]
  return out


def _set(d: dict, name: str, value):
  *sections, last = name.split(".")
  for s in sections:
    d = d[s]
  d[last] = value


def _cases():
  for preset, config in _presets().items():
    for name, _ in validation.leaves(config):
      for value in _outside(validation.FIELDS[name]):
        yield preset, name, value


@pytest.mark.parametrize("preset, name, value", list(_cases()))
def test_each_field_outside_its_range_is_one_line(preset, name, value):
  d = _presets()[preset].to_dict()
  _set(d, name, value)
  with pytest.raises(configs.ConfigError) as e:
    validation.validate(ml_collections.ConfigDict(d), check_dataset=False)
  message = str(e.value)
  assert "\n" not in message
  if isinstance(value, list):  # a list, as JSON would give: the construction is named
    assert message.startswith(f"{name} must be tuples"), message
  else:
    assert message.startswith(f"{name}=") and " is not allowed: must be " in message, message


@pytest.fixture
def command(monkeypatch, capsys):
  """Runs dsplit's main in this process with every way into data or compilation made to
  fail the test; returns (exit code, stdout, stderr)."""
  def reached(*a, **k):
    pytest.fail("work started despite a bad value")
  for module, name in ((pipeline, "make_programs"), (runner, "_networks"),
                       (data, "load_jobs"), (data, "load"), (runner, "run")):
    monkeypatch.setattr(module, name, reached)

  def call(*argv):
    flags.FLAGS.unparse_flags()
    try:
      flags.FLAGS(["dsplit", *argv])
      with pytest.raises(SystemExit) as e:
        main_lib.main(["dsplit"])
    finally:
      flags.FLAGS.unparse_flags()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err
  return call


def _flag_text(value) -> str:
  if isinstance(value, tuple):
    return "(" + ", ".join(map(str, value)) + ("," if value else "") + ")"
  return str(value)


def _command_cases():
  """The `test` preset's cases that `--set` can carry (numbers, tuples, names), for the
  fields that no flag sets."""
  for preset, name, value in _cases():
    rule = validation.FIELDS[name]
    if preset != "test" or name in cli.OWNED or name == "preset" or rule.kind is bool:
      continue
    if rule.kind is str:
      if value == "no-such-choice":
        yield name, value
    elif isinstance(value, (tuple, int, float)) and not isinstance(value, bool):
      yield name, value


@pytest.mark.parametrize("name, value", list(_command_cases()))
def test_the_command_refuses_each_field_outside_its_range_before_work(command, name, value):
  code, _, err = command("--preset=test", f"--set={name}={_flag_text(value)}")
  assert code == 2
  [line] = err.splitlines()
  assert line.startswith(f"error: {name}="), line  # the table's line, or the parser's


# --- probes that once got through -------------------------------------------------


@pytest.mark.parametrize("argv, line", [
    (["--set=train.learning_rate=-1"],
     "error: train.learning_rate=-1.0 is not allowed: must be a finite number in (0, inf)"),
    (["--set=train.learning_rate=nan"],
     "error: train.learning_rate=nan is not allowed: must be a finite number in (0, inf)"),
    (["--set=train.learning_rate=inf"],
     "error: train.learning_rate=inf is not allowed: must be a finite number in (0, inf)"),
    (["--set=ae.learning_rate=nan"],
     "error: ae.learning_rate=nan is not allowed: must be a finite number in (0, inf)"),
    (["--set=train.batch_size=0"],
     "error: train.batch_size=0 is not allowed: must be an int in [2, 65536]"),
    (["--set=eval_batch_size=0"],
     "error: eval_batch_size=0 is not allowed: must be an int in [1, 65536]"),
    (["--set=train.atypical_fraction=2"],
     "error: train.atypical_fraction=2.0 is not allowed: must be a finite number in (0, 1)"),
    (["--set=ae.batch_size=-4"],
     "error: ae.batch_size=-4 is not allowed: must be an int in [1, 65536]"),
    (["--set=ae.warmup_steps=30"],
     "error: ae.warmup_steps=30 is not allowed: must be at most ae.steps=20"),
    (["--seed=1180591620717411303424"],
     "error: --seed=1180591620717411303424 is not allowed: must be an int in "
     "[0, 2147483647] (the last seed, --seed + --num_seeds - 1, at most 2147483647)"),
    (["--seed=2147483647", "--num_seeds=2"],
     "error: --seed=2147483647 is not allowed: must be an int in [0, 2147483646] (the "
     "last seed, --seed + --num_seeds - 1, at most 2147483647)"),
    (["--num_seeds=1000000000", "--print_config"],
     "error: --num_seeds=1000000000 is not allowed: must be an int in [1, 10000]"),
    (["--num_seeds=10000", "--normal_class=0,1"],
     "error: 2 normal classes x 10000 seeds = 20000 jobs is not allowed: must be at most "
     "10000"),
    (["--method=dsplit", "--set=method=ocsvm"],
     "error: --set=method=ocsvm disagrees with --method (method=dsplit, the flag's value or "
     "default): set method with --method only"),
    (["--method=nnwds,ssim", "--set=method=nnwds"],
     "error: --set=method=nnwds disagrees with --method (method=nnwds, ssim, the flag's "
     "value or default): set method with --method only"),
    (["--dataset=mnist", "--set=dataset=fashion_mnist"],
     "error: --set=dataset=fashion_mnist disagrees with --dataset (dataset='mnist', the "
     "flag's value or default): set dataset with --dataset only"),
    (["--rho=5", "--set=rho=20"],
     "error: --set=rho=20 disagrees with --rho (rho=5.0, the flag's value or default): set "
     "rho with --rho only"),
    (["--set=seeds=(3,)"],
     "error: --set=seeds=(3,) disagrees with --seed/--num_seeds (seeds=(0,), the flag's "
     "value or default): set seeds with --seed/--num_seeds only"),
    (["--normal_class=1", "--set=normal_classes=(2,)"],
     "error: --set=normal_classes=(2,) disagrees with --normal_class (normal_classes=(1,), "
     "the flag's value or default): set normal_classes with --normal_class only"),
    (["--set=preset=paper"],
     "error: --set=preset=paper disagrees with --preset (preset='test', the flag's value or "
     "default): set preset with --preset only"),
    (["--describe"], "error: --describe goes with --print_config"),
])
def test_probes_are_one_line_and_exit_2_before_work(command, tmp_path, argv, line):
  code, _, err = command("--preset=test", f"--workdir={tmp_path / 'w'}", *argv)
  assert (code, err.splitlines()) == (2, [line])
  assert not (tmp_path / "w").exists()


def test_a_flag_repeated_by_set_with_the_same_value_is_accepted(command):
  code, out, err = command("--preset=test", "--method=ssim", "--set=method=ssim", "--rho=5",
                           "--set=rho=5", "--set=seeds=(0,)", "--print_config")
  assert code == 0, err
  assert "method: ssim\n" in out and "rho: 5.0\n" in out


TEST_CONFIG = os.path.join(os.path.dirname(__file__), "..", "dsplit_jax", "configs", "test.py")


def _dsplit(*args):
  return subprocess.run([sys.executable, "-m", "dsplit_jax.main", *args], capture_output=True,
                        text=True, timeout=300)


def test_a_config_file_field_that_a_flag_sets_must_agree_with_it():
  out = _dsplit(f"--config={TEST_CONFIG}", "--config.method=ocsvm", "--method=dsplit",
                "--print_config")
  assert out.returncode == 2
  assert out.stderr.splitlines() == [
      "error: --config.method='ocsvm' disagrees with --method (method=dsplit, the flag's "
      "value or default): set method with --method only"]


def test_a_huge_num_seeds_is_refused_before_anything_is_allocated():
  out = _dsplit("--preset=test", "--num_seeds=1000000000", "--print_config")
  assert (out.returncode, out.stderr.splitlines()) == (2, [
      "error: --num_seeds=1000000000 is not allowed: must be an int in [1, 10000]"])


def test_a_negative_learning_rate_writes_no_record(tmp_path):
  out = _dsplit("--preset=test", f"--workdir={tmp_path}", "--set=train.learning_rate=-1")
  assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("arg", ["--help", "--helpfull"])
def test_help_exits_0(arg):
  code = f"import sys; sys.argv = ['dsplit', {arg!r}]; from dsplit_jax.main import run; run()"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "--print_config" in out.stdout and "--describe" in out.stdout


# --- --print_config: plain YAML, and --describe -----------------------------------


def _plain(value):
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, tuple):
    return [_plain(v) for v in value]
  return value


@pytest.mark.parametrize("preset", configs.PRESETS)
def test_print_config_is_plain_yaml_that_reads_back_as_the_config(command, preset):
  code, out, err = command(f"--preset={preset}", "--num_seeds=2", "--print_config")
  assert code == 0, err
  assert "!!" not in out and "&id" not in out and "*id" not in out
  config = cli.config_from_flags(preset=preset, dataset="mnist", normal_class="0",
                                 method="dsplit", rho=None, seed=0, num_seeds=2,
                                 data_dir=None, overrides=[])[0]
  assert yaml.safe_load(out) == _plain(config.to_dict())
  assert "  conv_features: [" in out and "seeds: [0, 1]\n" in out


def test_a_printed_tuple_pasted_into_set_gives_the_same_config(command):
  code, out, _ = command("--preset=test", "--print_config")
  [line] = [line for line in out.splitlines() if line.startswith("  dense_features:")]
  value = line.split(": ", 1)[1]  # "[16, 16]"
  config = configs.load("test", [f"model.dense_features={value}"])
  assert config.model.dense_features == configs.get_preset("test").model.dense_features


def test_describe_gives_every_field_its_meaning_and_range(command):
  code, out, err = command("--preset=test", "--print_config", "--describe")
  assert code == 0, err
  assert yaml.safe_load(out) == yaml.safe_load(command("--preset=test", "--print_config")[1])
  described = [line for line in out.splitlines() if "  # " in line]
  assert len(described) == len(validation.FIELDS)
  assert ("  learning_rate: 0.001  # classifier Adam learning rate (the peak after warm-up); "
          "a finite number in (0, inf)") in out
  assert "rho: 10.0  # percent of normal training images called atypical" in out


def test_authors_network_needs_the_balanced_schedule():
  config = configs.load("authors", ["train.schedule=interleaved"])
  with pytest.raises(configs.ConfigError, match="train.schedule"):
    validation.validate(config, check_dataset=False)
  config = configs.load("authors", ["model.ae_conv_features=(8,16,32,64,128)"])
  with pytest.raises(configs.ConfigError, match="4 widths"):
    validation.validate(config, check_dataset=False)
