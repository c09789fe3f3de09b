"""Which metrics reward disentanglement and punish entanglement: every metric on synthetic codes
of known structure (after Sepliarskaia, Kiseleva & de Rijke, "How to not measure
disentanglement", 2019).

    python -m vae_jax.metric_properties            # dSprites' factors on a 3×6×10×8×8 grid → docs/metrics.md
    python -m vae_jax.metric_properties --grid=3,6,40,32,32 --output=/tmp/metrics.md

The representations are functions of the ground-truth factor indices of a grid with dSprites'
factor names (each factor standardised to u_f, mean 0 and std 1 over the grid):
  perfect         one code per factor, z_f = u_f
  perfect+noise   the same and 5 codes of N(0, 1) noise
  nonlinear       z_f = exp(2 u_f): one-to-one and monotone, not affine
  permuted        z_f = a fixed random permutation of factor f's values: one-to-one, not monotone
  split           posX spread over two codes (u cos 30°, u sin 30°), the rest perfect
  missing         posY has no code, the rest perfect
  rotated         (scale, orientation) and (posX, posY) each mixed by a 45° rotation
  random          5 codes of N(0, 1) noise
Codes go through `evaluate_representation` as posteriors with σ = 0.1 (Chen's MIG needs one);
the "images" of the grid are its factor-index rows, so fn reads the factors off them.
Property 1 (disentangled → high): perfect+noise, nonlinear and permuted score at least
`RELATIVE_HIGH` (0.9) of the perfect code's score. Property 2 (entangled → low): rotated and random
score below that. split and missing are reported, not classified.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable, Sequence

import numpy as np

from vae_jax import configlib, evaluate, plotting, report
from vae_jax.data.grid import index_to_factors

NAMES = ("shape", "scale", "orientation", "posX", "posY")
GRID = (3, 6, 10, 8, 8)
RELATIVE_HIGH = 0.9
DISENTANGLED = ("perfect+noise", "nonlinear", "permuted")
ENTANGLED = ("rotated", "random")
METRICS = ("beta_vae_score", "factor_vae_score", "mig", "mig_histogram", "dci", "sap", "modularity_explicitness",
           "dcimig", "downstream_task")
# The table's columns: (metric module, scalar name) — higher is better for each.
COLUMNS = (("beta_vae_score", "beta_vae_score"), ("factor_vae_score", "factor_vae_score"), ("mig", "mig"),
           ("mig_histogram", "mig_histogram"), ("dci", "dci_disentanglement"), ("dci", "dci_completeness"),
           ("dci", "dci_informativeness"), ("sap", "sap"), ("modularity_explicitness", "modularity"),
           ("modularity_explicitness", "explicitness"), ("dcimig", "dcimig"))
BEGIN, END = "<!-- metric_properties:begin -->", "<!-- metric_properties:end -->"


class FactorTable:
  """A factor grid whose "images" [B, 1, 1, F] are the factor-index rows themselves (float32)."""

  def __init__(self, sizes: Sequence[int] = GRID, names: Sequence[str] = NAMES):
    self.name = "factor table " + "×".join(map(str, sizes))
    self.factor_sizes, self.factor_names = tuple(sizes), tuple(names)
    self.factor_values = tuple(np.arange(s, dtype=np.float64) for s in sizes)
    self.factor_value_labels = tuple(tuple(str(v) for v in range(s)) for s in sizes)
    self.mig_excluded_factors, self.nuisance_factors, self.procedural = (), (), True
    self.image_shape = (1, 1, len(sizes))

  def images(self, indices: np.ndarray) -> np.ndarray:
    """Factor indices of the grid rows `indices` [n] as [n, 1, 1, F] float32."""
    return index_to_factors(np.asarray(indices), self.factor_sizes).astype(np.float32)[:, None, None, :]


def representations(sizes: Sequence[int] = GRID, seed: int = 0) -> dict[str, Callable]:
  """{variant: fn(factor "images" [B, 1, 1, F]) -> codes [B, K]} for the variants in this module's doc."""
  sizes = np.asarray(sizes)
  strides = np.append(np.cumprod(sizes[::-1])[::-1][1:], 1)
  rng = np.random.default_rng(seed)
  noise_table = rng.normal(size=(int(np.prod(sizes)), 5))
  permutations = [rng.permutation(s) for s in sizes]
  f_of = {n: i for i, n in enumerate(NAMES[:len(sizes)])}

  def unit(x):  # [B, 1, 1, F] -> factor indices [B, F] and u [B, F] (mean 0, std 1 over the grid)
    f = np.asarray(x, np.float64)[:, 0, 0, :]
    return f, (f - (sizes - 1) / 2) / np.sqrt((sizes ** 2 - 1) / 12)

  def noise(x):
    return noise_table[(unit(x)[0] @ strides).astype(np.int64)]

  def rotate(u, a, b):
    u = u.copy()
    u[:, a], u[:, b] = (u[:, a] + u[:, b]) / np.sqrt(2), (u[:, a] - u[:, b]) / np.sqrt(2)
    return u

  def permuted(x):
    f, _ = unit(x)
    return np.stack([permutations[i][f[:, i].astype(np.int64)] for i in range(len(sizes))], 1).astype(np.float64)

  def split(x):
    u = unit(x)[1]
    p = f_of["posX"]
    return np.c_[u[:, :p], u[:, p] * np.cos(np.pi / 6), u[:, p] * np.sin(np.pi / 6), u[:, p + 1:]]

  return {
      "perfect": lambda x: unit(x)[1],
      "perfect+noise": lambda x: np.c_[unit(x)[1], noise(x)],
      "nonlinear": lambda x: np.exp(2 * unit(x)[1]),
      "permuted": permuted,
      "split": split,
      "missing": lambda x: np.delete(unit(x)[1], f_of["posY"], axis=1),
      "rotated": lambda x: rotate(rotate(unit(x)[1], f_of["scale"], f_of["orientation"]), f_of["posX"], f_of["posY"]),
      "random": noise,
  }


