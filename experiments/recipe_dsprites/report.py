"""The recipe study's table and figure from its committed results.json files.

    python experiments/recipe_dsprites/report.py [--results=experiments/recipe_dsprites/results/cpu]

Writes the markdown table (recipe_table.md, and into README.md between its recipe_table
markers) and recipe_curves.png next to this file:
per arm, the final full-grid Chen MIG over seeds (median, IQR, share of seeds with
MIG >= 0.2, a bootstrap 95% interval on the median's difference from today's recipe,
the `mws` arm, and the paired comparison with it over the seeds both trained: the median
per-seed difference, its bootstrap interval, and the Wilcoxon signed-rank p), and the sub-grid MIG during training against images seen and wall time;
the screen's table (screen_table.md, and into README.md between its screen_table
markers) from results/screen; and the demo's table over seeds (demo_table.md, and into
this README and the repository's README.md between their demo_table markers) from
results/demo (configs/default.py as it is) and results/demo_* (the demo command with
overrides, each row labelled with them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vae_jax.report import write_marked_section
from vae_jax.statistics import compare, compare_paired, signed_interval

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = "mws"
THRESHOLD = 0.2
# A factor counts as captured when its best latent holds at least this share of its
# entropy (the normalised MI of Chen's MIG).
CAPTURED = 0.1


def load(results_dir: str) -> dict[str, dict]:
  """{arm: results.json record} for every finished arm."""
  out = {}
  for arm in sorted(os.listdir(results_dir)) if os.path.isdir(results_dir) else []:
    path = os.path.join(results_dir, arm, "results.json")
    if os.path.isfile(path):
      with open(path) as f:
        out[arm] = json.load(f)
  return out


def final_migs(record: dict) -> np.ndarray:
  """Chen MIG of every member at the end of its run [S]: over the full grid (eval.final =
  "full", the arms and the demo) or the sub-grid ("subset", the screen)."""
  return np.asarray([m["mig"]["value"] for m in record["members"]], np.float64)


def migs_by_seed(record: dict) -> dict[int, float]:
  """{seed: Chen MIG at the end of its run} over the record's members."""
  return {int(m["seed"]): float(m["mig"]["value"]) for m in record["members"]}


PAIRED_HEADER = f"per seed − `{BASELINE}`: median [95% bootstrap], higher in, Wilcoxon p"


def paired_cell(scores: dict[int, float], base: dict[int, float]) -> str:
  """The paired comparison with the baseline over the seeds both were trained on (the same
  initialisations and data orders): the median of the per-seed differences with its 95%
  bootstrap interval over seeds, the seeds that score higher, the exact two-sided Wilcoxon
  signed-rank p (vae_jax.statistics.compare_paired); "–" when the seeds differ."""
  if set(scores) != set(base):
    return "–"
  c = compare_paired(scores, base)
  return f"{signed_interval(c['median'], c['low'], c['high'])}, {c['higher']} of {c['n']}, p = {c['p']:.3f}"


def baseline_cells(scores: dict[int, float], base: dict[int, float]) -> tuple[str, str]:
  """The two comparison cells of an arm's row against the baseline: the medians' difference
  with its 95% bootstrap interval over each side's seeds, and `paired_cell`."""
  c = compare(list(scores.values()), list(base.values()))
  return signed_interval(c["difference"], c["low"], c["high"]), paired_cell(scores, base)


def shares_a_latent(mig: dict) -> bool:
  """Whether two captured factors (best normalised MI >= CAPTURED) have the same best latent.

  MIG scores each factor's gap alone, so one latent that holds posX and posY together (a
  representation that is not disentangled) scores as if each had its own latent; this
  flags such models. mig: a member's "mig" record (normalised "mi" [F, K], "best_latent" [F]).
  """
  mi = np.asarray(mig["mi"], np.float64)
  best = [b for b, row in zip(mig["best_latent"], mi) if row.max() >= CAPTURED]
  return len(best) != len(set(best))


def shared_count(record: dict) -> str:
  """"k of S": members whose captured factors share a latent."""
  return f"{sum(shares_a_latent(m['mig']) for m in record['members'])} of {len(record['members'])}"


def training_minutes_per_model(record: dict) -> float:
  """Training minutes per model (members train one after another), NaN when the record
  does not hold the training time of every step (a run resumed before training seconds
  were recorded across resumptions)."""
  total = record.get("train_seconds_total")
  if total is None:
    return float("nan")
  # A resumed run's total covers the steps before the resume only if their seconds were recorded.
  covered = record.get("resumed_from_step", 0) == 0 or total > record.get("train_seconds", total)
  return total / 60 / len(record["members"]) if covered else float("nan")


