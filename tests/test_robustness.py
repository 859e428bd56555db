"""Probes of a damaged or shared work dir: corrupt files, a second run, bad paths.

Training runs use a folder dataset of 48 real digits and the `test` preset, so that a
whole run (autoencoder, split, classifier, scores) takes seconds, not minutes.
"""

import fcntl
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dsplit_jax import configs
from dsplit_jax import data
from dsplit_jax import loop
from dsplit_jax import runner
from dsplit_jax import workdir


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory, mnist_dir):
  """train/{0,1}/ 16 digits each, test/{0,1}/ 8 each: a labelled folder dataset."""
  root = tmp_path_factory.mktemp("digits")
  for split, n in (("train", 16), ("test", 8)):
    x, y = data.load("mnist", split, str(mnist_dir))
    for c in (0, 1):
      (root / split / str(c)).mkdir(parents=True)
      for i, image in enumerate(x[y == c][:n]):
        Image.fromarray(image[..., 0]).save(root / split / str(c) / f"{i}.png")
  return root


def _config(root):
  c = configs.get_preset("test")
  c.dataset, c.data_dir, c.image_size, c.normal_classes = "folder", str(root), 28, (0,)
  return c


def _truncate_checkpoint(step_dir):
  """Cuts every OCDBT data file of one orbax step to 10 bytes, as a full disk might."""
  files = glob.glob(os.path.join(step_dir, "**", "d", "*"), recursive=True)
  assert files, f"no OCDBT data files under {step_dir}"
  for f in files:
    os.truncate(f, 10)


