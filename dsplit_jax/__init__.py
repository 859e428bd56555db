"""dsplit_jax: deep one-class classification using data splitting, in JAX/Flax."""

__version__ = "0.1.0"
