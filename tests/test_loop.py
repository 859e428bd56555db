"""Progress summaries of the chunked loop."""

import numpy as np

from dsplit_jax import loop


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
