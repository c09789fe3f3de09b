"""The many-run MIG report: grouping, statistics, the figure, the table and missing runs."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from vae_jax import report

FACTORS = ["scale", "orientation", "posX", "posY"]


def write_run(path, objective, betas, migs, hist_migs, *, evaluated=True, seed=0):
  members = []
  for m, (beta, v, hv) in enumerate(zip(betas, migs, hist_migs)):
    member = {"member": m, "seed": seed + m, "beta": beta}
    if evaluated:
      member |= {"images": 737_280,
                 "mig": {"value": v, "estimator": "sampling (Chen et al.)", "factors": FACTORS},
                 "mig_histogram": {"value": hv, "estimator": "histogram (disentanglement_lib)",
                                   "factors": ["shape"] + FACTORS},
                 "elbo_decomposition": {"total_correlation": 10.0 * v + m, "kl": 20.0}}
    members.append(member)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "metrics.json"), "w") as f:
    json.dump({"checkpoint_step": 2000, "dataset": "dsprites_procedural",
               "dataset_note": "procedurally generated grid, not the original dataset file", "objective": objective,
               "estimator": "mws", "architecture": "mlp", "members": members}, f)


@pytest.fixture
def runs(tmp_path):
  rng = np.random.default_rng(0)
  tc = rng.uniform(0.1, 0.4, 8)
  vae = rng.uniform(0.0, 0.1, 4)
  # An ensemble run with two β values, a sweep folder holding several runs, a plain VAE.
  write_run(tmp_path / "tc_a", "betatcvae", [6, 6, 2, 2], tc[:4], tc[:4] / 2)
  write_run(tmp_path / "sweep" / "s1", "betatcvae", [6, 6], tc[4:6], tc[4:6] / 2, seed=10)
  write_run(tmp_path / "sweep" / "s2", "betatcvae", [2, 2], tc[6:], tc[6:] / 2, seed=20)
  write_run(tmp_path / "vae", "vae", [1, 1, 1, 1], vae, vae / 2)
  write_run(tmp_path / "not_evaluated", "vae", [1], [0], [0], evaluated=False)
  os.makedirs(tmp_path / "empty")
  return tmp_path, tc, vae


def test_groups_statistics_and_files(runs):
  root, tc, vae = runs
  dirs = [str(root / d) for d in ("tc_a", "sweep", "vae", "not_evaluated", "empty", "missing")]
  result = report.write_report(dirs, str(root / "out"))
  groups = result["groups"]
  labels = report.group_labels(list(groups))
  assert labels == ["VAE β=1", "β-TCVAE (MWS) β=2", "β-TCVAE (MWS) β=6"]
  sizes = [len(v) for v in groups.values()]
  assert sizes == [4, 4, 4]
  beta6 = np.concatenate([tc[:2], tc[4:6]])
  s = report.summarize(beta6)
  assert s["median"] == pytest.approx(np.median(beta6))
  assert s["iqr"] == pytest.approx(np.percentile(beta6, 75) - np.percentile(beta6, 25))
  problems = "\n".join(result["problems"])
  assert "not_evaluated" in problems and "no evaluated members" in problems
  assert "empty: has no metrics.json" in problems and "missing: does not exist" in problems

  table = open(result["table"]).read()
  row = next(line for line in table.splitlines() if line.startswith("| β-TCVAE (MWS) β=6 | 4 | 2,000 |"))
  assert f"{np.median(beta6):.3f}" in row and f"{np.median(beta6) / 2:.3f}" in row
  assert "sampling (Chen et al.); factors: scale, orientation, posX, posY; 737,280 images" in table
  assert "procedurally generated" in table
  assert table.count("| VAE β=1 |") == 2 + 4  # Summary row, other-metrics row and one row per model.
  # The full-dataset total correlation of the ELBO decomposition: median over the group's members.
  tc_row = [line for line in table.splitlines() if line.startswith("| VAE β=1 |")][1]
  assert "total correlation (nats)" in table
  assert tc_row.startswith(f"| VAE β=1 | {np.median(10.0 * vae + np.arange(4)):.3f}, ")

  with Image.open(result["figure"]) as im:
    width = max(5.0, 1.4 + 0.9 * 3)
    assert im.size == (round(2 * width * 100), 520)


def test_no_evaluated_run_is_one_clear_error(runs, capsys):
  root, _, _ = runs
  with pytest.raises(report.ReportError, match="No evaluated models"):
    report.write_report([str(root / "not_evaluated"), str(root / "empty")], str(root / "out"))
  assert report.main([str(root / "empty"), f"--out={root / 'out2'}"]) == 1
  assert "has no metrics.json" in capsys.readouterr().err
  assert report.main([str(root / "vae"), str(root / "empty"), f"--out={root / 'out3'}"]) == 0
  captured = capsys.readouterr()
  assert "4 models in 1 groups" in captured.out and "WARNING: skipped" in captured.err
  assert os.path.isfile(root / "out3" / "mig_distribution.png")


def test_beta_tcvae_minus_beta_vae_at_each_beta(tmp_path):
  tc6, bv6 = [0.30, 0.35, 0.40, 0.45, 0.50], [0.05, 0.10, 0.15, 0.20, 0.25]
  write_run(tmp_path / "tc", "betatcvae", [6] * 5 + [2] * 2, tc6 + [0.1, 0.2], [0.1] * 7)
  write_run(tmp_path / "bv", "betavae", [6] * 5 + [4] * 2, bv6 + [0.1, 0.2], [0.1] * 7)
  result = report.write_report([str(tmp_path / "tc"), str(tmp_path / "bv")], str(tmp_path / "out"))
  pairs = report.tc_vs_beta_vae(result["groups"])
  assert [(dict(tc[3])["beta"], dict(bv[3])["beta"]) for tc, bv in pairs] == [(6.0, 6.0)]  # β = 2 and 4 unmatched.
  table = open(result["table"]).read()
  row = next(line for line in table.splitlines() if line.startswith("| β-TCVAE (MWS) β=6 | β-VAE β=6 | 5 vs 5 |"))
  cells = [c.strip() for c in row.split("|")[4:-1]]
  assert cells[0].startswith("+0.250 [")  # median 0.40 − median 0.15
  assert float(cells[1]) == pytest.approx(2 / 252, abs=5e-4)  # Completely separated 5 vs 5 (3 decimals).
  assert cells[2].startswith("+0.000 [+0.000, +0.000]") and float(cells[3]) == 1.0  # Equal histogram MIGs.
  # Both β = 6 groups hold seeds 0-4: the seed-by-seed table pairs them.
  row = next(line for line in table.splitlines() if line.startswith("| β-TCVAE (MWS) β=6 | β-VAE β=6 | 0, 1, 2, 3, 4 |"))
  cells = [c.strip() for c in row.split("|")[4:-1]]
  assert cells[:3] == ["+0.250, +0.250, +0.250, +0.250, +0.250", "+0.250 [+0.250, +0.250]", "5 of 5"]
  assert float(cells[3]) == pytest.approx(2 / 32, abs=5e-5)  # All five seeds one way: the smallest p.
  assert cells[4:7] == ["+0.000, +0.000, +0.000, +0.000, +0.000", "+0.000 [+0.000, +0.000]", "0 of 5"]
  assert float(cells[7]) == 1.0


def test_no_seed_by_seed_table_when_the_groups_have_different_seeds(tmp_path):
  write_run(tmp_path / "tc", "betatcvae", [6] * 3, [0.3, 0.4, 0.5], [0.1] * 3)
  write_run(tmp_path / "bv", "betavae", [6] * 3, [0.1, 0.2, 0.3], [0.1] * 3, seed=10)
  table = open(report.write_report([str(tmp_path / "tc"), str(tmp_path / "bv")], str(tmp_path / "out"))["table"]).read()
  assert "| β-TCVAE (MWS) β=6 | β-VAE β=6 | 3 vs 3 |" in table and "seed by seed" not in table


def test_readme_summary_is_rewritten_in_place_from_the_runs(tmp_path):
  tc6, bv6 = [0.30, 0.05, 0.40, 0.45, 0.50], [0.10, 0.20, 0.15, 0.60, 0.25]
  write_run(tmp_path / "tc", "betatcvae", [6] * 5, tc6, [0.1] * 5)
  write_run(tmp_path / "bv", "betavae", [6] * 5, bv6, [0.1] * 5)
  write_run(tmp_path / "vae", "vae", [1] * 3, [0.02, 0.01, 0.03], [0.1] * 3, seed=7)
  readme = tmp_path / "README.md"
  readme.write_text(f"# Study\n\nbefore\n\n{report.SUMMARY_MARKERS[0]}\nstale\n{report.SUMMARY_MARKERS[1]}\n\nafter\n")
  args = [str(tmp_path / d) for d in ("tc", "bv", "vae")] + [f"--out={tmp_path / 'out'}", f"--readme={readme}"]
  assert report.main(args) == 0
  text = readme.read_text()
  assert text.startswith("# Study\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "stale" not in text
  rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
          for line in text.splitlines() if line.startswith("| ")}
  assert rows["VAE β=1"][:2] == ["7, 8, 9", "0.020, 0.010, 0.030"]
  q1, q3 = np.percentile(bv6, [25, 75])
  assert rows["β-VAE β=6"][2:] == [f"{np.median(bv6):.3f}", f"{q3 - q1:.3f} [{q1:.3f}, {q3:.3f}]"]
  pair = rows["β-TCVAE (MWS) β=6 − β-VAE β=6"]
  assert pair[0] == "5 vs 5" and pair[1].startswith(f"{np.median(tc6) - np.median(bv6):+.3f} [")
  # Per seed +0.20, -0.15, +0.25, -0.15, +0.25: median +0.20, 3 of 5 higher; |d| ranks 3, 1.5, 4.5,
  # 1.5, 4.5 give W+ = 12 of 15; 10 of the 32 sign assignments lie as far from 7.5 (exact with ties).
  assert pair[3].startswith("+0.200 [") and pair[4] == "3 of 5"
  assert float(pair[5]) == pytest.approx(10 / 32, abs=1e-3)  # Printed to 3 decimals.


def test_figure5_readme_summary_is_the_committed_results():
  # The study README's summary must be regenerated whenever a result is committed
  # (python -m vae_jax.report ... --readme=experiments/figure5_dsprites/README.md).
  root = os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "figure5_dsprites")
  models, _ = report.load_models([os.path.join(root, "results", "cpu_v2")])
  assert models, "no committed Figure 5 v2 results"
  text = open(os.path.join(root, "README.md")).read()
  begin, end = report.SUMMARY_MARKERS
  committed = text[text.index(begin) + len(begin):text.index(end)].strip("\n")
  assert committed == report.summary_markdown(report.group_models(models)).strip("\n")
