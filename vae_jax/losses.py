"""Pure loss terms: likelihoods, KL, the total-correlation estimators, reported terms.

The objectives (vae_jax.objectives) combine these into their losses. Every step
reports the reconstruction term, the KL, its β-TCVAE decomposition into index-code
MI, total correlation (TC) and dimension-wise KL, and the ELBO, whatever the
objective optimised (`batch_terms`), so runs with different objectives compare.

The MI/TC/dimension-wise KL reported during training are minibatch estimates (see
`tc_terms`); report the full-dataset decomposition from `vae_jax.evaluation` for a
trained model.
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp

from vae_jax.densities import LOG_2PI, log_normal, log_standard_normal  # noqa: F401  (re-exported: public API)


ESTIMATORS = ("mws", "mss")
LIKELIHOODS = ("bernoulli", "gaussian")


def reparameterize(rng: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """One sample z = μ + σ·ε, σ = exp(½ log σ²), ε ~ N(0, I); shapes [..., K]."""
  eps = jax.random.normal(rng, mean.shape, mean.dtype)
  return mean + jnp.exp(0.5 * log_var) * eps


def gaussian_kl_per_latent(mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """Analytic KL(N(mean, exp(log_var)) || N(0, 1)) per example and latent: [B, K] -> [B, K]."""
  return 0.5 * (jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var)


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """Analytic KL(N(mean, exp(log_var)) || N(0, I)) per example: [B, K] -> [B]."""
  return 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var, axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x | logits) per example for x in [0, 1]: [B, ...] -> [B].

  The cross-entropy form x·log σ(l) + (1−x)·log(1−σ(l)) = x·l − softplus(l), which
  is also the right objective for grey-level targets.
  """
  ll = x * logits - jax.nn.softplus(logits)
  return jnp.sum(ll.reshape(ll.shape[0], -1), axis=-1)


def gaussian_log_likelihood(mean: jax.Array, x: jax.Array, log_var: float = 0.0) -> jax.Array:
  """log N(x; mean, exp(log_var)·I) per example: [B, ...] -> [B]."""
  ll = log_normal(x, mean, jnp.asarray(log_var, mean.dtype))
  return jnp.sum(ll.reshape(ll.shape[0], -1), axis=-1)


def _mss_log_weights(batch_size: int, dataset_size: int) -> jax.Array:
  """log W [B, B] of minibatch-stratified sampling (Chen et al., 2018, eq. S6).

  Row i weighs the batch's posteriors when estimating q(z_i): 1/N for j = i (the
  example z_i came from), (N − M)/(N·M) for j = (i + 1) mod B (the stratum the
  missing dataset mass is assigned to), 1/M elsewhere, M = B − 1. Each row sums to 1.
  The authors' code sets a column instead of this diagonal structure; that weighs
  the wrong pairs.
  """
  b, n = batch_size, float(dataset_size)
  m = b - 1
  w = jnp.full((b, b), 1.0 / m)
  idx = jnp.arange(b)
  w = w.at[idx, idx].set(1.0 / n)
  w = w.at[idx, (idx + 1) % b].set((n - m) / (n * m))
  return jnp.log(w)


