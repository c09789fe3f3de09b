"""The BetaVAE score (Higgins et al., "β-VAE: Learning basic visual concepts with a constrained
variational framework", ICLR 2017), by disentanglement_lib's protocol (`beta_vae_sklearn`).

One training point: pick a factor k uniformly among the scored factors; draw `batch_size`
pairs of grid rows that share factor k's value (all other factors uniform); the point's
features are the mean over the batch of |z(a) - z(b)| [K] and its label is k. A linear
classifier (scikit-learn LogisticRegression, as disentanglement_lib) is fitted on the
training points; the score ("value") is its accuracy on independently drawn eval points.
Chance is 1 / (number of scored factors).

Defaults (disentanglement_lib's unsupervised_study_v1 config): batch_size 64, 10,000 train
and 5,000 eval points. Eval settings read with defaults (the config may add them):
`score_batch_size` (64), `score_train_points` (10,000), `score_test_points` (5,000).
The classifier is scikit-learn's current LogisticRegression (lbfgs, multinomial, C = 1)
with max_iter 1000 instead of 100, so that lbfgs converges on the unscaled features;
disentanglement_lib ran under scikit-learn 0.2x, whose default was liblinear one-vs-rest.

"Sampling a batch with factor k fixed" chooses rows of the evaluated grid: the codes of
every grid point are in ctx.posterior.mean, so nothing is re-encoded (disentanglement_lib
encodes freshly rendered images, which for a deterministic encoder is the same thing).

This module also holds the sampling helpers the suite shares (factor_vae_score, dci, sap,
modularity_explicitness, unsupervised): `metric_rng`, `setting`, `scored_factors`,
`coordinate`/`set_coordinate` (row-major grid arithmetic) and `train_test_points`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.metrics.base import MetricContext

SALT = 1  # This metric's generator: fold_in(ctx.key, SALT).
BATCH_SIZE = 64
NUM_TRAIN = 10_000
NUM_TEST = 5_000
MAX_ITER = 1000
CHUNK = 512  # Points whose [batch, K] code arrays are gathered at once.


# ---------------------------------------------------------------------------
# Shared by the metric suite.


# eval.* settings this metric reads (config keys through vae_jax.metrics.all_settings).
SETTINGS = {"score_batch_size": BATCH_SIZE, "score_train_points": NUM_TRAIN, "score_test_points": NUM_TEST}

def metric_rng(key: jax.Array, salt: int) -> np.random.Generator:
  """A NumPy generator seeded from fold_in(key, salt); key raw ([2] uint32) or typed."""
  key = jax.random.fold_in(key, salt)
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.random.default_rng(np.asarray(key, np.uint32).ravel().tolist())


def setting(ctx: MetricContext, name: str, default):
  """The eval setting `name`, or `default` where the config does not define it."""
  return ctx.settings.get(name, default)


def scored_factors(ctx: MetricContext) -> tuple[int, ...]:
  """Indices of the factors the supervised scores use: every factor with more than one value in
  the evaluated grid that is not a nuisance factor (as disentanglement_lib leaves SmallNORB's
  instance out). ValueError if there are none."""
  nuisance = set(getattr(ctx.dataset, "nuisance_factors", ()))
  out = tuple(f for f, (name, size) in enumerate(zip(ctx.dataset.factor_names, ctx.posterior.grid_sizes))
              if size > 1 and name not in nuisance)
  if not out:
    raise ValueError("No factor varies over the evaluated grid; the supervised scores need at least one.")
  return out


def grid_strides(grid_sizes) -> np.ndarray:
  """Row-major strides [F] of a grid of sizes [F] (the last factor varies fastest)."""
  sizes = np.asarray(grid_sizes, np.int64)
  return np.append(np.cumprod(sizes[::-1])[::-1][1:], 1).astype(np.int64)


def coordinate(rows: np.ndarray, grid_sizes, factor) -> np.ndarray:
  """Factor `factor`'s index in the evaluated grid of each row: rows [...] and factor (int or
  broadcastable [...]) -> [...]."""
  sizes = np.asarray(grid_sizes, np.int64)
  return (rows // grid_strides(sizes)[factor]) % sizes[factor]


def set_coordinate(rows: np.ndarray, grid_sizes, factor, values) -> np.ndarray:
  """Rows [...] of the evaluated grid with factor `factor` (int or broadcastable) set to `values`
  (broadcastable), every other factor kept."""
  return rows + (values - coordinate(rows, grid_sizes, factor)) * grid_strides(grid_sizes)[factor]


def labelled_points(ctx: MetricContext, rows: np.ndarray, factors) -> tuple[np.ndarray, np.ndarray]:
  """(codes [n, K] float64, factor indices [n, F'] int64 of `factors`) of the grid rows [n]."""
  return (np.asarray(ctx.posterior.mean[rows], np.float64),
          np.asarray(ctx.posterior.factors[rows][:, list(factors)], np.int64))


def train_test_points(ctx: MetricContext, rng: np.random.Generator, factors, num_train: int, num_test: int):
  """disentanglement_lib's generate_batch_factor_code, twice: i.i.d. uniform grid rows.

  Returns (x_train [num_train, K], y_train [num_train, F'], x_test [num_test, K],
  y_test [num_test, F'], test_in_train: the fraction of test rows that are also training
  rows, which is not small on a small grid since the protocol draws with replacement).
  """
  n = ctx.posterior.mean.shape[0]
  train, test = rng.integers(n, size=num_train), rng.integers(n, size=num_test)
  return (*labelled_points(ctx, train, factors), *labelled_points(ctx, test, factors),
          float(np.isin(test, train).mean()))


# ---------------------------------------------------------------------------
# The BetaVAE score.


def pair_features(codes: np.ndarray, grid_sizes, factors, rng: np.random.Generator, num_points: int,
                  batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """The protocol's points: (features [P, K], labels [P]).

  codes: [N, K] of the evaluated grid (row-major over grid_sizes); factors: the grid
  factors that may be fixed; label i means factors[i] was fixed. Features are
  mean_b |codes[a_b] - codes[b_b]| over batch_size pairs sharing that factor's value.
  """
  labels = rng.integers(len(factors), size=num_points)
  fixed = np.asarray(factors, np.int64)[labels][:, None]
  n = codes.shape[0]
  rows_a = rng.integers(n, size=(num_points, batch_size))
  rows_b = set_coordinate(rng.integers(n, size=(num_points, batch_size)), grid_sizes, fixed,
                          coordinate(rows_a, grid_sizes, fixed))
  features = np.empty((num_points, codes.shape[1]))
  for s in range(0, num_points, CHUNK):
    a = np.asarray(codes[rows_a[s:s + CHUNK]], np.float64)
    b = np.asarray(codes[rows_b[s:s + CHUNK]], np.float64)
    features[s:s + CHUNK] = np.abs(a - b).mean(axis=1)
  return features, labels


def compute(ctx: MetricContext) -> dict:
  """{"value" (eval accuracy), "train_accuracy", "eval_accuracy", "chance", "factors",
  "batch_size", "num_train", "num_eval", "classifier"}."""
  from sklearn.linear_model import LogisticRegression

  factors = scored_factors(ctx)
  if len(factors) < 2:
    raise ValueError("The BetaVAE score classifies which factor was fixed; it needs two varying factors.")
  rng = metric_rng(ctx.key, SALT)
  batch = int(setting(ctx, "score_batch_size", BATCH_SIZE))
  num_train = int(setting(ctx, "score_train_points", NUM_TRAIN))
  num_eval = int(setting(ctx, "score_test_points", NUM_TEST))
  p = ctx.posterior
  x_train, y_train = pair_features(p.mean, p.grid_sizes, factors, rng, num_train, batch)
  x_eval, y_eval = pair_features(p.mean, p.grid_sizes, factors, rng, num_eval, batch)
  model = LogisticRegression(max_iter=MAX_ITER).fit(x_train, y_train)
  eval_accuracy = float(model.score(x_eval, y_eval))
  return {
      "value": eval_accuracy,
      "train_accuracy": float(model.score(x_train, y_train)),
      "eval_accuracy": eval_accuracy,
      "chance": 1.0 / len(factors),
      "factors": [ctx.dataset.factor_names[f] for f in factors],
      "batch_size": batch,
      "num_train": num_train,
      "num_eval": num_eval,
      "classifier": f"sklearn LogisticRegression (lbfgs, C=1, max_iter={MAX_ITER})",
  }


def scalars(result: dict) -> dict[str, float]:
  """{"beta_vae_score": eval accuracy}."""
  return {"beta_vae_score": result["value"]}
