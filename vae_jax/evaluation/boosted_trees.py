"""Gradient-boosted trees: scikit-learn's GradientBoostingClassifier() algorithm, in jitted JAX.

The algorithm is scikit-learn 1.9.1's (ensemble/_gb.py, tree/_splitter.pyx, tree/_criterion.pyx)
at its defaults (log-loss, 100 stages, depth 3, learning rate 0.1, no subsampling):
- X as float32; classes encoded 0..C−1 in sorted order; 2 classes: one tree per stage, half
  binomial loss (logit link); more: one tree per class and stage, half multinomial loss (the
  symmetric multinomial logit, log(p / geometric mean of p));
- init: the class prior, clipped to [eps, 1 − eps], through the link;
- each tree is a depth-`max_depth` regression tree on the negative gradient g: exact greedy
  search over the sorted feature values for the split maximising S_L²/n_L + S_R²/n_R (S: sums
  of g), split positions only between values more than FEATURE_THRESHOLD = 1e-7 apart, the
  first (lowest value) best position of a feature; threshold the midpoint x_lo/2 + x_hi/2 in
  float64 (x_lo if that rounds to x_hi); a node is a leaf at max_depth, below 2 samples, with
  impurity ≤ machine eps, when no feature has a valid split, or when its impurity improvement
  is below −eps;
- leaf values: one Newton step, mean(g) / mean(p (1 − p)) (times (C − 1)/C for the
  multinomial loss; 0 where the denominator is below 1e-150); raw += learning_rate · value;
- feature_importances_: per tree Σ over splits of n_node·imp − n_left·imp_left − n_right·imp_right
  divided by n, averaged over the trees that have a split, normalised to sum 1 (zeros if none).

Deviation: where several features reach a node's best proxy (within a relative TIE_TOLERANCE
of the split-search precision), the lowest feature index wins; scikit-learn keeps the first
strictly best feature in an order drawn from random_state. Such ties are common at small nodes
and in the first stage of a multiclass fit (two-valued residuals), and can change the trees, so
predictions and importances then differ from scikit-learn's in detail (the result's `ties`
counts the tied nodes). Without ties the fit equals scikit-learn's up to float rounding
(tests/test_boosted_trees.py).

Implementation: one jitted function per (n, K, trees per stage (multiclass: the classes rounded up
to a multiple of TREE_BUCKET), stages, depth, split dtype), compiled on first use: a `lax.scan`
over the stages; in a stage all trees are grown together, level by level, all nodes of a level
together. Each feature is sorted once. At a level, for each feature (`lax.map`), the gradient
sums and sample counts of every node over every prefix of the feature's sorted order are prefix
sums of one-hot [n, nodes, T] arrays, computed as block-triangular matrix products (a right
child's prefix is its parent's minus its left sibling's), and every position's proxy for its
own node is maximised per node. The split search runs in `split_dtype`: float32 by default
(prefix sums of 10,000 gradients then carry ~1e-6 relative error, so of two splits whose
proxies differ by less than that it may pick another than scikit-learn's float64 search), or
"float64" (equal to scikit-learn to rounding where no features tie); gradients, node
statistics, leaf values and importances are float64 in both.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

FEATURE_THRESHOLD = 1e-7  # scikit-learn's tree/_splitter.pyx
EPSILON = float(np.finfo(np.float64).eps)  # scikit-learn's tree/_tree.pyx
BLOCK = 16  # Positions per block of the prefix sums.
TIE_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
TREE_BUCKET = 8  # Multiclass fits pad the classes to a multiple of this (fewer compilations).


@dataclasses.dataclass(frozen=True)
class BoostedTrees:
  """A fitted ensemble of S stages of T trees (T = 1 for 2 classes, else C), each a complete
  binary tree of depth D in heap order (node j: children 2j+1, 2j+2); an unsplit node sends
  every sample left (threshold +inf), so every sample walks D levels.

  classes_ [C]; init [T] raw prediction before the trees; feature [S, T, 2^D − 1] and
  threshold [S, T, 2^D − 1] (float64, go left where x ≤ threshold) of the internal nodes;
  value [S, T, 2^D] leaf values (learning rate not applied); feature_importances_ [K];
  ties: number of split nodes whose best proxy several features reached.
  """
  classes_: np.ndarray
  init: np.ndarray
  feature: np.ndarray
  threshold: np.ndarray
  value: np.ndarray
  learning_rate: float
  feature_importances_: np.ndarray
  ties: int

  def decision_function(self, x) -> np.ndarray:
    """Raw predictions for x [n, K]: [n] for 2 classes, else [n, C]."""
    raw = self.raw_predictions(x)
    return raw[:, 0] if raw.shape[1] == 1 else raw

  def raw_predictions(self, x) -> np.ndarray:
    """Raw predictions [n, T]: init plus learning_rate × the leaf values of every tree, for x [n, K]."""
    with jax.enable_x64(True):
      raw = predict_raw(jnp.asarray(np.asarray(x, np.float32)), jnp.asarray(self.feature, jnp.int32),
                        jnp.asarray(float32_at_most(self.threshold)), jnp.asarray(self.value),
                        jnp.asarray(self.init), jnp.float64(self.learning_rate))
      return np.asarray(raw)

  def predict_proba(self, x) -> np.ndarray:
    """Class probabilities [n, C] for x [n, K]."""
    raw = self.raw_predictions(x)
    if raw.shape[1] == 1:
      p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
      return np.stack([1.0 - p, p], 1)
    e = np.exp(raw - raw.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)

  def predict(self, x) -> np.ndarray:
    """Predicted labels [n] (from classes_) for x [n, K]."""
    raw = self.raw_predictions(x)
    encoded = (raw[:, 0] > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, 1)
    return self.classes_[encoded]


def float32_at_most(threshold: np.ndarray) -> np.ndarray:
  """The largest float32 ≤ each float64 threshold: for float32 x, x ≤ t ⇔ x ≤ float32_at_most(t)."""
  t32 = threshold.astype(np.float32)
  return np.where(t32.astype(np.float64) > threshold, np.nextafter(t32, np.float32(-np.inf)), t32)


@jax.jit
def predict_raw(x32, feature, threshold32, value, init, learning_rate):
  """Raw predictions [n, T] for x32 [n, K] of the trees feature, threshold32 [S, T, 2^D − 1]
  (float32, go left where x ≤ threshold) and value [S, T, 2^D]."""
  internal = feature.shape[-1]
  depth = int(np.log2(internal + 1))
  rows = jnp.arange(x32.shape[0])[:, None]

  def stage(raw, tree):
    feature, threshold, value = tree
    node = jnp.zeros((x32.shape[0], feature.shape[0]), jnp.int32)
    cols = jnp.arange(feature.shape[0])[None, :]
    for _ in range(depth):
      f, t = feature[cols, node], threshold[cols, node]
      node = 2 * node + 1 + (x32[rows, f] > t)
    return raw + learning_rate * value[cols, node - internal], None

  raw = jnp.broadcast_to(init, (x32.shape[0], init.shape[0]))
  return jax.lax.scan(stage, raw, (feature, threshold32, value))[0]


def exclusive_prefix_sums(x):
  """Σ_{j' < j} x[j'] along axis 0 of x [m, ...]."""
  m = x.shape[0]
  if m <= 4 * BLOCK:
    tri = jnp.tril(jnp.ones((m, m), x.dtype), -1)
    return jnp.matmul(tri, x.reshape(m, -1), precision="highest").reshape(x.shape)
  pad = -m % BLOCK
  padded = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
  blocks = jnp.swapaxes(padded.reshape(-1, BLOCK, *x.shape[1:]), 0, 1)[:, None]
  inclusive = jnp.swapaxes(block_prefix_sums(blocks)[:, 0], 0, 1).reshape(padded.shape)[:m]
  return inclusive - x


def block_prefix_sums(x):
  """Inclusive prefix sums over positions of x [B, C, nb, ...], position b·B + i being x[i, :, b]."""
  b = x.shape[0]
  tri = jnp.tril(jnp.ones((b, b), x.dtype))
  within = jnp.matmul(tri, x.reshape(b, -1), precision="highest").reshape(x.shape)
  offsets = jnp.moveaxis(exclusive_prefix_sums(jnp.moveaxis(within[-1], 1, 0)), 0, 1)
  return within + offsets[None]


def node_sums(node, values, width: int):
  """Σ of values [n, T, V] over the samples of each node (node [n, T] in 0..width−1) → [V, T, width]."""
  n, trees, v = values.shape
  ids = (node + width * jnp.arange(trees)).ravel()
  sums = jax.ops.segment_sum(values.reshape(n * trees, v), ids, num_segments=trees * width)
  return sums.reshape(trees, width, v).transpose(2, 0, 1)


def node_prefix(history, level: int, u: int, count_root):
  """(S, C) [B, nb, T]: prefix sums of the gradient and count of node u at `level`, from the
  left children's prefix sums of every level above (history, feature_splits)."""
  if level == 0:
    return history[0][:, 0], count_root
  half = 2 ** (level - 1)
  s_left, c_left = history[level][:, u // 2], history[level][:, half + u // 2]
  if u % 2 == 0:
    return s_left, c_left
  s_parent, c_parent = node_prefix(history, level - 1, u // 2, count_root)
  return s_parent - s_left, c_parent - c_left


def feature_splits(g_k, node_k, history, count, total, active, hi_k, dtype):
  """The best split on one feature of every node of every tree at one level.

  g_k [B, nb, T]: each tree's gradient in the feature's sorted order (position b·B + i at
  [i, b]); node_k [B, nb, T]: each sample's node (0..W−1; W for padding); history: per level
  above, this function's last output; count, total [W, T]: each node's size and gradient sum;
  active [W, T]: nodes that may split; hi_k [B, nb]: the last position within FEATURE_THRESHOLD
  of each position's value (None: always itself). Returns (proxy [W, T] (−inf: no valid split),
  position [W, T] (the first best last-left position), this level's prefix sums: of the root's
  gradient [B, 1, nb, T] at the root, else of the left children's gradients and counts
  [B, W, nb, T] (left child u at u and W/2 + u)).
  """
  b, nb, t = g_k.shape
  width = count.shape[0]

  def own(a):  # a [W, T] or [W] arrays [B, nb, T] → [B, nb, T]: each position's entry for its own node.
    out = jnp.zeros(node_k.shape, a[0].dtype)
    for w in range(width):
      out = jnp.where(node_k == w, a[w], out)
    return out

  position_index = (jnp.arange(nb)[None, :] * b + jnp.arange(b)[:, None])[:, :, None]
  count_root = (position_index + 1).astype(dtype)
  if width == 1:
    prefix = block_prefix_sums(g_k[:, None])
    s_j, c_j = prefix[:, 0], jnp.broadcast_to(count_root, g_k.shape)
    c_nodes = None
  else:  # Left children from their own prefix sums, right children as parent minus left.
    half = width // 2
    left = [node_k == 2 * u for u in range(half)]
    prefix = block_prefix_sums(jnp.stack([jnp.where(m, g_k, 0) for m in left] + [m.astype(dtype) for m in left], 1))
    level = len(history)
    nodes = [node_prefix(history + (prefix,), level, w, count_root) for w in range(width)]
    s_j, c_j = own([n[0] for n in nodes]), own([n[1] for n in nodes])
    c_nodes = [n[1] for n in nodes]
  count_j, total_j = own(jnp.where(active, count, 0)), own(total)  # Inactive nodes: no valid position.
  valid = c_j < count_j
  if hi_k is not None:  # No sample of the node may lie in (x, x + FEATURE_THRESHOLD].
    at_hi = lambda a: a[hi_k % b, hi_k // b]
    valid &= (at_hi(count_root[:, :, 0])[:, :, None] if c_nodes is None else own([at_hi(c) for c in c_nodes])) == c_j
  s_r, c_r = total_j - s_j, count_j - c_j
  proxy = jnp.where(valid, s_j * s_j / c_j + s_r * s_r / c_r, -jnp.inf)
  member = node_k[..., None] == jnp.arange(width)
  segment_max = lambda a, fill: jnp.max(jnp.where(member, a[..., None], fill).reshape(-1, t * width), 0).reshape(t, width).T
  best = segment_max(proxy, -jnp.inf)
  first = jnp.where(proxy == own(best), -position_index.astype(dtype), -b * nb)  # Max of −position: the first.
  return best, (-segment_max(first, -b * nb)).astype(jnp.int32), prefix


def split_search(g_pad, node_pad, order_blocked, history, stats, active, hi, dtype):
  """The best split of every node of every tree at one level, over all features.

  g_pad [n + 1, T] gradients and node_pad [n + 1, T] nodes (0..W−1) of the samples and of a
  padding sample (0, W); order_blocked [K, B, nb] (sorted_features); history: the prefix sums
  [K, ...] returned at the levels above; stats: (count, total) [T, W]; active [T, W]; hi
  [K, B, nb] or None. Returns (proxy [T, W] (−inf: no valid split), feature [T, W] (lowest
  index among the features within TIE_TOLERANCE of the best), position [T, W] (last left
  position in that feature's order), tied [T, W], this level's prefix sums [K, ...]).
  """
  count, total = (v.T.astype(dtype) for v in stats)

  def one_feature(args):
    order_k, history_k, hi_k = args
    return feature_splits(g_pad[order_k], node_pad[order_k], history_k, count, total, active.T, hi_k, dtype)

  feature_best, feature_position, prefix = jax.lax.map(one_feature, (order_blocked, history, hi))
  feature_best, feature_position = jnp.swapaxes(feature_best, 1, 2), jnp.swapaxes(feature_position, 1, 2)
  best = jnp.max(feature_best, 0)
  tolerance = TIE_TOLERANCE[jnp.dtype(dtype).name]
  near = jnp.isfinite(best) & (feature_best >= best - tolerance * jnp.abs(best))
  feature = jnp.argmax(near.astype(jnp.int8), 0)
  position = jnp.take_along_axis(feature_position, feature[None], 0)[0]
  return best, feature, position, near.sum(0) > 1, prefix


def grow_stage(consts, raw, leaf_scale, *, depth: int, multiclass: bool, dtype):
  """One boosting stage: the negative gradient at raw [n, T], one tree per column grown on it;
  leaf_scale: (C − 1)/C for the multinomial loss, 1 for the binomial.

  Returns (feature [T, 2^D − 1], lo, hi [T, 2^D − 1] (float32: the values either side of each
  split; +inf where none), value [T, 2^D] (Newton leaf values), leaf [n, T], importance [T, K]
  (unnormalised), has_split [T], ties [T]).
  """
  x32, order_blocked, sorted_x, hi, targets = consts
  n, k = x32.shape
  trees = targets.shape[1]
  if multiclass:
    prob = jax.nn.softmax(raw, axis=1)
  else:
    prob = jax.nn.sigmoid(raw)
  gradient = targets - prob
  prob = targets - gradient
  g_pad = jnp.concatenate([gradient.astype(dtype), jnp.zeros((1, trees), dtype)])
  internal = 2**depth - 1
  feature = jnp.zeros((trees, internal), jnp.int32)
  lo = jnp.full((trees, internal), jnp.inf, jnp.float32)
  hi_value = jnp.full((trees, internal), jnp.inf, jnp.float32)
  importance = jnp.zeros((trees, k))
  ties = jnp.zeros(trees, jnp.int32)
  node = jnp.zeros((n, trees), jnp.int32)
  active = jnp.ones((trees, 1), bool)
  moments = jnp.stack([jnp.ones_like(gradient), gradient, gradient * gradient], -1)
  count, total, sq_total = jnp.full((trees, 1), float(n)), gradient.sum(0)[:, None], moments[:, :, 2].sum(0)[:, None]
  history = ()
  rows, cols = jnp.arange(n)[:, None], jnp.arange(trees)[None, :]
  for level in range(depth):
    width = 2**level
    impurity = sq_total / count - (total / count) ** 2
    active &= (count >= 2) & (impurity > EPSILON)
    node_pad = jnp.concatenate([node, jnp.full((1, trees), width, jnp.int32)]).astype(jnp.int8 if depth < 8 else jnp.int32)
    best, f, pos, tied, prefix = split_search(g_pad, node_pad, order_blocked, history, (count, total), active, hi, dtype)
    history += (prefix,)
    split = active & jnp.isfinite(best)
    x_lo = sorted_x[f, pos]
    f_of_sample = f[cols, node]
    x_sample = x32[rows, f_of_sample]
    right = split[cols, node] & (x_sample > x_lo[cols, node])
    child = 2 * node + right
    n_child, s_child, sq_child = node_sums(child, moments, 2 * width)
    n_l, n_r, s_l, s_r = n_child[:, 0::2], n_child[:, 1::2], s_child[:, 0::2], s_child[:, 1::2]
    imp_l = sq_child[:, 0::2] / n_l - (s_l / n_l) ** 2
    imp_r = sq_child[:, 1::2] / n_r - (s_r / n_r) ** 2
    improvement = count / n * (impurity - n_r / count * imp_r - n_l / count * imp_l)
    split &= ~(improvement + EPSILON < 0.0)
    right &= split[cols, node]
    child = 2 * node + right
    above = jnp.where(right[:, :, None] & (node[:, :, None] == jnp.arange(width)), x_sample[:, :, None], jnp.inf)
    heap = width - 1 + jnp.arange(width)
    feature = feature.at[:, heap].set(jnp.where(split, f, 0).astype(jnp.int32))
    lo = lo.at[:, heap].set(jnp.where(split, x_lo, jnp.inf))
    hi_value = hi_value.at[:, heap].set(jnp.where(split, jnp.min(above, 0), jnp.inf))
    gain = jnp.where(split, count * impurity - n_l * imp_l - n_r * imp_r, 0.0) / n
    importance += jnp.einsum("tw,twk->tk", gain, (f[:, :, None] == jnp.arange(k)).astype(gain.dtype))
    ties += jnp.sum(tied & split, 1)
    active = jnp.repeat(split, 2, axis=1)
    unsplit = lambda a: jnp.stack([a, jnp.zeros_like(a)], -1).reshape(trees, 2 * width)  # All samples left.
    count, total, sq_total = (jnp.where(active, c, unsplit(p)) for c, p in
                              ((n_child, count), (s_child, total), (sq_child, sq_total)))
    node = child
  numerator = leaf_scale * total / count
  denominator = node_sums(node, (prob * (1.0 - prob))[:, :, None], 2**depth)[0] / count
  ok = (count > 0) & (jnp.abs(denominator) >= 1e-150)
  value = jnp.where(ok, numerator / jnp.where(ok, denominator, 1.0), 0.0)
  return feature, lo, hi_value, value, node, importance, jnp.isfinite(lo[:, 0]), ties


@functools.partial(jax.jit, static_argnames=("n_stages", "depth", "multiclass", "dtype"))
def fit_stages(consts, init, learning_rate, leaf_scale, *, n_stages: int, depth: int, multiclass: bool, dtype: str):
  """All boosting stages (lax.scan): per stage grow_stage's outputs stacked over stages, leaf excluded."""
  n = consts[0].shape[0]

  def stage(raw, _):
    feature, lo, hi, value, leaf, importance, has_split, ties = grow_stage(
        consts, raw, leaf_scale, depth=depth, multiclass=multiclass, dtype=jnp.dtype(dtype))
    raw = raw + learning_rate * jnp.take_along_axis(value.T, leaf, 0)
    return raw, (feature, lo, hi, value, importance, has_split, ties)

  raw = jnp.broadcast_to(init, (n, init.shape[0]))
  return jax.lax.scan(stage, raw, None, length=n_stages)[1]


def initial_raw(codes: np.ndarray, n_classes: int) -> np.ndarray:
  """The class prior through the loss's link: [1] (logit, 2 classes) or [C] (log p − mean log p)."""
  eps = np.finfo(np.float64).eps
  prior = np.clip(np.bincount(codes, minlength=n_classes) / codes.size, eps, 1 - eps)
  if n_classes == 2:
    return np.log(prior[1:] / (1 - prior[1:]))
  return np.log(prior / np.exp(np.mean(np.log(prior))))


def sorted_features(x32: np.ndarray):
  """Per-feature sort of x32 [n, K]: (order in blocks [K, BLOCK, nb] (position b·BLOCK + i at
  [k, i, b]; index n pads), sorted values [K, n + 1] (+inf pads), hi [K, BLOCK, nb] or None: the
  last position whose value is within FEATURE_THRESHOLD of each position's (None if always itself))."""
  n, k = x32.shape
  order = np.argsort(x32, axis=0, kind="stable")  # [n, K]
  sorted64 = np.take_along_axis(x32, order, 0).astype(np.float64)
  n_pad = n + (-n % BLOCK)
  blocked = lambda a, fill: np.concatenate([a, np.full((n_pad - n, k), fill, a.dtype)]).reshape(-1, BLOCK, k).transpose(2, 1, 0)
  order_blocked = blocked(order.astype(np.int32), n)
  sorted_x = np.concatenate([sorted64.T, np.full((k, 1), np.inf)], 1).astype(np.float32)
  hi = None
  if not np.all(sorted64[1:] > sorted64[:-1] + FEATURE_THRESHOLD):
    hi = np.stack([np.searchsorted(sorted64[:, j], sorted64[:, j] + FEATURE_THRESHOLD, "right") - 1 for j in range(k)], 1)
    hi = blocked(hi.astype(np.int32), 0)
    hi = np.where(order_blocked == n, np.arange(n_pad).reshape(-1, BLOCK).T[None], hi).astype(np.int32)
  return order_blocked, sorted_x, hi


def fit_boosted_trees(x, y, *, n_stages: int = 100, max_depth: int = 3, learning_rate: float = 0.1,
                      split_dtype: str = "float32") -> BoostedTrees:
  """GradientBoostingClassifier(n_estimators=n_stages, max_depth, learning_rate) with scikit-learn's
  other defaults (module docstring), fitted on x [n, K] and labels y [n] (any sortable values,
  ≥ 2 classes). split_dtype: "float32" (fast) or "float64" (the split search's precision).

  Returns a BoostedTrees (predict, predict_proba, decision_function, feature_importances_ [K]).
  """
  x32 = np.asarray(x, np.float32)
  classes, codes = np.unique(np.asarray(y), return_inverse=True)
  codes = codes.ravel()
  n_classes = classes.size
  if n_classes < 2:
    raise ValueError(f"y has {n_classes} class; gradient boosting needs at least 2.")
  multiclass = n_classes > 2
  # Classes padded to a multiple of TREE_BUCKET share one compiled function: a padding class has
  # raw −inf, so probability and gradient 0, and its trees never split.
  trees = -(-n_classes // TREE_BUCKET) * TREE_BUCKET if multiclass else 1
  targets = (codes[:, None] == np.arange(trees) + (not multiclass)).astype(np.float64)
  init = initial_raw(codes, n_classes)
  order_blocked, sorted_x, hi = sorted_features(x32)
  with jax.enable_x64(True):
    consts = tuple(None if a is None else jnp.asarray(a) for a in (x32, order_blocked, sorted_x, hi, targets))
    padded_init = np.concatenate([init, np.full(trees - init.size, -np.inf)])
    leaf_scale = (n_classes - 1) / n_classes if multiclass else 1.0
    out = fit_stages(consts, jnp.asarray(padded_init), jnp.float64(learning_rate), jnp.float64(leaf_scale),
                     n_stages=n_stages, depth=max_depth, multiclass=multiclass, dtype=split_dtype)
    feature, lo, hi_value, value, importance, has_split, ties = (np.asarray(a)[:, :init.size] for a in out)
  lo, hi_value = lo.astype(np.float64), hi_value.astype(np.float64)
  threshold = lo / 2.0 + hi_value / 2.0
  threshold = np.where((threshold == hi_value) | np.isinf(threshold), lo, threshold)
  split_trees = int(has_split.sum())
  if split_trees:
    mean = importance[has_split].sum(0) / split_trees
    importances = mean / mean.sum()
  else:
    importances = np.zeros(x32.shape[1])
  return BoostedTrees(classes, init, feature, threshold, value, float(learning_rate), importances, int(ties.sum()))


IMPLEMENTATIONS = ("auto", "vae_jax", "sklearn")
# "auto" fits below this many points with scikit-learn: its fit then takes well under a second,
# less than compiling the JAX trees for one more shape (5-10 s on a 2-core CPU).
AUTO_MIN_POINTS = 1000


def resolve_implementation(implementation: str, num_points: int) -> str:
  """The code that fits `num_points` training points: "vae_jax" or "sklearn" ("auto": the JAX
  trees from AUTO_MIN_POINTS points on, scikit-learn below)."""
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"eval.gbt_implementation={implementation!r}; use one of {IMPLEMENTATIONS}.")
  if implementation == "auto":
    return "vae_jax" if num_points >= AUTO_MIN_POINTS else "sklearn"
  return implementation


@dataclasses.dataclass
class BoostedTreesClassifier:
  """fit_boosted_trees behind scikit-learn's classifier interface: fit(x [n, K], y [n]) → self,
  then predict(x) → labels [n] and feature_importances_ [K]."""
  n_stages: int = 100
  max_depth: int = 3
  learning_rate: float = 0.1
  model_: BoostedTrees | None = None

  def fit(self, x, y) -> "BoostedTreesClassifier":
    """Fits the ensemble on codes x [n, K] and labels y [n]; returns self."""
    self.model_ = fit_boosted_trees(x, y, n_stages=self.n_stages, max_depth=self.max_depth,
                                    learning_rate=self.learning_rate)
    return self

  def predict(self, x) -> np.ndarray:
    """Predicted labels [n] for x [n, K]."""
    return self.model_.predict(x)

  @property
  def feature_importances_(self) -> np.ndarray:
    """Normalised impurity-decrease importances [K]."""
    return self.model_.feature_importances_


def gradient_boosting_classifier(implementation: str, seed: int = 0):
  """An unfitted GradientBoostingClassifier() with scikit-learn's defaults: "vae_jax"
  (BoostedTreesClassifier; exact feature ties go to the lowest index) or "sklearn"
  (scikit-learn's, random_state=seed). Both have fit(x, y) → self, predict(x) and, once fitted,
  feature_importances_."""
  if implementation in ("vae_jax", "auto"):  # "auto" is resolved by the caller, which knows the size.
    return BoostedTreesClassifier()
  if implementation == "sklearn":
    from sklearn.ensemble import GradientBoostingClassifier
    return GradientBoostingClassifier(random_state=seed)
  raise ValueError(f"Unknown gradient-boosting implementation {implementation!r}; use one of {IMPLEMENTATIONS}.")