def table(records: dict[str, dict]) -> str:
  """The markdown table, one row per arm."""
  lines = ["| arm | seeds | steps × batch | images per model | training min per model | full-grid MIG median | "
           f"IQR [Q1, Q3] | share ≥ {THRESHOLD} | median − `{BASELINE}`, 95% bootstrap | {PAIRED_HEADER} | "
           "MIG per seed | two factors on one latent |",
           "|---|---:|---|---:|---:|---:|---|---:|---|---|---|---:|"]
  base_by_seed = migs_by_seed(records[BASELINE]) if BASELINE in records else None
  for arm, r in records.items():
    v = final_migs(r)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    cfg = r["config"]
    minutes = training_minutes_per_model(r)
    diff = paired = "–"
    if base_by_seed is not None and arm != BASELINE:
      diff, paired = baseline_cells(migs_by_seed(r), base_by_seed)
    lines.append(f"| `{arm}` | {len(v)} | {cfg['num_train_steps']:,} × {cfg['batch_size']} | "
                 f"{r['images_per_member']:,} | {'–' if np.isnan(minutes) else f'{minutes:.1f}'} | {med:.3f} | {q3 - q1:.3f} [{q1:.3f}, {q3:.3f}] | "
                 f"{np.mean(v >= THRESHOLD):.0%} | {diff} | {paired} | {', '.join(f'{x:.3f}' for x in v)} | {shared_count(r)} |")
  return "\n".join(lines) + "\n"


def draw(records: dict[str, dict], path: str) -> str:
  """Median sub-grid MIG (and the seeds' range) against images seen and against wall time per model."""
  fig = Figure(figsize=(11, 4.2), layout="constrained")
  FigureCanvasAgg(fig)
  by_images, by_time = fig.subplots(1, 2)
  for arm, r in records.items():
    history = r.get("eval_history", [])
    members = len(r["members"])
    x_img = np.asarray([h["images"] for h in history] + [r["images_per_member"]], np.float64)
    x_min = np.asarray([h["seconds"] / 60 / members for h in history] + [training_minutes_per_model(r)])
    migs = np.asarray([h["mig"] for h in history] + [list(final_migs(r))])  # Last point: the full grid.
    med = np.median(migs, 1)
    for ax, x in ((by_images, x_img / 1e6), (by_time, x_min)):
      line, = ax.plot(x, med, marker="o", label=arm)
      ax.fill_between(x, migs.min(1), migs.max(1), color=line.get_color(), alpha=0.12)
  by_images.set_xlabel("images seen per model (millions)")
  by_time.set_xlabel("training minutes per model, 2-core CPU (members one after another)")
  for ax in (by_images, by_time):
    ax.set_ylabel("Chen MIG (sub-grid in training; full grid at end)")
    ax.set_xlim(left=0)
    ax.axhline(THRESHOLD, color="0.5", lw=0.8, ls="--")
    ax.grid(alpha=0.3)
  if records:
    by_images.legend(fontsize=8)
  fig.suptitle("β-TCVAE recipes on procedurally generated dSprites: median over 5 seeds, band = range", fontsize=10)
  fig.savefig(path, dpi=100, facecolor="white")
  return path


def screen_baseline(cpu_record: dict, images: int) -> dict[int, float]:
  """The `mws` arm's sub-grid MIG at `images` images (its eval_history), {seed: MIG}."""
  for h in cpu_record.get("eval_history", []):
    if h["images"] == images:
      return {int(m["seed"]): float(x) for m, x in zip(cpu_record["members"], h["mig"])}
  raise ValueError(f"The {BASELINE!r} arm logged no sub-grid MIG at {images:,} images.")


def screen_table(screen: dict[str, dict], cpu_records: dict[str, dict]) -> str:
  """The screen's markdown table: per candidate the sub-grid MIG over seeds at the
  screen's images, against the `mws` arm's sub-grid MIG at the same images."""
  images = {r["images_per_member"] for r in screen.values()}
  if len(images) != 1:
    raise ValueError(f"Screen runs saw different numbers of images: {sorted(images)}.")
  images = images.pop()
  base_by_seed = screen_baseline(cpu_records[BASELINE], images)
  lines = ["| candidate | seeds | images per model | sub-grid MIG median | IQR [Q1, Q3] | "
           f"share ≥ {THRESHOLD} | median − `{BASELINE}`, 95% bootstrap | {PAIRED_HEADER} | MIG per seed | "
           "two factors on one latent |",
           "|---|---:|---:|---:|---|---:|---|---|---|---:|"]
  rows = [(f"`{BASELINE}` (its `eval_history`)", base_by_seed, "–")]
  rows += [(f"`{a}`", migs_by_seed(r), shared_count(r)) for a, r in screen.items()]
  for i, (name, by_seed, shared) in enumerate(rows):
    v = np.asarray(list(by_seed.values()))
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    diff = paired = "–"
    if i:
      diff, paired = baseline_cells(by_seed, base_by_seed)
    lines.append(f"| {name} | {len(v)} | {images:,} | {med:.3f} | {q3 - q1:.3f} [{q1:.3f}, {q3:.3f}] | "
                 f"{np.mean(v >= THRESHOLD):.0%} | {diff} | {paired} | {', '.join(f'{x:.3f}' for x in v)} | {shared} |")
  return "\n".join(lines) + "\n"


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in d.items():
    out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
  return out


