"""A model's codes, for the figures and downstream tasks: one member's parameters, encoding
and decoding through the objective, traversal codes, KL per latent, latent-vs-factor
means and the MI table between latents and factors.

The arrays behind every figure live here, apart from the drawing (vae_jax.plotting) and
the figure files (vae_jax.figures), so tests check the numbers that go into a figure.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import evaluate, evaluation, losses, models, parallel
from vae_jax.data import holdout as holdout_lib
from vae_jax.data.grid import FactorDataset, index_to_factors
from vae_jax.evaluation import encode as encode_lib

TRAVERSAL_LIMIT = 3.0
TRAVERSAL_STEPS = 9
MIG_SAMPLES = 10_000  # Evaluation points of the MI estimate when no `mi` is given.
ENCODE_BATCH = 1024

# ---------------------------------------------------------------------------
# Members, encoding and decoding.


def member_params(params: Any, member: int) -> Any:
  """One member's parameters (no ensemble axis) from params with a leading ensemble axis."""
  return jax.tree.map(lambda p: p[member], params)


def num_members(params: Any) -> int:
  """Size of the leading ensemble axis of `params`."""
  return int(jax.tree.leaves(params)[0].shape[0])


@functools.lru_cache(maxsize=16)
def member_encoder(model: models.VAE, objective) -> Callable:
  """jit((params, x [B, H, W, C]) -> (mean, log_var) [B, K]): the objective's encoder for one member."""
  return jax.jit(functools.partial(objective.encode, model.apply))


@functools.lru_cache(maxsize=16)
def _decode_fn(model: models.VAE, likelihood: str):
  """jit((params, z) -> the images in [0, 1] decoder outputs stand for: σ(logits) (Bernoulli), clipped means)."""

  def decode(params, z):
    decoded = model.apply({"params": params}, z, method="decode")
    return jax.nn.sigmoid(decoded) if likelihood == "bernoulli" else jnp.clip(decoded, 0.0, 1.0)

  return jax.jit(decode)


def _padded(x: np.ndarray) -> np.ndarray:
  """x [n, ...] zero-padded to the next power of two ≥ 16 rows (few shapes, few compilations)."""
  size = max(16, 1 << max(len(x) - 1, 0).bit_length())
  return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)]) if size > len(x) else x


def decode_images(model: models.VAE, params: Any, z: np.ndarray, likelihood: str = "bernoulli",
                  *, batch_size: int = 1024) -> np.ndarray:
  """Decoder means [n, H, W, C] float32 in [0, 1] of codes z [n, K]; params of one member."""
  z = np.asarray(z, np.float32)
  if z.ndim != 2:
    raise ValueError(f"codes must be [n, K], got shape {z.shape}")
  fn = _decode_fn(model, likelihood)
  out = [np.asarray(fn(params, _padded(z[i:i + batch_size])))[:len(z[i:i + batch_size])]
         for i in range(0, len(z), batch_size)]
  return np.concatenate(out) if out else np.zeros((0, *model.decoder.image_shape), np.float32)


