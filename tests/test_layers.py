"""The im2col convolutions compute what flax's convolutions compute, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsplit_jax import configs
from dsplit_jax import layers
from dsplit_jax import models
from dsplit_jax import train

CASES = [(5, 1, "SAME"), (5, 2, "SAME"), (3, 1, "SAME"), (7, 1, "VALID"), (3, 2, "VALID"),
         (4, 2, "SAME")]


# (1, 1) inputs take conv_transpose_patches' shortcut (the autoencoder's code).
@pytest.mark.parametrize("transpose,size", [(False, (9, 11)), (True, (9, 11)),
                                            (True, (1, 1))])
@pytest.mark.parametrize("kernel,stride,padding", CASES)
def test_patch_conv_matches_flax(transpose, kernel, stride, padding, size):
  ref_cls, patch_cls = ((nn.ConvTranspose, layers.PatchConvTranspose) if transpose
                        else (nn.Conv, layers.PatchConv))
  ref = ref_cls(6, (kernel, kernel), strides=stride, padding=padding)
  patch = patch_cls(6, (kernel, kernel), strides=stride, padding=padding)
  x = jax.random.normal(jax.random.PRNGKey(0), (2,) + size + (3,))
  params = ref.init(jax.random.PRNGKey(1), x)
  # Same parameter tree (names and shapes), so checkpoints carry over.
  assert (jax.tree.map(jnp.shape, params) ==
          jax.tree.map(jnp.shape, patch.init(jax.random.PRNGKey(1), x)))
  params = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  y_ref, y_patch = ref.apply(params, x), patch.apply(params, x)
  assert y_ref.shape == y_patch.shape
  np.testing.assert_allclose(y_patch, y_ref, atol=1e-4, rtol=1e-4)

  def grads(module):
    return jax.grad(lambda p, x: jnp.sum(jnp.sin(module.apply(p, x))), (0, 1))(params, x)
  for g_patch, g_ref in zip(jax.tree.leaves(grads(patch)), jax.tree.leaves(grads(ref))):
    np.testing.assert_allclose(g_patch, g_ref, atol=2e-3, rtol=1e-4)


def test_classifier_is_the_same_function_under_both_lowerings():
  config = configs.get_preset("test")
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 28, 28, 1))
  outs = []
  for impl in ("xla", "patches"):
    config.model.conv_impl = impl
    net = train.make_classifier(config)
    params = net.init(jax.random.PRNGKey(1), x, method=net.init_all)
    outs.append((params, net.apply(params, x)[0]))
  assert jax.tree.map(jnp.shape, outs[0][0]) == jax.tree.map(jnp.shape, outs[1][0])
  np.testing.assert_allclose(outs[1][1], outs[0][1], atol=1e-4, rtol=1e-4)


def test_auto_and_bad_names():
  expected = "patches" if jax.default_backend() == "cpu" else "xla"
  assert layers.resolve_conv_impl("auto") == expected
  with pytest.raises(ValueError, match="conv_impl"):
    models.AlexNetFeatures(conv_impl="cudnn").init(jax.random.PRNGKey(0),
                                                   jnp.zeros((1, 28, 28, 1)))