def tc_terms(
    z: jax.Array,
    mean: jax.Array,
    log_var: jax.Array,
    dataset_size: int,
    estimator: str = "mws",
) -> dict[str, jax.Array]:
  """Minibatch estimates of the densities behind the β-TCVAE decomposition.

  With L[i, j, d] = log q(z_i,d | x_j) over the batch:
    MWS: log q(z_i) = logsumexp_j Σ_d L[i,j,d] − log(B·N),
         log Π_d q(z_i,d) = Σ_d (logsumexp_j L[i,j,d] − log(B·N)).
    MSS: the same with the stratified weights of `_mss_log_weights` added to L
         (an unbiased estimate of q(z_i)).

  Args:
    z: samples [B, K], z_i ~ q(z | x_i).
    mean, log_var: posterior parameters [B, K].
    dataset_size: N, the size of the dataset the batch was drawn from.
    estimator: "mws" (minibatch weighted sampling) or "mss" (minibatch stratified).

  Returns:
    Per-example arrays [B]: log_qz_given_x = log q(z_i | x_i), log_qz, log_prod_qzi,
    log_pz = log N(z_i; 0, I).
  """
  if estimator not in ESTIMATORS:
    raise ValueError(f"Unknown TC estimator {estimator!r}; use one of {ESTIMATORS}.")
  b = z.shape[0]
  pairwise = log_normal(z[:, None, :], mean[None, :, :], log_var[None, :, :])  # [B, B, K]
  log_qz_given_x = jnp.sum(jnp.diagonal(pairwise, axis1=0, axis2=1).T, axis=-1)
  if estimator == "mws":
    log_norm = math.log(b * dataset_size)
    log_qz = jax.nn.logsumexp(jnp.sum(pairwise, axis=-1), axis=1) - log_norm
    log_prod_qzi = jnp.sum(jax.nn.logsumexp(pairwise, axis=1) - log_norm, axis=-1)
  else:
    log_w = _mss_log_weights(b, dataset_size).astype(z.dtype)
    log_qz = jax.nn.logsumexp(jnp.sum(pairwise, axis=-1) + log_w, axis=1)
    log_prod_qzi = jnp.sum(jax.nn.logsumexp(pairwise + log_w[:, :, None], axis=1), axis=-1)
  log_pz = jnp.sum(log_standard_normal(z), axis=-1)
  return dict(log_qz_given_x=log_qz_given_x, log_qz=log_qz, log_prod_qzi=log_prod_qzi, log_pz=log_pz)


def decomposition(terms: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """Per-example MI, TC and dimension-wise KL [B] from `tc_terms`' densities.

  They add up to the single-sample KL log q(z|x) − log p(z).
  """
  return dict(
      mi=terms["log_qz_given_x"] - terms["log_qz"],
      tc=terms["log_qz"] - terms["log_prod_qzi"],
      dimwise_kl=terms["log_prod_qzi"] - terms["log_pz"],
  )


def reconstruction_log_likelihood(outputs: Mapping[str, jax.Array], x: jax.Array, likelihood: str) -> jax.Array:
  """log p(x | z) per example [B] for the decoder output `outputs["decoded"]`."""
  if likelihood == "bernoulli":
    return bernoulli_log_likelihood(outputs["decoded"], x)
  if likelihood == "gaussian":
    return gaussian_log_likelihood(outputs["decoded"], x)
  raise ValueError(f"Unknown likelihood {likelihood!r}; use one of {LIKELIHOODS}.")


def batch_terms(
    outputs: Mapping[str, jax.Array],
    x: jax.Array,
    *,
    likelihood: str,
    dataset_size: int,
    estimator: str = "mws",
) -> dict[str, jax.Array]:
  """Per-example terms [B] every objective reports, from the VAE's outputs on batch x.

  outputs: "mean", "log_var", "z" [B, K] and "decoded" [B, H, W, C] (logits for the
  Bernoulli likelihood, means for the Gaussian). Returns log_px_z = log p(x|z),
  reconstruction (−log p(x|z)), kl (analytic), elbo (log p(x|z) − kl) and the
  minibatch estimates mi, tc, dimwise_kl of `tc_terms` with `estimator`.
  """
  mean, log_var, z = outputs["mean"], outputs["log_var"], outputs["z"]
  log_px_z = reconstruction_log_likelihood(outputs, x, likelihood)
  kl = gaussian_kl(mean, log_var)
  parts = decomposition(tc_terms(z, mean, log_var, dataset_size, estimator))
  return dict(log_px_z=log_px_z, reconstruction=-log_px_z, kl=kl, elbo=log_px_z - kl, **parts)


def batch_means(per_example_loss: jax.Array, terms: Mapping[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(loss, metrics): the batch means of a per-example loss [B] and of the reported terms [B].

  log_px_z is left out of the metrics (it is −reconstruction); metrics["loss"] is the loss.
  """
  metrics = {k: jnp.mean(v) for k, v in terms.items() if k != "log_px_z"}
  loss = jnp.mean(per_example_loss)
  metrics["loss"] = loss
  return loss, metrics
