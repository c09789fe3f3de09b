"""Straightforward scikit-learn/NumPy versions of the metric suite's protocols, for the timing table
of benchmarks/evaluation.py --suite (not tests; the tests check the metrics against known answers).

Each is written the way disentanglement_lib writes it: a Python loop per sampled point or pair,
sklearn.metrics.mutual_info_score per (code, factor) pair, one classifier per factor or code.
codes: [N, K] posterior means over the full grid in row-major order; sizes: the grid's factor
sizes; rng: a NumPy generator; n_train, n_test: the protocol's sample sizes.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.stats
from sklearn import ensemble, linear_model, metrics, model_selection, svm


def factors_of(rows, sizes):
  return np.stack(np.unravel_index(rows, sizes), 1)


def sample(codes, sizes, rng, n):
  rows = rng.integers(codes.shape[0], size=n)
  return codes[rows], factors_of(rows, sizes)


def discretize(x, bins=20):
  return np.stack([np.digitize(x[:, j], np.histogram(x[:, j], bins)[1][:-1]) for j in range(x.shape[1])], 1)


def mi_matrix(x, y, bins=20):
  """[K, F] MI (nats) with one sklearn mutual_info_score per pair."""
  d = discretize(x, bins)
  return np.array([[metrics.mutual_info_score(y[:, f], d[:, j]) for f in range(y.shape[1])] for j in range(d.shape[1])])


def entropies(y):
  return np.array([metrics.mutual_info_score(y[:, f], y[:, f]) for f in range(y.shape[1])])


def mig_histogram(codes, sizes, rng, n=10_000):
  x, y = sample(codes, sizes, rng, n)
  mi = mi_matrix(x, y) / entropies(y)
  s = np.sort(mi, axis=0)
  return float(np.mean(s[-1] - s[-2]))


def beta_vae(codes, sizes, rng, n_train=10_000, n_test=5_000, batch=64):
  def points(n):
    feats, labels = [], []
    for _ in range(n):
      k = rng.integers(len(sizes))
      a = np.stack([rng.integers(s, size=batch) for s in sizes], 1)
      b = np.stack([rng.integers(s, size=batch) for s in sizes], 1)
      b[:, k] = a[:, k]
      za, zb = codes[np.ravel_multi_index(a.T, sizes)], codes[np.ravel_multi_index(b.T, sizes)]
      feats.append(np.mean(np.abs(za - zb), 0))
      labels.append(k)
    return np.array(feats), np.array(labels)
  xt, yt = points(n_train)
  xe, ye = points(n_test)
  return float(linear_model.LogisticRegression(max_iter=1000).fit(xt, yt).score(xe, ye))


def factor_vae(codes, sizes, rng, n_train=10_000, n_test=5_000, batch=64):
  var = np.var(sample(codes, sizes, rng, 10_000)[0], axis=0, ddof=1)
  active = np.sqrt(var) >= 0.05

  def votes(n):
    v = np.zeros((codes.shape[1], len(sizes)), np.int64)
    for _ in range(n):
      k = rng.integers(len(sizes))
      f = np.stack([rng.integers(s, size=batch) for s in sizes], 1)
      f[:, k] = rng.integers(sizes[k])
      z = codes[np.ravel_multi_index(f.T, sizes)]
      d = np.flatnonzero(active)[np.argmin(np.var(z[:, active], axis=0, ddof=1) / var[active])]
      v[d, k] += 1
    return v
  train, test = votes(n_train), votes(n_test)
  return float(np.sum(test[np.arange(len(test)), np.argmax(train, 1)]) / np.sum(test))


def dci_gbt(codes, sizes, rng, n_train=10_000, n_test=5_000):
  xt, yt = sample(codes, sizes, rng, n_train)
  xe, ye = sample(codes, sizes, rng, n_test)
  r = np.zeros((codes.shape[1], len(sizes)))
  for f in range(len(sizes)):
    model = ensemble.GradientBoostingClassifier().fit(xt, yt[:, f])
    r[:, f] = np.abs(model.feature_importances_)
    model.score(xe, ye[:, f])
  p = r.T + 1e-11
  h = 1 - scipy.stats.entropy(p, base=r.shape[1])
  return float(np.sum(h * r.sum(1) / r.sum()))


def sap(codes, sizes, rng, n_train=10_000, n_test=5_000):
  xt, yt = sample(codes, sizes, rng, n_train)
  xe, ye = sample(codes, sizes, rng, n_test)
  s = np.zeros((codes.shape[1], len(sizes)))
  for i in range(codes.shape[1]):
    for f in range(len(sizes)):
      m = svm.LinearSVC(C=0.01, class_weight="balanced").fit(xt[:, i:i + 1], yt[:, f])
      s[i, f] = np.mean(m.predict(xe[:, i:i + 1]) == ye[:, f])
  s = np.sort(s, axis=0)
  return float(np.mean(s[-1] - s[-2]))


def modularity_explicitness(codes, sizes, rng, n_train=10_000, n_test=5_000):
  xt, yt = sample(codes, sizes, rng, n_train)
  xe, ye = sample(codes, sizes, rng, n_test)
  mi = mi_matrix(xt, yt)
  peak = (mi ** 2).max(1)
  modularity = np.mean(np.where(peak > 0, 1 - ((mi ** 2).sum(1) - peak) / (peak * (len(sizes) - 1) + 1e-300), 0))
  mean, std = xt.mean(0), xt.std(0)
  aucs = []
  for f in range(len(sizes)):
    m = linear_model.LogisticRegression(max_iter=1000).fit((xt - mean) / std, yt[:, f])
    onehot = (ye[:, f][:, None] == m.classes_[None]).astype(int)
    aucs.append(metrics.roc_auc_score(onehot, m.predict_proba((xe - mean) / std), average="macro"))
  return float(modularity), float(np.mean(aucs))


def dcimig(codes, sizes, rng, n=10_000):
  x, y = sample(codes, sizes, rng, n)
  mi = mi_matrix(x, y)  # [K, F]
  d = np.zeros(len(sizes))
  for j in range(mi.shape[0]):
    s = np.sort(mi[j])
    k = int(np.argmax(mi[j]))
    d[k] = max(d[k], s[-1] - s[-2])
  return float(d.sum() / entropies(y).sum())


def unsupervised(codes, sizes, rng, n=10_000):
  x = sample(codes, sizes, rng, n)[0]
  cov = np.cov(x, rowvar=False)
  tc = 0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1])
  wc = 2 * np.trace(cov) - 2 * np.trace(scipy.linalg.sqrtm(np.diag(np.diag(cov)) @ cov)).real
  d = discretize(x)
  k = x.shape[1]
  mi = np.mean([metrics.mutual_info_score(d[:, i], d[:, j]) for i in range(k) for j in range(k) if i != j])
  return float(tc), float(wc), float(mi)


def downstream(codes, sizes, rng, train_sizes=(10, 100, 1000, 10_000), n_test=5_000):
  xe, ye = sample(codes, sizes, rng, n_test)
  out = {}
  for name in ("logistic_regression", "gbt"):
    for s in train_sizes:
      xt, yt = sample(codes, sizes, rng, s)
      acc = []
      for f in range(len(sizes)):
        if len(np.unique(yt[:, f])) < 2:
          acc.append(np.mean(ye[:, f] == yt[0, f]))
          continue
        with warnings.catch_warnings():
          warnings.simplefilter("ignore")
          m = (linear_model.LogisticRegressionCV(Cs=10, cv=model_selection.KFold(n_splits=5)) if name != "gbt"
               else ensemble.GradientBoostingClassifier()).fit(xt, yt[:, f])
        acc.append(np.mean(m.predict(xe) == ye[:, f]))
      out[f"{name}_{s}"] = float(np.mean(acc))
  return out


def udr(members, rng, n=1000, similarity="lasso"):
  """disentanglement_lib's udr_sklearn on members [M] of (mean [N, K], log_var [N, K])."""
  rows = rng.integers(members[0][0].shape[0], size=n)
  reps, masks = [], []
  for mean, log_var in members:
    kl = np.mean(0.5 * (mean[rows] ** 2 + np.exp(log_var[rows]) - log_var[rows] - 1), 0)
    z = (mean[rows] - mean[rows].mean(0)) / mean[rows].std(0)
    reps.append(z * (kl > 0.01))
    masks.append(kl > 0.01)
  m = len(members)
  pair = np.zeros((m, m))
  for i in range(m):
    for j in range(m):
      if i == j:
        continue
      if similarity == "lasso":
        r = np.abs(linear_model.Lasso(alpha=0.1).fit(reps[i], reps[j]).coef_).T
      else:
        r = np.abs(np.array([[scipy.stats.spearmanr(reps[i][:, a], reps[j][:, b])[0] for b in range(reps[j].shape[1])]
                             for a in range(reps[i].shape[1])]))
      r = r[masks[i]][:, masks[j]]
      with np.errstate(divide="ignore", invalid="ignore"):
        sx = np.nanmean(np.nan_to_num(r.max(0) ** 2 / r.sum(0)))
        sy = np.nanmean(np.nan_to_num(r.max(1) ** 2 / r.sum(1)))
      pair[i, j] = (sx + sy) / 2
  return [float(np.median(np.delete(pair[:, i], i))) for i in range(m)]


def active_units(mean):
  return int(np.sum(np.var(mean, axis=0) > 0.01))
