"""Progress summaries of the chunked loop."""

import numpy as np

from dsplit_jax import loop
from dsplit_jax import records


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
  records.append_curves(str(tmp_path / records.CURVES_FILE), "dsplit", 50,
                        chunk(None, 50)[1], ["c0s0", "c1s0"])
  curves = records.read_curves(str(tmp_path))
  assert set(curves["dsplit"]) == {"c0s0", "c1s0"}  # the padded job is not saved
  points = curves["dsplit"]["c1s0"]["closeness"]
  assert [s for s, _ in points] == [25, 50, 75, 100]
  np.testing.assert_allclose([v for _, v in points], [10 * 12, 10 * 37, 10 * 62, 10 * 87])
  assert records.final_losses(str(tmp_path), "dsplit")["c0s0"] == {"closeness": 87.0,
                                                                   "dispersion": 174.0}
  assert "c9s9" not in records.final_losses(str(tmp_path), "dsplit")
