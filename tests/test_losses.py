"""The objectives against an independent NumPy implementation, identities and known biases."""

import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy.special import logsumexp

from vae_jax import losses, objectives


# ---------------------------------------------------------------------------
# Independent NumPy reference (loops over pairs and dimensions; no vectorised tricks).
def np_log_normal(x, mean, log_var):
  return -0.5 * (np.log(2 * np.pi) + log_var + (x - mean) ** 2 / np.exp(log_var))


def np_tc_terms(z, mean, log_var, n, estimator):
  b, k = z.shape
  out = {name: np.zeros(b) for name in ("log_qz_given_x", "log_qz", "log_prod_qzi", "log_pz")}
  m = b - 1
  for i in range(b):
    if estimator == "mws":
      weights = np.full(b, 1.0 / (b * n))
    else:
      weights = np.full(b, 1.0 / m)
      weights[i] = 1.0 / n
      weights[(i + 1) % b] = (n - m) / (n * m)
    log_q_joint = [sum(np_log_normal(z[i, d], mean[j, d], log_var[j, d]) for d in range(k)) for j in range(b)]
    out["log_qz"][i] = logsumexp(np.array(log_q_joint), b=weights)
    out["log_prod_qzi"][i] = sum(
        logsumexp(np.array([np_log_normal(z[i, d], mean[j, d], log_var[j, d]) for j in range(b)]), b=weights)
        for d in range(k))
    out["log_qz_given_x"][i] = np_log_normal(z[i], mean[i], log_var[i]).sum()
    out["log_pz"][i] = np_log_normal(z[i], 0.0, 0.0).sum()
  return out


def np_objective(logits, x, mean, log_var, z, kind, alpha, beta, gamma, n, estimator):
  b = x.shape[0]
  p = 1 / (1 + np.exp(-logits))
  log_px = (x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(b, -1).sum(1)
  kl = np.array([sum(0.5 * (np.exp(lv) + mu ** 2 - 1 - lv) for mu, lv in zip(mean[i], log_var[i])) for i in range(b)])
  t = np_tc_terms(z, mean, log_var, n, estimator)
  mi, tc = t["log_qz_given_x"] - t["log_qz"], t["log_qz"] - t["log_prod_qzi"]
  dwkl = t["log_prod_qzi"] - t["log_pz"]
  if kind == "ae":
    per = ((p - x) ** 2).reshape(b, -1).sum(1)
  elif kind == "vae":
    per = -log_px + kl
  elif kind == "betavae":
    per = -log_px + beta * kl
  else:
    per = -log_px + alpha * mi + beta * tc + gamma * dwkl
  return per.mean(), dict(reconstruction=-log_px.mean(), kl=kl.mean(), mi=mi.mean(), tc=tc.mean(),
                          dimwise_kl=dwkl.mean(), elbo=(log_px - kl).mean())


def random_batch(seed, b=7, k=3, shape=(4, 4, 1)):
  rng = np.random.default_rng(seed)
  mean = rng.normal(size=(b, k))
  log_var = rng.normal(scale=0.5, size=(b, k)) - 1.0
  z = mean + np.exp(0.5 * log_var) * rng.normal(size=(b, k))
  logits = rng.normal(size=(b, *shape))
  x = (rng.uniform(size=(b, *shape)) > 0.5).astype(np.float64)
  return mean, log_var, z, logits, x


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_tc_terms_match_numpy(estimator):
  mean, log_var, z, _, _ = random_batch(0)
  n = 1000
  got = losses.tc_terms(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_var), n, estimator)
  want = np_tc_terms(z, mean, log_var, n, estimator)
  for name in want:
    np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_mss_weights_rows_sum_to_one_and_stratify():
  b, n = 6, 100
  w = np.exp(np.asarray(losses._mss_log_weights(b, n)))
  np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
  m = b - 1
  for i in range(b):
    assert w[i, i] == pytest.approx(1 / n)
    assert w[i, (i + 1) % b] == pytest.approx((n - m) / (n * m))
  # Not the authors' column-filled matrix: the (N-M)/(NM) entries are spread over columns.
  assert len({int(np.argmin(np.abs(w[i] - (n - m) / (n * m)))) for i in range(b)}) == b


@pytest.mark.parametrize("kind,estimator", list(itertools.product(("ae", "vae", "betavae", "betatcvae"),
                                                                   losses.ESTIMATORS)))
def test_objective_matches_numpy(kind, estimator):
  """Each objective module's loss and reported terms against a NumPy reference."""
  mean, log_var, z, logits, x = random_batch(1)
  alpha, beta, gamma, n = 0.7, 4.0, 1.3, 5000
  outputs = dict(mean=jnp.asarray(mean), log_var=jnp.asarray(log_var), z=jnp.asarray(z), decoded=jnp.asarray(logits))
  loss_config = ml_collections.ConfigDict(dict(likelihood="bernoulli", estimator=estimator))
  objective = objectives.get(kind)(loss_config, n)
  hparams = {k: v for k, v in dict(alpha=alpha, beta=beta, gamma=gamma).items() if k in objective.HPARAMS}
  loss, metrics = objective.vae_loss(outputs, jnp.asarray(x), hparams, jnp.asarray(0))
  want_loss, want_metrics = np_objective(logits, x, mean, log_var, z, kind, alpha, beta, gamma, n, estimator)
  assert float(loss) == pytest.approx(want_loss, rel=1e-4, abs=1e-4)
  for name, value in want_metrics.items():
    assert float(metrics[name]) == pytest.approx(value, rel=1e-4, abs=1e-4), name


