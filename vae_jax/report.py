"""A report over many runs: the distribution of MIG per model and β.

    python -m vae_jax.report RUN_DIR [RUN_DIR ...] [--out=DIR] [--readme=README.md]

Each RUN_DIR is a workdir with a metrics.json, a folder with a results.json (as
vae_jax.sweep writes them), or a folder of either, one level down. Every ensemble
member is one model; members are grouped by objective and its hyperparameters (and by
dataset and architecture when the runs mix them; vae_jax.model_groups reads and groups
them). Writes

    OUT/mig_distribution.png   one panel per MIG convention (Chen et al.'s sampling
                               estimator; disentanglement_lib's histogram MIG): a box
                               plot per group with every model's MIG as a point on top
                               (as in Chen et al.'s Figure 5)
    OUT/mig_table.md           per group: number of models, median and interquartile
                               range of each MIG convention and of every other metric
                               with a headline value; at each β with both β-VAE and
                               β-TCVAE models, β-TCVAE − β-VAE (the medians' difference,
                               its 95% bootstrap interval, the exact Mann–Whitney p);
                               then one row per model

and, with --readme, the summary (summary_markdown: Chen MIG per seed, median and IQR per
group, the β-TCVAE − β-VAE comparisons) into that markdown file between its mig_summary
markers, so a study's README never lags its results. OUT defaults to ./mig_report.
Titles name each estimator, the factors it counted, how many images it was computed on
and the dataset (marked procedural where it is).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vae_jax import statistics
# Also reached as vae_jax.report.<name>, where scripts and notebooks look for them.
from vae_jax.model_groups import CONVENTIONS, Model, group_labels, group_models, load_models, summarize


class ReportError(Exception):
  """No run could be read; the message says why for each."""


def _describe(models: Sequence[Model], key: str) -> str:
  """'estimator; factors: ...; N images' for one convention, naming mixtures honestly."""
  estimators = sorted({m.mig[key]["estimator"] for m in models})
  factors = sorted({m.mig[key]["factors"] for m in models})
  images = sorted({m.mig[key]["images"] for m in models})
  text = " / ".join(estimators)
  text += "; factors: " + (" | ".join(", ".join(f) for f in factors) if len(factors) <= 2 else "mixed")
  if key == "mig" and images and images[0]:
    text += "; " + (f"{images[0]:,} images" if len(images) == 1 else f"{images[0]:,}–{images[-1]:,} images")
  return text


def _datasets_line(models: Sequence[Model]) -> str:
  parts = []
  for name in sorted({m.dataset for m in models}):
    notes = {m.dataset_note for m in models if m.dataset == name and m.dataset_note}
    parts.append(name + (f" ({'; '.join(sorted(notes))})" if notes else ""))
  return ", ".join(parts)


def draw_distribution(groups: dict[tuple, list[Model]], path: str, *, seed: int = 0) -> str:
  """One panel per MIG convention: a box per group, every model's MIG as a jittered point."""
  keys = list(groups)
  labels = group_labels(keys)
  all_models = [m for ms in groups.values() for m in ms]
  width = max(5.0, 1.4 + 0.9 * len(keys))
  fig = Figure(figsize=(2 * width, 5.2), dpi=100, layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, len(CONVENTIONS), squeeze=False)[0]
  rng = np.random.default_rng(seed)
  for ax, (key, name) in zip(axes, CONVENTIONS):
    data = [[m.mig[key]["value"] for m in groups[k]] for k in keys]
    ax.boxplot(data, positions=range(len(keys)), widths=0.55, whis=(0, 100), showfliers=False,
               medianprops=dict(color="tab:red", lw=1.8), boxprops=dict(color="0.3"), whiskerprops=dict(color="0.3"),
               capprops=dict(color="0.3"))
    for i, values in enumerate(data):
      ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=18, color="tab:blue", alpha=0.75, zorder=3,
                 edgecolors="none")
    tick_labels = [f"{lab}\nn={len(groups[k])}" for k, lab in zip(keys, labels)]
    tilt = len(keys) > 4
    ax.set_xticks(range(len(keys)), tick_labels, rotation=30 if tilt else 0, ha="right" if tilt else "center",
                  fontsize=8.5)
    ax.set_ylabel("MIG (gap in I(z_j; v_k) / H(v_k))", fontsize=9)
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{name}\n{_wrap(_describe(all_models, key), 0.8 * width, 9)}", fontsize=9)
  fig.suptitle(_wrap(f"MIG per model and β: {len(all_models)} models (ensemble members) on "
                     f"{_datasets_line(all_models)}; box = quartiles, red line = median, whiskers = range, "
                     "points = models", 1.9 * width, 10), fontsize=10)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100, facecolor="white")
  return path