def settings_for(num_points: int, dci_importance: str = "gbt"):
  """The eval config the study uses: every sample size `num_points` (test sets half), DCI's predictor,
  the downstream task at 100 and 1,000 training points."""
  s = configlib.base_config().eval
  s.unlock()
  s.update(dict(score_train_points=num_points, score_test_points=num_points // 2, score_variance_points=num_points,
                histogram_points=num_points, mig_samples=num_points, dci_importance=dci_importance,
                downstream_train_sizes=(100, 1000), downstream_test_points=num_points // 2,
                downstream_efficiency_sizes=(100, 1000), batch_size=4096))
  return s


def score_table(sizes: Sequence[int] = GRID, metrics: Sequence[str] = METRICS, num_points: int = 5000,
                dci_importance: str = "gbt", seed: int = 0,
                progress: bool = False) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
  """({variant: {scalar name: score}}, {variant: seconds}) of every metric's scalars on each variant
  (progress: print one line per variant)."""
  dataset = FactorTable(sizes)
  settings = settings_for(num_points, dci_importance)
  table, seconds = {}, {}
  for name, fn in representations(sizes, seed).items():
    t = time.perf_counter()
    posterior = lambda x, fn=fn: (fn(x), np.full((len(x), fn(x[:1]).shape[1]), 2 * np.log(0.1)))
    result = evaluate.evaluate_representation(posterior, dataset, metrics=metrics, settings=settings)
    table[name] = evaluate.member_scalars(result)
    seconds[name] = time.perf_counter() - t
    if progress:
      print(f"{name}: {seconds[name]:.0f} s", flush=True)
  return table, seconds


def column_names(table: dict) -> list[str]:
  """The higher-is-better scalars present in the table, in COLUMNS order, then the downstream ones."""
  present = set(next(iter(table.values())))
  cols = [c for _, c in COLUMNS if c in present]
  return cols + sorted(c for c in present if c.startswith("downstream_") and not c.endswith("efficiency"))


def properties(table: dict, relative_high: float = RELATIVE_HIGH) -> dict[str, dict[str, bool]]:
  """{scalar: {"property_1", "property_2"}}: disentangled variants ≥ relative_high × perfect, and
  entangled ones below it (a perfect score <= 0 makes both False)."""
  out = {}
  for col in column_names(table):
    ref = table["perfect"][col]
    high = lambda v: ref > 0 and v >= relative_high * ref
    out[col] = {"property_1": all(high(table[v][col]) for v in DISENTANGLED if v in table),
                "property_2": ref > 0 and not any(high(table[v][col]) for v in ENTANGLED if v in table)}
  return out