def demo_label(record_config: dict, demo_config: dict) -> str:
  """The demo command's overrides that give `record_config` (seed and figures aside):
  "configs/default.py" itself, or e.g. "configs/default.py --config.num_train_steps=1500"."""
  want, got = _flat(demo_config), _flat(record_config)
  overrides = [f"--config.{k}={v}" for k, v in sorted(got.items())
               if k not in ("seed", "eval.figures") and want.get(k) != v]
  return " ".join(["configs/default.py", *overrides])


def demo_row(label: str, demo: dict[str, dict]) -> str:
  """One row of the demo table: a config over seeds (one run per seed), full-grid Chen MIG
  per seed, median, IQR, share of seeds >= 0.2 and seed 0's MIG."""
  runs = sorted(demo.values(), key=lambda r: r["config"]["seed"])
  v = np.concatenate([final_migs(r) for r in runs])
  seeds = [r["config"]["seed"] for r in runs]
  q1, med, q3 = np.percentile(v, [25, 50, 75])
  cfg = runs[0]["config"]
  minutes = np.median([training_minutes_per_model(r) for r in runs])
  seed0 = f"{v[seeds.index(0)]:.3f}" if 0 in seeds else "–"
  return (f"| {label} | {', '.join(map(str, seeds))} | {cfg['num_train_steps']:,} × {cfg['batch_size']} | "
          f"{minutes:.1f} | {med:.3f} | {q3 - q1:.3f} [{q1:.3f}, {q3:.3f}] | {np.mean(v >= THRESHOLD):.0%} | {seed0} | "
          f"{', '.join(f'{x:.3f}' for x in v)} | {sum(shares_a_latent(m['mig']) for r in runs for m in r['members'])} of {len(v)} |")


def demo_table(groups: dict[str, dict[str, dict]]) -> str:
  """The demo's markdown table: one row per {label: {run name: record}} group."""
  return ("| config | seeds | steps × batch | training min per model (median) | full-grid MIG median | "
          f"IQR [Q1, Q3] | share ≥ {THRESHOLD} | seed 0 | MIG per seed | two factors on one latent |\n"
          "|---|---|---|---:|---:|---|---:|---:|---|---:|\n"
          + "".join(demo_row(label, runs) + "\n" for label, runs in groups.items()))


def current_demo_config() -> dict:
  """configs/default.py as the demo protocol trains it (seed 0), in results.json's JSON form."""
  spec = importlib.util.spec_from_file_location("_recipe_sweep", os.path.join(HERE, "sweep.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return json.loads(json.dumps(module.demo_config(0).to_dict()))


def load_demo_groups(results_root: str, demo_config: dict) -> dict[str, dict[str, dict]]:
  """{label: runs} for results/demo (the current configs/default.py) and every other
  results/demo_* folder (earlier runs of the demo command with overrides, kept as records)."""
  groups = {}
  for name in ["demo"] + sorted(n for n in os.listdir(results_root) if n.startswith("demo_")):
    runs = load(os.path.join(results_root, name))
    if runs:
      labels = {demo_label(r["config"], demo_config) for r in runs.values()}
      if len(labels) != 1 or (name == "demo" and labels != {"configs/default.py"}):
        raise SystemExit(f"{results_root}/{name} holds runs of {sorted(labels)}; results/demo must hold runs of "
                         "the current configs/default.py only (move older runs to a results/demo_<what differs> folder).")
      groups[labels.pop()] = runs
  return groups


README_BEGIN, README_END = "<!-- recipe_table: begin -->", "<!-- recipe_table: end -->"
DEMO_BEGIN, DEMO_END = "<!-- demo_table: begin -->", "<!-- demo_table: end -->"
ROOT_README = os.path.join(HERE, "..", "..", "README.md")
SCREEN_BEGIN, SCREEN_END = "<!-- screen_table: begin -->", "<!-- screen_table: end -->"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--results", default=os.path.join(HERE, "results", "cpu"))
  parser.add_argument("--screen", default=os.path.join(HERE, "results", "screen"))
  parser.add_argument("--out", default=HERE)
  args = parser.parse_args()
  records = load(args.results)
  if not records:
    raise SystemExit(f"No finished arm under {args.results}; run the sweep first (see sweep.py).")
  text = table(records)
  with open(os.path.join(args.out, "recipe_table.md"), "w") as f:
    f.write(text)
  write_marked_section(os.path.join(args.out, "README.md"), text, README_BEGIN, README_END)
  print(text)
  print(draw(records, os.path.join(args.out, "recipe_curves.png")))
  screen = load(args.screen)
  if screen:
    text = screen_table(screen, records)
    with open(os.path.join(args.out, "screen_table.md"), "w") as f:
      f.write(text)
    write_marked_section(os.path.join(args.out, "README.md"), text, SCREEN_BEGIN, SCREEN_END)
    print(text)
  groups = load_demo_groups(os.path.join(HERE, "results"), current_demo_config())
  if groups:
    text = demo_table(groups)
    with open(os.path.join(args.out, "demo_table.md"), "w") as f:
      f.write(text)
    for readme in (os.path.join(args.out, "README.md"), ROOT_README):
      if os.path.isfile(readme) and DEMO_BEGIN in open(readme).read():
        write_marked_section(readme, text, DEMO_BEGIN, DEMO_END)
    print(text)

if __name__ == "__main__":
  main()
