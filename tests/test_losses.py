"""The three losses against values computed by hand from eqs. 2-4."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from dsplit_jax import losses


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def test_closeness_is_minus_log_one_minus_distance():
  d = [0.0, 2.0, -1.0]
  expected = np.mean([-math.log(1 - _sigmoid(v)) for v in d])
  assert float(losses.pair_loss(jnp.array(d), 0.0)) == pytest.approx(expected, rel=1e-6)


def test_dispersion_is_minus_log_distance():
  d = [0.0, 2.0, -1.0]
  expected = np.mean([-math.log(_sigmoid(v)) for v in d])
  assert float(losses.pair_loss(jnp.array(d), 1.0)) == pytest.approx(expected, rel=1e-6)


def test_intra_class_is_binary_cross_entropy():
  logits, labels = [1.5, -0.5, 3.0], [0.0, 1.0, 1.0]
  expected = -np.mean([y * math.log(_sigmoid(l)) + (1 - y) * math.log(1 - _sigmoid(l))
                       for l, y in zip(logits, labels)])
  got = losses.intra_class_loss(jnp.array(logits), jnp.array(labels))
  assert float(got) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("logit", [100.0, -100.0])
def test_extreme_logits_stay_finite_and_exact(logit):
  # -log(1 - sigmoid(100)) = 100 + log(1 + e^-100) ~ 100; the literal formula gives inf.
  x = jnp.array([logit])
  assert float(losses.pair_loss(x, 0.0)) == pytest.approx(max(logit, 0.0), abs=1e-6)
  assert float(losses.pair_loss(x, 1.0)) == pytest.approx(max(-logit, 0.0), abs=1e-6)
  assert float(losses.intra_class_loss(x, jnp.array([0.0]))) == pytest.approx(
      max(logit, 0.0), abs=1e-6)
  assert float(losses.intra_class_loss(x, jnp.array([1.0]))) == pytest.approx(
      max(-logit, 0.0), abs=1e-6)


def test_a_pair_loss_has_target_zero_or_one():
  with pytest.raises(ValueError, match="target distance"):
    losses.pair_loss(jnp.zeros(3), 0.5)
