"""Progress summaries of the chunked loop."""

import os

import numpy as np
import pytest

from dsplit_jax import loop
from dsplit_jax import curves


def test_progress_shows_the_worst_job_of_a_stack():
  progress = loop.Progress(printer=lambda _: None)

  def chunk(state, start):  # Job 2 is stuck at 0.1 while the others learn.
    return state, {"mse": np.array([[0.01, 0.01], [0.02, 0.02], [0.1, 0.1]])}
  loop.run_phase("autoencoder", {}, chunk, total_steps=1, chunk_steps=1, ckpt_dir=None,
                 progress=progress)
  last = progress.history[-1]
  np.testing.assert_allclose(last["mse"], 0.13 / 3)
  np.testing.assert_allclose(last["mse_max_job"], 0.1)


def test_a_single_job_reports_only_its_mean():
  progress = loop.Progress(printer=lambda _: None)
  loop.run_phase("x", {}, lambda s, t: (s, {"loss": np.array([[1.0, 3.0]])}),
                 total_steps=1, chunk_steps=1, ckpt_dir=None, progress=progress)
  assert set(progress.history[-1]) == {"phase", "step", "total", "loss"}
  assert progress.history[-1]["loss"] == 2.0


def test_loss_curves_are_saved_per_job_and_survive_a_rerun_chunk(tmp_path):
  def chunk(state, start):  # 2 real jobs + 1 padded; 50 steps per chunk.
    steps = np.arange(start, start + 50, dtype=np.float64)
    loss = np.stack([steps, 10 * steps, -steps])
    return state, {"closeness": loss, "dispersion": 2 * loss}
  loop.run_phase("dsplit", {"w": np.zeros(2)}, chunk, total_steps=100, chunk_steps=50,
                 ckpt_dir=str(tmp_path), curve_jobs=["c0s0", "c1s0"])
  # The second chunk runs again (as after a kill before its checkpoint): no duplicates.
  curves.append_curves(str(tmp_path / curves.CURVES_FILE), "dsplit", 50,
                        chunk(None, 50)[1], ["c0s0", "c1s0"])
  saved = curves.read_curves(str(tmp_path))
  assert set(saved["dsplit"]) == {"c0s0", "c1s0"}  # the padded job is not saved
  points = saved["dsplit"]["c1s0"]["closeness"]
  assert [s for s, _ in points] == [25, 50, 75, 100]
  np.testing.assert_allclose([v for _, v in points], [10 * 12, 10 * 37, 10 * 62, 10 * 87])
  assert curves.final_losses(str(tmp_path), "dsplit")["c0s0"] == {"closeness": 87.0,
                                                                   "dispersion": 174.0}
  assert "c9s9" not in curves.final_losses(str(tmp_path), "dsplit")


def test_rate_and_eta_leave_out_the_first_chunk_which_compiles():
  times = iter([0.0, 30.0, 32.0, 34.0])  # restart, then the end of each of 3 chunks
  lines = []
  progress = loop.Progress(printer=lines.append, clock=lambda: next(times))
  loop.run_phase("x", {}, lambda s, t: (s, {"loss": np.array([[1.0]])}),
                 total_steps=30, chunk_steps=10, ckpt_dir=None, progress=progress)
  assert progress.first_chunk_s == {"x": 30.0}
  # The wait for compilation is named before it starts, then a bar per chunk.
  assert lines[0] == "[x] compiling ... (30 steps to run after it)"
  assert lines[1] == ("[x] [######..............] 10/30 loss=1 "
                      "(first chunk 30.0s, compilation included)")
  # 10 steps in 2 s after compilation: 5 steps/s (with it, 30 steps in 34 s: 0.88).
  assert lines[2] == "[x] [#############.......] 20/30 loss=1 (5.00 steps/s, ETA 2s)"
  assert lines[3] == "[x] [####################] 30/30 loss=1 (5.00 steps/s, ETA 0s)"


def test_bar_and_duration():
  assert loop.bar(0, 8, width=4) == "[....]" and loop.bar(8, 8, width=4) == "[####]"
  assert loop.bar(9, 8, width=4) == "[####]" and loop.bar(3, 8, width=4) == "[#...]"
  assert [loop.duration(s) for s in (4.4, 185, 3725, float("nan"), -1)] == [
      "4s", "3m05s", "1h02m", "?", "?"]


def test_a_fit_without_output_and_with_a_plain_callable():
  lines = []
  loop.run_phase("y", {}, lambda s, t: (s, {"loss": np.array([[1.0]])}), total_steps=2,
                 chunk_steps=1, ckpt_dir=None, progress=loop.Progress(printer=lines.append))
  assert len(lines) == 3 and lines[0].startswith("[y] compiling")
  silent = loop.Progress(printer=lambda line: None)
  loop.run_phase("y", {}, lambda s, t: (s, {"loss": np.array([[1.0]])}), total_steps=2,
                 chunk_steps=1, ckpt_dir=None, progress=silent)
  assert [h["step"] for h in silent.history] == [1, 2]