def test_corrupt_files_are_set_aside_and_the_rerun_gives_the_same_auc(digits_folder, tmp_path):
  config = _config(digits_folder)
  first = runner.run(config, str(tmp_path), progress=loop.Progress(printer=lambda _: None))
  assert first[0]["data_files"] == [{  # train and test are read from the same folder
      "path": str(digits_folder), "files": 48, "bytes": first[0]["data_files"][0]["bytes"],
      "listing_sha256": first[0]["data_files"][0]["listing_sha256"]}]
  [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
  [ae_file] = glob.glob(str(tmp_path / "autoencoders" / "*" / "c0-s0.msgpack"))
  [ae_step] = glob.glob(str(tmp_path / "autoencoders" / "*" / "ckpt-*" / "autoencoder" / "20"))
  clf_step = os.path.join(run_dir, "dsplit", "20")
  _truncate_checkpoint(clf_step)
  _truncate_checkpoint(ae_step)
  os.truncate(ae_file, 10)
  with open(os.path.join(run_dir, "config.json"), "w") as f:
    f.write('{"dataset": "fold')  # a torn write
  os.rename(tmp_path / "results.jsonl", tmp_path / "first.jsonl")

  lines = []
  again = runner.run(config, str(tmp_path), progress=loop.Progress(printer=lines.append))
  assert again[0]["auc"] == first[0]["auc"]
  # The record says how well its split's autoencoder trained (20 test-preset steps:
  # worse than the mean image, so above 1), the same for the autoencoder trained again.
  assert again[0]["ae_plateau_ratio"] == first[0]["ae_plateau_ratio"] > 1.0
  text = "\n".join(lines)
  for path in (clf_step, ae_step, ae_file):
    assert f"{path} cannot be" in text and f"set aside as {path}.corrupt-" in text
    assert len(glob.glob(path + ".corrupt-*")) == 1  # kept, never deleted
  assert "training that job again" in text
  assert text.count("starting the phase afresh") == 2
  assert len(glob.glob(os.path.join(run_dir, "config.json.corrupt-*"))) == 1
  assert json.load(open(os.path.join(run_dir, "config.json")))["dataset"] == "folder"


def test_an_unreadable_checkpoint_starts_the_phase_afresh(tmp_path):
  def chunk(state, start):
    return {"w": state["w"] + 1}, {"loss": np.ones((1, 1))}

  def run(lines):
    return loop.run_phase("p", {"w": np.full(3, 10.0, np.float32)}, chunk, total_steps=2,
                          chunk_steps=1, ckpt_dir=str(tmp_path),
                          progress=loop.Progress(printer=lines.append))["w"]
  loop.run_phase("p", {"w": np.zeros(3, np.float32)}, chunk, total_steps=2, chunk_steps=1,
                 ckpt_dir=str(tmp_path))
  np.testing.assert_array_equal(run([]), 2)  # restored step 2: nothing left to run
  _truncate_checkpoint(str(tmp_path / "p" / "2"))
  lines = []
  np.testing.assert_array_equal(run(lines), 12)  # trained again from the new start
  assert lines[0].startswith(f"[p] checkpoint {tmp_path / 'p' / '2'} cannot be restored")
  assert "\n" not in lines[0] and lines[1].endswith("starting the phase afresh")
  names = sorted(os.listdir(tmp_path / "p"))  # a new step 2, and the old one set aside
  assert len(names) == 2 and names[0] == "2" and names[1].startswith("2.corrupt-")


FASHION = "/usr/share/datasets/fashion-mnist"


def test_another_dataset_under_the_asked_name_is_refused(tmp_path):
  if not os.path.isdir(FASHION):
    pytest.skip(f"{FASHION} absent (apt-get install dataset-fashion-mnist)")
  with pytest.raises(data.DataError, match=(
      f"^{FASHION}: the test split has 10000 images \\(1000 per class\\), but mnist's has "
      "10000 \\(980/1135/")):
    data.load("mnist", "test", data_dir=FASHION)
  out = _main("--preset=test", "--dataset=mnist", f"--data_dir={FASHION}",
              f"--workdir={tmp_path}", env={"DSPLIT_DATA_DIR": ""})
  [line] = out.stderr.strip().splitlines()
  assert out.returncode == 2 and line.startswith(f"error: {FASHION}: the train split")
  assert "another dataset" in line and not (tmp_path / "results.jsonl").exists()


def test_a_record_names_the_files_it_came_from(mnist_dir):
  files = data.describe_files(data.source_files("mnist", "train", str(mnist_dir)))
  assert [os.path.basename(f["path"]) for f in files] == [
      "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
  assert files[0]["bytes"] == os.path.getsize(files[0]["path"])
  assert len(files[0]["sha256"]) == 64 and files[0]["mtime"].endswith("+00:00")


def _main(*args, env=None):
  return subprocess.run([sys.executable, "-m", "dsplit_jax.main", *args], capture_output=True,
                        text=True, timeout=300, env={**os.environ, **(env or {})})


def test_a_second_run_of_the_same_workdir_is_refused(tmp_path):
  busy, free = tmp_path / "busy", tmp_path / "free"
  with workdir.lock(str(busy)):
    out = _main("--preset=test", f"--workdir={busy}")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: work dir {busy} is in use by process {os.getpid()} ({busy / '.lock'}); "
        "wait for it to finish or use another --workdir"]
    assert not (busy / "results.jsonl").exists()
    # Another work dir is not affected: this run gets past the lock to the data.
    out = _main("--preset=test", f"--workdir={free}", "--dataset=cifar10",
                env={"DSPLIT_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2 and "cifar10 not found" in out.stderr
    with workdir.lock(str(free)):
      pass
  with workdir.lock(str(busy)):  # released on exit of the block (or of the process)
    pass


def test_the_lock_is_released_when_its_holder_dies(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from dsplit_jax import workdir\n"
       f"with workdir.lock({str(tmp_path)!r}): print('held', flush=True); time.sleep(60)"],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(workdir.WorkdirBusy, match=f"in use by process {holder.pid} "):
      with workdir.lock(str(tmp_path)):
        pass
  finally:
    holder.kill()
    holder.wait()
  with workdir.lock(str(tmp_path)):  # a crash (SIGKILL) leaves no stale lock
    fd = os.open(tmp_path / ".lock", os.O_RDWR)
    with pytest.raises(BlockingIOError):
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_ctrl_c_waits_for_the_checkpoint_and_says_where_to_resume(tmp_path):
  def chunk(state, start):
    if start == 2:
      raise KeyboardInterrupt
    return {"w": state["w"] + 1}, {"loss": np.ones((1, 1))}
  with pytest.raises(loop.Interrupted, match=r"^interrupted at p step 2/4; run the same "
                     "command to resume$"):
    loop.run_phase("p", {"w": np.zeros(2, np.float32)}, chunk, total_steps=4, chunk_steps=1,
                   ckpt_dir=str(tmp_path))
  lines = []
  out = loop.run_phase("p", {"w": np.zeros(2, np.float32)}, lambda s, t: (
      {"w": s["w"] + 1}, {"loss": np.ones((1, 1))}), total_steps=4, chunk_steps=1,
      ckpt_dir=str(tmp_path), progress=loop.Progress(printer=lines.append))
  assert lines[0] == "[p] resumed at step 2/4"
  np.testing.assert_array_equal(out["w"], 4)


def test_a_non_finite_loss_names_phase_step_and_learning_rate():
  def chunk(state, start):
    return state, {"loss": np.array([[1.0], [np.nan if start == 1 else 1.0]])}
  with pytest.raises(loop.NonFiniteLossError, match=(
      r"^dsplit: non-finite loss, loss_max_job by step 2/3 with learning rate 0.001; a lower "
      "learning rate may help$")):
    loop.run_phase("dsplit", {}, chunk, total_steps=3, chunk_steps=1, ckpt_dir=None,
                   learning_rate=1e-3)


@pytest.fixture
def main_in_process(monkeypatch, capsys):
  """Runs dsplit_jax.main.main with `cli.run` replaced; returns (exit code, stderr)."""
  from absl import flags
  from dsplit_jax import cli
  from dsplit_jax import main as main_lib

  def call(fake_run, *argv):
    monkeypatch.setattr(cli, "run", fake_run)
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["main", "--preset=test", *argv])
    with pytest.raises(SystemExit) as e:
      main_lib.main(["main"])
    flags.FLAGS.unparse_flags()
    return e.value.code, capsys.readouterr().err
  return call


def test_an_unexpected_error_is_one_line_and_verbose_shows_the_traceback(main_in_process):
  def broken(*a, **k):
    raise RuntimeError("disk on fire\nsecond line")
  code, err = main_in_process(broken)
  assert code == 1 and err.splitlines() == [
      "error: RuntimeError: disk on fire second line (--verbose shows the traceback)"]
  code, err = main_in_process(broken, "--verbose")
  assert code == 1 and "Traceback (most recent call last)" in err and "def broken" not in err
  assert err.splitlines()[-1].startswith("error: RuntimeError: disk on fire")


def test_ctrl_c_exits_130_with_one_line(main_in_process):
  def interrupted(*a, **k):
    raise loop.Interrupted("interrupted at dsplit step 250/750; run the same command to resume")
  assert main_in_process(interrupted) == (
      130, "interrupted at dsplit step 250/750; run the same command to resume\n")


def test_unwritable_workdir_and_scores_csv_are_found_before_training(tmp_path, capsys):
  from dsplit_jax import cli
  (tmp_path / "file").write_text("not a folder")
  config = configs.get_preset("test")
  assert cli.run(config, ["dsplit"], workdir=str(tmp_path / "file" / "w")) == 2
  assert capsys.readouterr().err == (
      f"error: --workdir {tmp_path / 'file' / 'w'} is not writable (Not a directory)\n")
  assert cli.run(config, ["dsplit"], workdir=str(tmp_path / "w"), score_dir=str(tmp_path),
                 scores_csv=str(tmp_path / "file" / "s.csv")) == 2
  assert capsys.readouterr().err == (
      f"error: --scores_csv folder {tmp_path / 'file'} is a file, not a folder\n")
  assert os.listdir(tmp_path / "w") == []  # the probe file is gone


def test_a_full_disk_is_one_line_naming_the_file(main_in_process):
  import errno
  def full(*a, **k):
    try:
      raise RuntimeError('RESOURCE_EXHAUSTED: Error writing "opt_state.0.count/0" in OCDBT '
                         'database at local file "/w/runs/r/dsplit/20.orbax-checkpoint-tmp/"')
    except RuntimeError as e:
      raise ValueError("orbax: the asynchronous save failed") from e
  code, err = main_in_process(full)
  assert code == 2 and err.splitlines() == [
      "error: no space left on device while writing /w/runs/r/dsplit/20.orbax-checkpoint-tmp/;"
      " free space and run the same command to resume"]
  assert workdir.disk_full(OSError(errno.ENOSPC, "No space left on device", "/w/x")) == (
      "no space left on device while writing /w/x; free space and run the same command to "
      "resume")
  assert workdir.disk_full(OSError(errno.EACCES, "Permission denied", "/w/x")) is None


def test_a_failed_write_leaves_no_half_record_or_file(tmp_path, monkeypatch):
  import errno
  from dsplit_jax import records
  results = tmp_path / "results.jsonl"
  records.append_record(results, {"auc": 0.5})
  before = results.read_bytes()
  write = os.write

  def half_then_full(fd, data):
    if len(data) > 4:
      return write(fd, data[:len(data) // 2])
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(records.os, "write", half_then_full)
  with pytest.raises(OSError, match="No space left on device") as e:
    records.append_record(results, {"auc": 0.75, "more": "x" * 100})
  assert e.value.filename == str(results) and results.read_bytes() == before

  def savez_on_a_full_disk(path, **arrays):
    with open(path, "wb") as f:
      f.write(b"PK")  # the start of a zip file, then the disk is full
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(np, "savez", savez_on_a_full_disk)
  target = tmp_path / "scores" / "s.npz"
  with pytest.raises(OSError) as e:
    records.save_npz(str(target), scores=np.zeros(3))
  assert e.value.filename == str(target) and os.listdir(tmp_path / "scores") == []


def test_replacing_keeps_the_old_file_or_folder_until_the_new_one_is_whole(tmp_path):
  target = tmp_path / "out" / "f.txt"
  with workdir.replacing(str(target)) as tmp:
    open(tmp, "w").write("one")
  assert target.read_text() == "one"
  with pytest.raises(RuntimeError, match="stopped"):
    with workdir.replacing(str(target)) as tmp:
      open(tmp, "w").write("half")
      raise RuntimeError("stopped")
  assert target.read_text() == "one" and os.listdir(target.parent) == ["f.txt"]

  folder = tmp_path / "det"
  for text in ("old", "new"):
    with workdir.replacing(str(folder), folder=True) as tmp:
      open(os.path.join(tmp, "a"), "w").write(text)
  assert (folder / "a").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["det", "out"]