def _wrap(text: str, width_in: float, fontsize: float = 9.0) -> str:
  import textwrap
  return "\n".join(textwrap.wrap(text, max(30, int(width_in * 72 / (fontsize * 0.56)))))


def tc_vs_beta_vae(groups: dict[tuple, list[Model]]) -> list[tuple[tuple, tuple]]:
  """(β-TCVAE group key, β-VAE group key) pairs with the same dataset, architecture and β."""
  beta_vae = {(k[0], k[1], dict(k[3]).get("beta")): k for k in groups if k[2] == "betavae"}
  pairs = []
  for k in groups:
    if k[2].split("/")[0] == "betatcvae":
      match = beta_vae.get((k[0], k[1], dict(k[3]).get("beta")))
      if match is not None:
        pairs.append((k, match))
  return pairs


def comparison_lines(groups: dict[tuple, list[Model]]) -> list[str]:
  """Markdown: per β-TCVAE group with a β-VAE group at its β, and per MIG convention, the
  difference of the medians (β-TCVAE − β-VAE), its 95% bootstrap interval over seeds and the
  exact two-sided Mann–Whitney p (vae_jax.statistics). Empty if there is no such pair."""
  pairs = tc_vs_beta_vae(groups)
  if not pairs:
    return []
  labels = dict(zip(groups, group_labels(list(groups))))
  lines = ["", "β-TCVAE − β-VAE at the same β (difference of the medians; 95% percentile-bootstrap interval "
           "resampling each group's seeds; exact two-sided Mann–Whitney p, whose smallest value with 5 and 5 "
           "models is 0.008 and with 3 and 3 is 0.1):", "",
           "| β-TCVAE group | β-VAE group | n |" + "".join(f" {name}: difference [95% interval] | p |"
                                                       for _, name in CONVENTIONS),
           "|---|---|---|" + "---|---:|" * len(CONVENTIONS)]
  stats = {(tc, bv, key): pair_statistics(groups[tc], groups[bv], key) for tc, bv in pairs for key, _ in CONVENTIONS}
  for tc, bv in pairs:
    row = f"| {labels[tc]} | {labels[bv]} | {len(groups[tc])} vs {len(groups[bv])} |"
    for key, _ in CONVENTIONS:
      c, _ = stats[tc, bv, key]
      row += f" {statistics.signed_interval(c['difference'], c['low'], c['high'])} | {c['p']:.3f} |"
    lines.append(row)
  return lines + paired_comparison_lines(groups, pairs, labels, stats)


def _by_seed(models: list[Model], key: str) -> dict[int, float] | None:
  """{seed: MIG value} of a group, or None if a seed occurs twice (then it is not one model per seed)."""
  values = {m.seed: m.mig[key]["value"] for m in models}
  return values if len(values) == len(models) else None


def pair_statistics(a: list[Model], b: list[Model], key: str) -> tuple[dict, dict | None]:
  """Groups a and b compared in MIG convention `key`: statistics.compare over their seeds and,
  where both hold one model per seed on the same seeds, statistics.compare_paired (else None)."""
  unpaired = statistics.compare([m.mig[key]["value"] for m in a], [m.mig[key]["value"] for m in b])
  a_seed, b_seed = _by_seed(a, key), _by_seed(b, key)
  paired = (statistics.compare_paired(a_seed, b_seed)
            if a_seed is not None and b_seed is not None and set(a_seed) == set(b_seed) else None)
  return unpaired, paired