def test_loss_curves_also_go_through_a_clu_metric_writer(tmp_path, caplog):
  import logging
  from dsplit_jax import writers
  lines = []
  said_before = writers._said_no_tensorboard
  writers._said_no_tensorboard = False
  try:
    with caplog.at_level(logging.INFO, logger="absl"):
      loop.run_phase("dsplit", {"w": np.zeros(2)},
                     lambda s, t: (s, {"closeness": np.full((1, 25), 0.5 + t)}),
                     total_steps=50, chunk_steps=25, ckpt_dir=str(tmp_path),
                     curve_jobs=["c0s0"], progress=loop.Progress(printer=lines.append))
  finally:
    writers._said_no_tensorboard = said_before
  logged = [r.getMessage() for r in caplog.records if "dsplit/closeness/c0s0" in r.getMessage()]
  assert logged == ["[25] dsplit/closeness/c0s0=0.5", "[50] dsplit/closeness/c0s0=25.5"]
  # The run's own record is unchanged.
  assert curves.read_curves(str(tmp_path))["dsplit"]["c0s0"]["closeness"] == [
      (25, 0.5), (50, 25.5)]
  if writers.tensorboard_available():
    assert os.listdir(tmp_path / writers.TENSORBOARD_DIR)
  else:
    assert [l for l in lines if l.startswith("loss curves:")] == [
        f"loss curves: {tmp_path / curves.CURVES_FILE} and the log; TensorBoard files need "
        "TensorFlow (pip install tensorflow)"]
    assert not (tmp_path / writers.TENSORBOARD_DIR).exists()


def test_the_log_writer_imports_without_tensorflow_and_leaves_clu_as_found():
  import importlib.util
  from dsplit_jax import writers
  if importlib.util.find_spec("tensorflow") is not None:
    pytest.skip("TensorFlow is installed: clu.metric_writers imports as usual")
  logging_writer, multi_writer = writers._without_tensorflow()
  assert logging_writer.__name__ == "LoggingWriter" and multi_writer.__name__ == "MultiWriter"
  with pytest.raises(ImportError, match="tensorflow"):
    from clu import metric_writers  # noqa: F401  (as without dsplit_jax)


def test_steps_where_a_loss_did_not_run_are_left_out_of_summaries_and_curves(tmp_path):
  # train.schedule="epochs": one loss per step, curves.NOT_RUN for the others.
  skip = curves.NOT_RUN

  def chunk(state, start):  # 2 jobs, 50 steps: closeness runs on steps 0-29 only.
    close = np.where(np.arange(50) < 30, 1.0, skip) * np.array([[1.0], [3.0]])
    disp = np.where(np.arange(50) < 30, skip, 2.0) * np.ones((2, 1))
    return state, {"closeness": close, "dispersion": disp,
                   "unused": np.full((2, 50), skip)}
  progress = loop.Progress(printer=lambda _: None)
  loop.run_phase("dsplit", {"w": np.zeros(2)}, chunk, total_steps=50, chunk_steps=50,
                 ckpt_dir=str(tmp_path), curve_jobs=["c0s0", "c1s0"], progress=progress)
  last = progress.history[-1]
  assert (last["closeness"], last["closeness_max_job"]) == (2.0, 3.0)
  assert last["dispersion"] == 2.0 and "unused" not in last  # ran on no step: left out
  saved = curves.read_curves(str(tmp_path))["dsplit"]["c1s0"]
  assert [v for _, v in saved["closeness"]] == [3.0, 3.0]  # steps 0-24, 25-29
  assert np.isnan(saved["dispersion"][0][1])  # steps 0-24: none ran
  assert curves.final_losses(str(tmp_path), "dsplit")["c1s0"]["closeness"] == 3.0
  assert curves.final_losses(str(tmp_path), "dsplit")["c1s0"]["dispersion"] == 2.0


def test_a_loss_that_diverged_on_a_step_where_it_ran_stops_the_run():
  # A NaN is a real value (divergence), not a step where the loss did not run.
  def chunk(state, start):
    return state, {"closeness": np.array([[1.0, curves.NOT_RUN, np.nan, curves.NOT_RUN]])}
  with pytest.raises(loop.NonFiniteLossError, match="closeness"):
    loop.run_phase("dsplit", {}, chunk, total_steps=4, chunk_steps=4, ckpt_dir=None)


def test_evaluate_sees_step_zero_then_every_chunk_and_a_resume_goes_on_where_it_stopped(
    tmp_path):
  seen = []

  def chunk(state, start):
    return {"w": state["w"] + 1}, {"loss": np.ones((1, 10))}

  def evaluate(step, state):
    seen.append((step, float(state["w"][0])))
  loop.run_phase("dsplit", {"w": np.zeros(1)}, chunk, total_steps=20, chunk_steps=10,
                 ckpt_dir=str(tmp_path), evaluate=evaluate)
  assert seen == [(0, 0.0), (10, 1.0), (20, 2.0)]
  seen.clear()  # resumed from its finished checkpoint: step 0 is not scored again
  loop.run_phase("dsplit", {"w": np.zeros(1)}, chunk, total_steps=30, chunk_steps=10,
                 ckpt_dir=str(tmp_path), evaluate=evaluate)
  assert seen == [(30, 3.0)]
