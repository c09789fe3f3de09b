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
  one = _dot_batch_dims(parallel.vmap_members(_two_layer, unroll=False), _params(1), x[:1])
  many = _dot_batch_dims(parallel.vmap_members(_two_layer, unroll=False), _params(2), x)
  assert one and all(batch_dims == () for batch_dims in one)
  assert all(batch_dims != () for batch_dims in many)


def test_vmap_members_unrolls_small_ensembles_on_cpu():
  assert jax.default_backend() == "cpu"
  x = jnp.ones((3, 4, 5), jnp.float32)
  unrolled = _dot_batch_dims(parallel.vmap_members(_two_layer), _params(3), x)
  assert len(unrolled) == 2 * 3 and all(batch_dims == () for batch_dims in unrolled)
  many = parallel.MAX_UNROLLED_MEMBERS + 1
  batched = _dot_batch_dims(parallel.vmap_members(_two_layer), _params(many), jnp.ones((many, 4, 5)))
  assert len(batched) == 2 and all(batch_dims != () for batch_dims in batched)


@pytest.mark.parametrize("unroll", [True, False])
def test_vmap_members_unrolled_and_batched_agree(unroll):
  params = _params(3, seed=2)
  x = jnp.asarray(np.random.default_rng(3).normal(size=(3, 4, 5)), jnp.float32)
  got = parallel.vmap_members(_two_layer, unroll=unroll)(params, x)
  want = jax.vmap(_two_layer)(params, x)
  np.testing.assert_allclose(got["out"], want["out"], rtol=1e-5)
  np.testing.assert_allclose(got["norm"], want["norm"], rtol=1e-5)


def test_vmap_members_rejects_mismatched_ensemble_sizes():
  with pytest.raises(ValueError, match="disagree"):
    parallel.vmap_members(_two_layer)(_params(2), jnp.ones((3, 4, 5)))

