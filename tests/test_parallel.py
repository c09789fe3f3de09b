"""Tests for vae_jax.parallel: the mesh, batch assembly and the ensemble map."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import parallel


def _two_layer(params, x):
  """A tiny network whose products vmap turns into batched matmuls."""
  h = jnp.tanh(x @ params["w1"])
  return {"out": h @ params["w2"], "norm": jnp.sum(params["w1"] ** 2)}


def _params(num_members, seed=0):
  rng = np.random.default_rng(seed)
  return {"w1": jnp.asarray(rng.normal(size=(num_members, 5, 7)), jnp.float32),
          "w2": jnp.asarray(rng.normal(size=(num_members, 7, 3)), jnp.float32)}


@pytest.mark.parametrize("num_members", [1, 3])
def test_vmap_members_matches_a_loop_over_members(num_members):
  params = _params(num_members)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 5)), jnp.float32)
  got = parallel.vmap_members(_two_layer, in_axes=(0, None))(params, x)
  for m in range(num_members):
    want = _two_layer(jax.tree.map(lambda a: a[m], params), x)
    np.testing.assert_allclose(got["out"][m], want["out"], rtol=1e-6)
    np.testing.assert_allclose(got["norm"][m], want["norm"], rtol=1e-6)
  assert got["out"].shape == (num_members, 4, 3) and got["norm"].shape == (num_members,)


def _dot_batch_dims(fn, *args):
  eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns
  return [e.params["dimension_numbers"][1][0] for e in eqns if e.primitive.name == "dot_general"]


def test_vmap_members_uses_plain_products_for_one_member():
  x = jnp.ones((2, 4, 5), jnp.float32)  # Per-member inputs (in_axis 0).
  one = _dot_batch_dims(parallel.vmap_members(_two_layer), _params(1), x[:1])
  many = _dot_batch_dims(parallel.vmap_members(_two_layer), _params(2), x)
  assert one and all(batch_dims == () for batch_dims in one)
  assert all(batch_dims != () for batch_dims in many)