def paired_comparison_lines(groups: dict[tuple, list[Model]], pairs: list[tuple[tuple, tuple]],
                            labels: dict[tuple, str], stats: dict[tuple, tuple[dict, dict | None]]) -> list[str]:
  """Markdown: for the β-TCVAE/β-VAE pairs trained on the same seeds (the same initialisations
  and data orders), per MIG convention the per-seed differences, their median with a 95%
  bootstrap interval over seeds, how many seeds favour β-TCVAE and the exact two-sided
  Wilcoxon signed-rank p (vae_jax.statistics.compare_paired). stats: {(β-TCVAE key, β-VAE key,
  convention): pair_statistics}. Empty if no pair shares its seeds."""
  rows = []
  for tc, bv in pairs:
    cells = []
    for key, _ in CONVENTIONS:
      _, c = stats[tc, bv, key]
      if c is None:
        break
      per_seed = ", ".join(f"{d:+.3f}" for d in c["differences"].values())
      cells.append(f" {per_seed} | {statistics.signed_interval(c['median'], c['low'], c['high'])} | "
                   f"{c['higher']} of {c['n']} | {c['p']:.4f} |")
    else:
      seeds = ", ".join(str(seed) for seed in sorted(m.seed for m in groups[tc]))
      rows.append(f"| {labels[tc]} | {labels[bv]} | {seeds} |" + "".join(cells))
  if not rows:
    return []
  return ["", "The same pairs seed by seed, where both groups were trained on the same seeds (the same "
          "initialisations and data orders): β-TCVAE − β-VAE per seed (in seed order), the median of these "
          "differences with its 95% percentile-bootstrap interval over seeds, the seeds where β-TCVAE "
          "scores higher, and the exact two-sided Wilcoxon signed-rank p (its smallest value with 5 pairs "
          "is 0.0625):", "",
          "| β-TCVAE group | β-VAE group | seeds |" + "".join(
              f" {name}: per seed | median [95% interval] | higher | p |" for _, name in CONVENTIONS),
          "|---|---|---|" + "---|---|---:|---:|" * len(CONVENTIONS)] + rows


def markdown_table(groups: dict[tuple, list[Model]]) -> str:
  """The summary table (group, n, median and IQR per MIG convention) and the per-model table, in markdown."""
  keys = list(groups)
  labels = group_labels(keys)
  all_models = [m for ms in groups.values() for m in ms]
  lines = ["# MIG per model and β", "",
           f"Dataset: {_datasets_line(all_models)}. Each model is one ensemble member of one run "
           f"({len(all_models)} models from {len({m.run for m in all_models})} runs).", ""]
  for key, name in CONVENTIONS:
    lines.append(f"- **{name}**: {_describe(all_models, key)}.")
  lines += ["", "IQR is the interquartile range Q3 − Q1 (shown with [Q1, Q3]); steps: the training steps of the "
            "checkpoints evaluated (a range means the group mixes run lengths).", ""]
  header = "| group | n | steps |" + "".join(f" {name}: median | IQR [Q1, Q3] |" for _, name in CONVENTIONS)
  lines += [header, "|---|---:|---:|" + "---:|---|" * len(CONVENTIONS)]
  for k, label in zip(keys, labels):
    steps = sorted({m.step for m in groups[k]})
    row = f"| {label} | {len(groups[k])} | {steps[0]:,}" + (f"–{steps[-1]:,} |" if len(steps) > 1 else " |")
    for key, _ in CONVENTIONS:
      s = summarize([m.mig[key]["value"] for m in groups[k]])
      row += f" {s['median']:.3f} | {s['iqr']:.3f} [{s['q1']:.3f}, {s['q3']:.3f}] |"
    lines.append(row)
  others = sorted({name for m in all_models for name in m.scores} - {key for key, _ in CONVENTIONS})
  if others:
    lines += ["", "Other metrics with a headline value (median, IQR [Q1, Q3]; n models that have it):", "",
              "| group |" + "".join(f" {name} |" for name in others), "|---|" + "---|" * len(others)]
    for k, label in zip(keys, labels):
      cells = []
      for name in others:
        values = [m.scores[name] for m in groups[k] if name in m.scores]
        s = summarize(values) if values else None
        cells.append(f" {s['median']:.3f}, {s['iqr']:.3f} [{s['q1']:.3f}, {s['q3']:.3f}]; n={s['n']} |" if s else " – |")
      lines.append(f"| {label} |" + "".join(cells))
  lines += comparison_lines(groups)
  lines += ["", "## Models", "", "| group | run | member | seed | step |"
            + "".join(f" {name} |" for _, name in CONVENTIONS), "|---|---|---:|---:|---:|" + "---:|" * len(CONVENTIONS)]
  for k, label in zip(keys, labels):
    for m in groups[k]:
      lines.append(f"| {label} | {m.run} | {m.member} | {m.seed} | {m.step} |"
                   + "".join(f" {m.mig[key]['value']:.3f} |" for key, _ in CONVENTIONS))
  return "\n".join(lines) + "\n"