def test_gaussian_likelihood_matches_numpy():
  rng = np.random.default_rng(2)
  mu, x = rng.normal(size=(3, 5, 5, 2)), rng.uniform(size=(3, 5, 5, 2))
  got = losses.gaussian_log_likelihood(jnp.asarray(mu), jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(got), np_log_normal(x, mu, 0.0).reshape(3, -1).sum(1), rtol=1e-5)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_decomposition_adds_up_to_single_sample_kl(estimator):
  mean, log_var, z, _, _ = random_batch(3, b=16, k=5)
  terms = losses.tc_terms(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_var), 737280, estimator)
  parts = losses.decomposition(terms)
  total = parts["mi"] + parts["tc"] + parts["dimwise_kl"]
  want = np_log_normal(z, mean, log_var).sum(1) - np_log_normal(z, 0.0, 0.0).sum(1)
  np.testing.assert_allclose(np.asarray(total), want, rtol=1e-4, atol=1e-4)


def test_single_sample_kl_averages_to_analytic_kl():
  rng = np.random.default_rng(4)
  mean, log_var = rng.normal(size=(1, 3)), rng.normal(size=(1, 3)) * 0.3
  keys = jax.random.split(jax.random.PRNGKey(0), 20000)
  z = jax.vmap(lambda k: losses.reparameterize(k, jnp.asarray(mean[0]), jnp.asarray(log_var[0])))(keys)
  mc = np.mean(np_log_normal(np.asarray(z), mean, log_var).sum(1) - np_log_normal(np.asarray(z), 0.0, 0.0).sum(1))
  analytic = float(losses.gaussian_kl(jnp.asarray(mean), jnp.asarray(log_var))[0])
  assert mc == pytest.approx(analytic, abs=0.05)


def test_mss_is_unbiased_and_mws_is_not():
  """On N = 50 posteriors, average the estimates of q(z_0) over many random batches."""
  rng = np.random.default_rng(5)
  n, b, k, trials = 50, 10, 2, 4000
  mean = rng.normal(size=(n, k)).astype(np.float32)
  log_var = (rng.normal(size=(n, k)) * 0.3 - 1.0).astype(np.float32)
  z0 = (mean[0] + np.exp(0.5 * log_var[0]) * rng.normal(size=k)).astype(np.float32)
  exact_log_qz = logsumexp(np_log_normal(z0, mean, log_var).sum(1)) - np.log(n)

  # MSS: z_0 comes from x_0 at batch position 0; the other B - 1 are drawn without
  # replacement from the rest of the dataset.
  others = np.stack([rng.choice(np.arange(1, n), size=b - 1, replace=False) for _ in range(trials)])
  idx = np.concatenate([np.zeros((trials, 1), int), others], axis=1)
  # MWS: the whole batch is drawn uniformly with replacement, x_0 at position 0.
  idx_mws = np.concatenate([np.zeros((trials, 1), int), rng.integers(0, n, size=(trials, b - 1))], axis=1)

  def estimate(indices, estimator):
    def one(ix):
      zb = jnp.asarray(np.broadcast_to(z0, (b, k)))  # Only row 0 is read below.
      return losses.tc_terms(zb, jnp.asarray(mean)[ix], jnp.asarray(log_var)[ix], n, estimator)["log_qz"][0]
    return np.asarray(jax.vmap(one)(jnp.asarray(indices)))

  log_qz_mss = estimate(idx, "mss")
  log_qz_mws = estimate(idx_mws, "mws")
  # The estimator is unbiased for q(z): compare the mean of exp(estimate) with the exact mixture.
  mean_q = np.mean(np.exp(log_qz_mss))
  stderr = np.std(np.exp(log_qz_mss)) / math.sqrt(trials)
  assert abs(mean_q - np.exp(exact_log_qz)) < 4 * stderr + 1e-6
  assert np.log(mean_q) == pytest.approx(exact_log_qz, abs=0.05)
  # MWS normalises the batch sum by B·N: its expectation is (q(z|x_0) + (B-1)·q(z)) / (B·N),
  # far below q(z) (by about log N here).
  q_own = np.exp(np_log_normal(z0, mean[0], log_var[0]).sum())
  expected_mws = np.log((q_own + (b - 1) * np.exp(exact_log_qz)) / (b * n))
  assert np.log(np.mean(np.exp(log_qz_mws))) == pytest.approx(expected_mws, abs=0.05)
  assert expected_mws - exact_log_qz < -np.log(n) / 2


def test_unknown_names_raise():
  z = jnp.zeros((4, 2))
  with pytest.raises(ValueError, match="estimator"):
    losses.tc_terms(z, z, z, 10, "bogus")
  with pytest.raises(ValueError, match="likelihood"):
    losses.reconstruction_log_likelihood(dict(decoded=z), z, "bogus")