def markdown(table: dict, seconds: dict, props: dict, header: str) -> str:
  """The generated section of docs/metrics.md: the scores, the two properties per metric."""
  cols = column_names(table)
  lines = [header, "", "| variant | " + " | ".join(cols) + " | s |", "|---" * (len(cols) + 2) + "|"]
  for variant, row in table.items():
    lines.append(f"| {variant} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + f" | {seconds[variant]:.0f} |")
  lines += ["", f"Property 1 (disentangled variants {', '.join(DISENTANGLED)} ≥ {RELATIVE_HIGH} × perfect) and "
            f"property 2 (entangled variants {', '.join(ENTANGLED)} below that):", "",
            "| metric | property 1 | property 2 |", "|---|---|---|"]
  lines += [f"| {c} | {'yes' if p['property_1'] else 'no'} | {'yes' if p['property_2'] else 'no'} |"
            for c, p in props.items()]
  return "\n".join(lines)


def draw_heatmap(table: dict, path: str) -> str:
  """A heat map of every score divided by the perfect code's score (variants × metrics) → PNG at path."""
  cols = column_names(table)
  values = np.array([[row[c] / table["perfect"][c] if table["perfect"][c] > 0 else np.nan for c in cols]
                     for row in table.values()])
  fig = plotting.new_figure((1.0 + 0.75 * len(cols), 0.9 + 0.42 * len(table)))
  ax = fig.add_subplot(1, 1, 1)
  im = ax.imshow(np.clip(values, 0, 1.2), cmap="viridis", vmin=0, vmax=1.2, aspect="auto")
  for (i, j), v in np.ndenumerate(values):
    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.7 else "black")
  ax.set_xticks(range(len(cols)), [c.replace("downstream_", "ds_") for c in cols], rotation=60, ha="right", fontsize=8)
  ax.set_yticks(range(len(table)), list(table), fontsize=8)
  ax.set_title("score / score of the perfect code", fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.03)
  fig.tight_layout()
  return plotting.save_figure(fig, path)


def write_section(path: str, text: str) -> None:
  """Replaces the text between BEGIN and END in the file at path (appends both if absent)."""
  if not os.path.exists(path):
    with open(path, "w") as f:
      f.write("# Metrics\n")
  report.write_marked_section(path, text, BEGIN, END)


def main(argv: Sequence[str] | None = None) -> dict:
  """Scores every variant, writes the section of --output and the heat map; returns the table."""
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--grid", default=",".join(map(str, GRID)), help="factor sizes of the grid (dSprites' names)")
  parser.add_argument("--points", type=int, default=5000, help="sample size of every metric (test sets half)")
  parser.add_argument("--dci-importance", default="gbt", choices=("gbt", "lasso"))
  parser.add_argument("--metrics", default=",".join(METRICS))
  parser.add_argument("--output", default="docs/metrics.md")
  parser.add_argument("--figure", default="docs/figures/metric_properties.png")
  args = parser.parse_args(argv)
  sizes = tuple(int(s) for s in args.grid.split(","))
  table, seconds = score_table(sizes, args.metrics.split(","), args.points, args.dci_importance, progress=True)
  props = properties(table)
  figure = draw_heatmap(table, args.figure)
  chosen = "" if args.metrics == ",".join(METRICS) else f" --metrics={args.metrics}"
  header = (f"Generated by `python -m vae_jax.metric_properties --grid={args.grid} --points={args.points} "
            f"--dci-importance={args.dci_importance}{chosen}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, "
            f"load average {os.getloadavg()[0]:.1f}); grid {dict(zip(NAMES, sizes))}, "
            f"heat map: {os.path.relpath(figure, os.path.dirname(os.path.abspath(args.output)))}.")
  write_section(args.output, markdown(table, seconds, props, header))
  print(markdown(table, seconds, props, header))
  return table


if __name__ == "__main__":
  main()
