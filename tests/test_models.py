"""Shapes and ranges of the paper's networks on both input sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsplit_jax import configs
from dsplit_jax import models
from dsplit_jax import train


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_shapes(shape):
  config = configs.get_preset("test")
  x = jax.random.uniform(jax.random.PRNGKey(0), (3,) + shape)
  net = train.make_classifier(config)
  params = net.init(jax.random.PRNGKey(1), x, method=net.init_all)
  logits, z = net.apply(params, x)
  assert logits.shape == (3,)
  assert z.shape == (3, config.model.dense_features[-1])
  ae = train.make_autoencoder(config, shape)
  ae_params = ae.init(jax.random.PRNGKey(2), x)
  recon = ae.apply(ae_params, x)
  assert recon.shape == x.shape
  assert float(recon.min()) >= 0.0 and float(recon.max()) <= 1.0


def test_distance_is_in_unit_interval_even_for_huge_latents():
  config = configs.get_preset("test")
  net = train.make_classifier(config)
  x = jnp.zeros((2, 28, 28, 1))
  params = net.init(jax.random.PRNGKey(0), x, method=net.init_all)
  z = jax.random.normal(jax.random.PRNGKey(1), (50, config.model.dense_features[-1])) * 1e4
  d = jax.nn.sigmoid(net.apply(params, z, z[::-1], method=net.distance_logit))
  assert d.shape == (50,)
  assert bool(jnp.all((d >= 0) & (d <= 1)))
  # Identical latents: dz = 0, so the distance is sigmoid(bias) for every pair.
  same = net.apply(params, z, z, method=net.distance_logit)
  np.testing.assert_allclose(same, same[0])


def test_l2_penalty_covers_conv_kernels_only():
  config = configs.get_preset("test")
  net = train.make_classifier(config)
  params = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)), method=net.init_all)
  p = params["params"]
  expected = sum(float(jnp.sum(p["features"][f"conv{i}"]["kernel"] ** 2)) for i in range(1, 6))
  assert float(models.conv_kernel_l2(params)) == pytest.approx(expected, rel=1e-5)
  ae = train.make_autoencoder(config, (28, 28, 1))
  ae_params = ae.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  kernels = [v["kernel"] for v in ae_params["params"].values()]
  assert float(models.conv_kernel_l2(ae_params)) == pytest.approx(
      sum(float(jnp.sum(k ** 2)) for k in kernels), rel=1e-5)


def test_cpu_and_paper_widths_are_alexnet_order():
  paper = configs.get_preset("paper").model
  assert tuple(paper.conv_features) == (96, 256, 384, 384, 256)
  assert tuple(paper.dense_features) == (4096, 4096)
  net = train.make_classifier(configs.get_preset("cpu"))
  params = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)), method=net.init_all)
  # Pinned so that a change of the cpu network is a deliberate one (BUILD_NOTES layer table).
  assert sum(x.size for x in jax.tree.leaves(params)) == 95_042
