"""The paper's settings, for accelerators.

  python -m dsplit_jax.main --preset=paper --dataset=mnist --normal_class=all --num_seeds=5

Batch 64, rho = 10 and L2 decay 1e-6 on conv layers are the paper's; AlexNet widths are
AlexNet's. Steps, optimiser and learning rates are not in the paper (BUILD_NOTES.md).
"""

from dsplit_jax.configs import base


def get_config():
  c = base.get_config()
  c.preset = "paper"
  return c
