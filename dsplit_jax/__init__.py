"""dsplit_jax: deep one-class classification using data splitting, in JAX/Flax."""

__version__ = "0.1.0"


def __getattr__(name):
  # Lazy, so that `dsplit_jax.data` can be used without importing JAX.
  if name == "OneClassClassifier":
    from dsplit_jax.api import OneClassClassifier
    return OneClassClassifier
  raise AttributeError(f"module 'dsplit_jax' has no attribute {name!r}")
