"""scikit-learn's GradientBoostingClassifier() vs vae_jax.evaluation.boosted_trees on dSprites-sized
problems: 10,000 × 10 Gaussian codes, labels from a noisy function of two codes, 40 classes (the
largest dSprites factor) or all five factor sizes (3, 6, 40, 32, 32) with --all.

Prints per problem: scikit-learn's fit time, ours (the first call, which compiles, and a second
call on the same shapes), the ratio, the largest importance difference, agreement of the
predictions on the training points and on 5,000 test points, both test accuracies, and the
nodes where several features tied for the best split.

--ours_only skips scikit-learn (its fits take minutes per factor).

Usage: python benchmarks/boosted_trees_vs_sklearn.py [--all] [--ours_only] [--points 10000] [--split_dtype float32]
"""

import argparse
import time

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from vae_jax.evaluation.boosted_trees import fit_boosted_trees


def problem(classes: int, points: int, seed: int):
  """Codes x [points + 5000, 10] and labels in 0..classes−1 (the first `points` rows train)."""
  rng = np.random.default_rng(seed)
  n = points + 5000
  x = rng.normal(size=(n, 10))
  s = x[:, 0] + 0.3 * x[:, 1] + 0.2 * rng.normal(size=n)
  return x, np.digitize(s, np.quantile(s[:points], np.linspace(0, 1, classes + 1)[1:-1]))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--all", action="store_true", help="all five dSprites factor sizes, not only 40 classes")
  parser.add_argument("--points", type=int, default=10_000)
  parser.add_argument("--split_dtype", default="float32")
  parser.add_argument("--ours_only", action="store_true", help="time only vae_jax's trees")
  args = parser.parse_args()
  sizes = (3, 6, 40, 32, 32) if args.all else (40,)
  totals = np.zeros(3)
  for i, classes in enumerate(sizes):
    x, y = problem(classes, args.points, seed=i)
    train, test = slice(0, args.points), slice(args.points, None)
    if not args.ours_only:
      t = time.perf_counter()
      theirs = GradientBoostingClassifier(random_state=0).fit(x[train], y[train])
      sk = time.perf_counter() - t
    t = time.perf_counter()
    fit_boosted_trees(x[train], y[train], split_dtype=args.split_dtype)
    first = time.perf_counter() - t
    t = time.perf_counter()
    ours = fit_boosted_trees(x[train], y[train], split_dtype=args.split_dtype)
    second = time.perf_counter() - t
    accuracy = lambda model: np.mean(model.predict(x[test]) == y[test])
    if args.ours_only:
      totals += (0, first, second)
      print(f"{classes} classes: ours {second:.1f} s (first call, compiling: {first:.1f} s); test accuracy "
            f"{accuracy(ours):.3f}; tied nodes {ours.ties}", flush=True)
      continue
    totals += (sk, first, second)
    accuracy = lambda model: np.mean(model.predict(x[test]) == y[test])
    print(f"{classes} classes: sklearn {sk:.1f} s, ours {second:.1f} s (first call, compiling: {first:.1f} s), "
          f"ratio {sk / second:.1f}; max |importance difference| "
          f"{np.abs(ours.feature_importances_ - theirs.feature_importances_).max():.4f}; predictions equal: "
          f"train {np.mean(ours.predict(x[train]) == theirs.predict(x[train])):.3f}, "
          f"test {np.mean(ours.predict(x[test]) == theirs.predict(x[test])):.3f}; test accuracy "
          f"sklearn {accuracy(theirs):.3f}, ours {accuracy(ours):.3f}; tied nodes {ours.ties}", flush=True)
  if len(sizes) > 1 and args.ours_only:
    print(f"total: ours {totals[2]:.1f} s (first calls {totals[1]:.1f} s)")
  elif len(sizes) > 1:
    print(f"total: sklearn {totals[0]:.1f} s, ours {totals[2]:.1f} s (first calls {totals[1]:.1f} s), "
          f"ratio {totals[0] / totals[2]:.1f}")


if __name__ == "__main__":
  main()
