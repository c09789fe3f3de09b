"""Gaussian log-densities shared by the objectives and the evaluation metrics.

The one definition of log 2π and of the diagonal-Gaussian log-density in vae_jax.
They work on NumPy arrays (computed in NumPy, keeping float64) and on JAX arrays or
tracers (computed in jax.numpy), so host-side metrics and jitted losses share them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

LOG_2PI = math.log(2.0 * math.pi)


def _array_module(*arrays):
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def log_normal(x, mean, log_var):
  """Elementwise log N(x; mean, exp(log_var)); broadcasts its arguments.

  NumPy in, NumPy out (same dtype rules as NumPy); any JAX array in, JAX out.
  """
  xp = _array_module(x, mean, log_var)
  return -0.5 * (LOG_2PI + log_var + xp.square(x - mean) * xp.exp(-log_var))


def log_standard_normal(x):
  """Elementwise log N(x; 0, 1), for NumPy or JAX arrays."""
  xp = _array_module(x)
  return -0.5 * (LOG_2PI + xp.square(x))
