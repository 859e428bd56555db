"""The three losses of the paper's section 2.3, written on logits.

dist = sigmoid(d) for a distance logit d, so -log(1 - dist) = softplus(d) and
-log(dist) = softplus(-d): the log-sigmoid form never produces inf or NaN, even for
logits of +-100 where the literal formulas of eqs. 2 and 4 would take log(0).
"""

import jax
import jax.numpy as jnp
import optax


def closeness_loss(distance_logits: jax.Array) -> jax.Array:
  """Eq. 2: pairs of typical samples, target distance 0."""
  return jnp.mean(jax.nn.softplus(distance_logits))


def dispersion_loss(distance_logits: jax.Array) -> jax.Array:
  """Eq. 4: pairs of atypical samples, target distance 1."""
  return jnp.mean(jax.nn.softplus(-distance_logits))


def intra_class_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Eq. 3: binary cross-entropy, typical = 0, atypical = 1."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