def encode_images(encoder: Callable, params: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Posterior (mean, log_var), each [n, K], of a few images x [n, H, W, C] (`member_encoder`, one member)."""
  x = np.asarray(x, np.float32)
  mean, log_var = encoder(params, _padded(x))
  return np.asarray(mean)[:len(x)], np.asarray(log_var)[:len(x)]


def encode_member(encoder: Callable, params: Any, member: int, dataset, indices: np.ndarray,
                  mesh=None) -> tuple[np.ndarray, np.ndarray]:
  """Member `member`'s posterior (mean, log_var) [n, K] of full-grid images `indices` [n] (params [S, ...])."""
  one = jax.tree.map(lambda p: p[member:member + 1], params)
  means, log_vars = encode_lib.encode_dataset(encoder, one, holdout_lib.full_grid(dataset),
                                              mesh if mesh is not None else parallel.create_mesh(), indices=indices,
                                              batch_size=ENCODE_BATCH, progress=False)
  return means[0], log_vars[0]


# ---------------------------------------------------------------------------
# The arrays behind the figures.


def kl_per_latent(means: np.ndarray, log_vars: np.ndarray) -> np.ndarray:
  """Average KL(q(z_k | x) || N(0, 1)) in nats [K] over the images of means, log_vars [N, K]."""
  kl = losses.gaussian_kl_per_latent(jnp.asarray(means, jnp.float32), jnp.asarray(log_vars, jnp.float32))
  return np.mean(np.asarray(kl, np.float64), axis=0)


def latent_order_by_kl(kl: np.ndarray) -> np.ndarray:
  """Latent indices [K] sorted by decreasing KL (ties by index)."""
  return np.argsort(-np.asarray(kl), kind="stable")


def traversal_values(num: int = TRAVERSAL_STEPS, limit: float = TRAVERSAL_LIMIT) -> np.ndarray:
  """The traversal's latent values [num], evenly spaced over [−limit, +limit]."""
  return np.linspace(-limit, limit, num)


def traversal_codes(z0: np.ndarray, latent_order: Sequence[int], values: np.ndarray) -> np.ndarray:
  """Codes [R, C, K]: row r is z0 [K] with latent latent_order[r] set to values[c] in column c."""
  z0 = np.asarray(z0, np.float32)
  order = np.asarray(latent_order, np.int64)
  values = np.asarray(values, np.float32)
  codes = np.broadcast_to(z0, (len(order), len(values), z0.shape[0])).copy()
  codes[np.arange(len(order)), :, order] = values  # Row r, every column, latent order[r].
  return codes


def traversal_images(model: models.VAE, params: Any, z0: np.ndarray, latent_order: Sequence[int],
                     values: np.ndarray, likelihood: str = "bernoulli") -> np.ndarray:
  """Decoded traversal [R, C, H, W, ch] in [0, 1] of `traversal_codes(z0, latent_order, values)`."""
  codes = traversal_codes(z0, latent_order, values)
  r, c, k = codes.shape
  images = decode_images(model, params, codes.reshape(r * c, k), likelihood)
  return images.reshape(r, c, *images.shape[1:])


def latent_factor_means(means: np.ndarray, factor_indices: np.ndarray, factor: int, num_values: int,
                        group: int | None = None, num_groups: int = 1) -> np.ndarray:
  """Mean posterior mean of each latent per value of `factor` (and of `group`): [G, V, K].

  Averages over all images with that value (over the other factors when the images form
  a grid); NaN where no image has the value. means [N, K]; factor_indices [N, F];
  num_values: the factor's V; group: an optional factor splitting the curves (G = num_groups).
  """
  means = np.asarray(means, np.float64)
  v = np.asarray(factor_indices)[:, factor]
  g = np.zeros_like(v) if group is None else np.asarray(factor_indices)[:, group]
  cell = g * num_values + v
  counts = np.bincount(cell, minlength=num_groups * num_values).astype(np.float64)
  sums = np.stack([np.bincount(cell, means[:, k], minlength=num_groups * num_values)
                   for k in range(means.shape[1])], axis=-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    out = sums / counts[:, None]
  return out.reshape(num_groups, num_values, means.shape[1])


def best_factor_per_latent(mi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """For mi [F, K]: the row (factor) of each latent's largest MI [K], and that MI [K]."""
  mi = np.asarray(mi, np.float64)
  return np.argmax(mi, axis=0), np.max(mi, axis=0)


def grid_shape_of(indices: np.ndarray, factor_sizes: Sequence[int]) -> tuple[int, ...]:
  """The sizes of the sub-grid that flat indices [N] (in row-major order) span; ValueError if not a sub-grid."""
  factors = index_to_factors(indices, factor_sizes)
  sizes = tuple(len(np.unique(factors[:, f])) for f in range(len(factor_sizes)))
  if int(np.prod(sizes)) != len(indices) or np.any(np.diff(np.asarray(indices)) <= 0):
    raise ValueError(f"The {len(indices)} indices are not a sub-grid in row-major order (they span {sizes}); "
                     "pass the posteriors of a grid (e.g. vae_jax.evaluation.encode.subgrid_indices).")
  return sizes


class Posteriors(NamedTuple):
  """One member's means, log_vars [N, K] of the full-grid images indices [N] (a sub-grid where there are factors)."""

  means: np.ndarray
  log_vars: np.ndarray
  indices: np.ndarray
  note: str  # What they cover, for titles: "the whole grid", "a sub-grid of 600 images", ...


def figure_indices(dataset, subset_images: int, seed: int) -> np.ndarray:
  """The images to encode for the figures: the evaluation sub-grid of at most `subset_images`,
  or (a dataset without factors) that many random images."""
  grid = holdout_lib.full_grid(dataset)
  if grid.factor_names:
    return evaluate.evaluated_indices(grid.factor_sizes, False, subset_images)[0]
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(len(grid), size=min(len(grid), subset_images), replace=False))


def member_posteriors(encoder: Callable, params: Any, member: int, dataset, *, means=None, log_vars=None,
                      indices=None, subset_images: int = 12_000, seed: int = 0) -> Posteriors:
  """The caller's posteriors (indices default to the whole grid), or those of `figure_indices` encoded here."""
  grid = holdout_lib.full_grid(dataset)
  if means is None:
    indices = figure_indices(dataset, subset_images, seed)
    means, log_vars = encode_member(encoder, params, member, dataset, indices)
  means, log_vars = np.asarray(means), np.asarray(log_vars)
  indices = np.arange(len(grid)) if indices is None else np.asarray(indices)
  if means.shape != log_vars.shape or means.shape[0] != len(indices):
    raise ValueError(f"means {means.shape} and log_vars {log_vars.shape} must both be [{len(indices)}, K].")
  if not grid.factor_names:
    return Posteriors(means, log_vars, indices, f"{len(indices):,} images")
  grid_shape_of(indices, grid.factor_sizes)
  note = "the whole grid" if len(indices) == len(grid) else f"a sub-grid of {len(indices):,} images"
  return Posteriors(means, log_vars, indices, note)


class MITable(NamedTuple):
  """Normalised MI [F', K] of some factors (rows, named) with every latent, and where it came from."""

  mi: np.ndarray
  factors: list[str]
  note: str


def mi_table(mi: np.ndarray | Mapping, dataset: FactorDataset) -> MITable:
  """An MITable of an array over every factor [F, K] or a metrics.json "mig" record {"mi", "factors", ...}."""
  if isinstance(mi, Mapping):
    return MITable(np.asarray(mi["mi"], np.float64), list(mi["factors"]), str(mi.get("estimator", "")) or "as given")
  mi = np.asarray(mi, np.float64)
  if mi.shape[0] != len(dataset.factor_names):
    raise ValueError(f"mi has {mi.shape[0]} rows; pass one per factor {dataset.factor_names} or a metrics "
                     "record {'mi': ..., 'factors': [names]}.")
  return MITable(mi, list(dataset.factor_names), "as given")


def estimate_mi(posteriors: Posteriors, dataset: FactorDataset, key: jax.Array) -> MITable:
  """Chen et al.'s sampling estimate of the MI of every factor varying in the posteriors' sub-grid."""
  sizes = grid_shape_of(posteriors.indices, dataset.factor_sizes)
  counted = tuple(f for f, s in enumerate(sizes) if s > 1)
  chen = evaluation.mig(posteriors.means, posteriors.log_vars, sizes, num_samples=MIG_SAMPLES, factors=counted,
                        key=key)
  return MITable(np.asarray(chen["mi"]), [dataset.factor_names[f] for f in counted],
                 f"{chen['estimator']} on {posteriors.note}")