def summary_markdown(groups: dict[tuple, list[Model]]) -> str:
  """A study README's summary in Chen et al.'s convention (the sampling MIG): one row per group
  (its seeds, every model's MIG in seed order, median, IQR), then per β-TCVAE/β-VAE pair at
  one β the medians' difference with its 95% bootstrap interval and Mann–Whitney p and, where
  both groups hold the same seeds, the median per-seed difference with its interval, the seeds
  favouring β-TCVAE and the Wilcoxon signed-rank p. mig_table.md has the histogram MIG too."""
  labels = dict(zip(groups, group_labels(list(groups))))
  lines = ["| group | seeds | Chen MIG per seed (seed order) | median | IQR [Q1, Q3] |", "|---|---|---|---:|---|"]
  for k, models in groups.items():
    ordered = sorted(models, key=lambda m: (m.seed, m.run, m.member))
    values = [m.mig["mig"]["value"] for m in ordered]
    s = summarize(values)
    lines.append(f"| {labels[k]} | {', '.join(str(m.seed) for m in ordered)} | "
                 f"{', '.join(f'{v:.3f}' for v in values)} | {s['median']:.3f} | "
                 f"{s['iqr']:.3f} [{s['q1']:.3f}, {s['q3']:.3f}] |")
  pairs = tc_vs_beta_vae(groups)
  if pairs:
    lines += ["", "| β-TCVAE − β-VAE | n | medians' difference [95% bootstrap] | Mann–Whitney p | "
              "per-seed differences: median [95% bootstrap] | β-TCVAE higher | Wilcoxon p |",
              "|---|---|---|---:|---|---:|---:|"]
    for tc, bv in pairs:
      c, d = pair_statistics(groups[tc], groups[bv], "mig")
      row = (f"| {labels[tc]} − {labels[bv]} | {len(groups[tc])} vs {len(groups[bv])} | "
             f"{statistics.signed_interval(c['difference'], c['low'], c['high'])} | {c['p']:.3f} |")
      if d is not None:
        row += (f" {statistics.signed_interval(d['median'], d['low'], d['high'])} | {d['higher']} of {d['n']} | "
                f"{d['p']:.3f} |")
      else:
        row += " – (different seeds) | – | – |"
      lines.append(row)
  return "\n".join(lines) + "\n"


SUMMARY_MARKERS = ("<!-- mig_summary: begin -->", "<!-- mig_summary: end -->")


def write_marked_section(path: str, text: str, begin: str, end: str) -> None:
  """Replaces the text between the marker lines `begin` and `end` in the markdown file at path by
  `text` (appends both markers and the text if absent; creates the file if missing), so a
  generated table in a README or doc is rewritten in place and never lags its data."""
  old = open(path).read() if os.path.exists(path) else ""
  block = f"{begin}\n{text.rstrip(chr(10))}\n{end}"
  if begin in old and end in old:
    new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, old, flags=re.S)
  else:
    new = (old.rstrip("\n") + "\n\n" if old else "") + block + "\n"
  with open(path, "w") as f:
    f.write(new)


def write_report(run_dirs: Sequence[str], out_dir: str) -> dict[str, Any]:
  """Reads the runs, writes OUT/mig_distribution.png and OUT/mig_table.md; returns paths, groups and problems.

  Raises:
    ReportError: no run dir held an evaluated model (the message lists why for each).
  """
  models, problems = load_models(run_dirs)
  if not models:
    raise ReportError("No evaluated models found:\n  " + "\n  ".join(problems))
  groups = group_models(models)
  os.makedirs(out_dir, exist_ok=True)
  figure = draw_distribution(groups, os.path.join(out_dir, "mig_distribution.png"))
  table = os.path.join(out_dir, "mig_table.md")
  with open(table, "w") as f:
    f.write(markdown_table(groups))
  return dict(figure=figure, table=table, groups=groups, problems=problems)


def main(argv: Sequence[str] | None = None) -> int:
  """CLI: python -m vae_jax.report RUN_DIR [RUN_DIR ...] [--out=DIR] [--readme=FILE]."""
  parser = argparse.ArgumentParser(prog="python -m vae_jax.report", description=__doc__.split("\n\n")[0])
  parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="workdirs with metrics.json (or their parent)")
  parser.add_argument("--out", default="mig_report", help="output folder (default: ./mig_report)")
  parser.add_argument("--readme", default=None,
                      help="also write the summary (summary_markdown) into this markdown file, between the lines "
                           f"{SUMMARY_MARKERS[0]} and {SUMMARY_MARKERS[1]} (appended if absent)")
  args = parser.parse_args(argv)
  try:
    result = write_report(args.run_dirs, args.out)
  except ReportError as e:
    print(f"FATAL: {e}", file=sys.stderr)
    return 1
  for problem in result["problems"]:
    print(f"WARNING: skipped {problem}", file=sys.stderr)
  n = sum(len(v) for v in result["groups"].values())
  print(f"{n} models in {len(result['groups'])} groups → {result['figure']}, {result['table']}")
  if args.readme:
    write_marked_section(args.readme, summary_markdown(result["groups"]), *SUMMARY_MARKERS)
    print(f"summary → {args.readme}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
