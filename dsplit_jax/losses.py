"""The three losses of the paper's section 2.3, written on logits.

dist = sigmoid(d) for a distance logit d, so -log(1 - dist) = softplus(d) and
-log(dist) = softplus(-d): the log-sigmoid form never produces inf or NaN, even for
logits of +-100 where the literal formulas of eqs. 2 and 4 would take log(0).
"""

import jax
import jax.numpy as jnp
import optax

# The pair losses' target distances: closeness pulls typical pairs to 0 (eq. 2),
# dispersion pushes atypical pairs to 1 (eq. 4).
PAIR_TARGETS = (0.0, 1.0)


def pair_loss(distance_logits: jax.Array, target: float) -> jax.Array:
  """Eqs. 2 and 4: the cross-entropy of pair distances against `target` (0 or 1)."""
  if target == 0.0:
    return jnp.mean(jax.nn.softplus(distance_logits))
  if target == 1.0:
    return jnp.mean(jax.nn.softplus(-distance_logits))
  raise ValueError(f"a pair loss's target distance is 0 or 1, got {target!r}")


def intra_class_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Eq. 3: binary cross-entropy, typical = 0, atypical = 1."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
