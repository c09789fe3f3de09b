"""Sweeps: reading sweep files, the Figure 5 protocols, running, skipping and resuming runs."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO
from vae_jax import configlib, report, sweep

FIGURE5 = str(REPO / "experiments" / "figure5_dsprites" / "sweep.py")


def test_load_sweep_errors_say_what_to_fix(tmp_path):
  with pytest.raises(sweep.SweepError, match="does not exist"):
    sweep.load_sweep(str(tmp_path / "nope.py"), "cpu")
  with pytest.raises(sweep.SweepError, match="no protocol 'gpu'.*'cpu', 'cpu_v2', 'accelerator', 'test'"):
    sweep.load_sweep(FIGURE5, "gpu")
  bare = tmp_path / "bare.py"
  bare.write_text("X = 1\n")
  with pytest.raises(sweep.SweepError, match="must define PROTOCOLS and get_sweep"):
    sweep.load_sweep(str(bare), "cpu")
  bad = tmp_path / "bad.py"
  bad.write_text(textwrap.dedent("""
      from vae_jax.configlib import base_config
      PROTOCOLS = ("p",)
      def get_sweep(protocol):
        c = base_config()
        c.ensemble.num_members = 2
        c.ensemble.betas = (1.0, 2.0, 3.0)
        return {"r": c}
  """))
  with pytest.raises(sweep.SweepError, match="run 'r'.*betas"):
    sweep.load_sweep(str(bad), "p")


def _members(config):
  betas = configlib.member_hparams(config).get("beta", (None,) * config.ensemble.num_members)
  return list(zip(range(config.seed, config.seed + config.ensemble.num_members), betas))


def test_figure5_cpu_protocol_is_the_issue_s_study():
  runs = sweep.load_sweep(FIGURE5, "cpu")
  assert sorted(runs) == sorted(["vae", "betavae", "betatcvae", "dipvae_i_lambda_od10", "annealedvae_c_max25",
                                 "dipvae_ii_lambda_od10", "factorvae_tc_weight7", "factorvae_tc_weight3"])
  assert _members(runs["vae"]) == [(0, None), (1, None), (2, None)]  # The VAE has no β.
  for name in ("betavae", "betatcvae"):
    betas = [b for _, b in _members(runs[name])]
    assert sorted(set(betas)) == [4.0, 8.0] and all(betas.count(b) >= 3 for b in set(betas))
  # FactorVAE's γ = β − 1 (the same total weight on the TC), on the seeds of that β's block.
  assert [s for s, _ in _members(runs["factorvae_tc_weight3"])] == [s for s, b in _members(runs["betavae"]) if b == 4]
  assert configlib.member_hparams(runs["factorvae_tc_weight3"])["tc_weight"] == (3.0,) * 3
  assert [s for s, _ in _members(runs["factorvae_tc_weight7"])] == [s for s, b in _members(runs["betavae"]) if b == 8]
  assert configlib.member_hparams(runs["factorvae_tc_weight7"])["tc_weight"] == (7.0,) * 3
  for name, hparam in (("dipvae_i_lambda_od10", "lambda_od"), ("dipvae_ii_lambda_od10", "lambda_od"),
                       ("annealedvae_c_max25", "c_max")):
    assert len(configlib.member_hparams(runs[name])[hparam]) == 3 and runs[name].seed == 0
  # AnnealedVAE reaches its capacity within the run.
  annealed = runs["annealedvae_c_max25"]
  assert 0 < annealed.loss.capacity_steps < annealed.num_train_steps
  for name, config in runs.items():
    assert config.model.architecture == "mlp" and config.data.name == "dsprites_procedural"
    assert config.eval.final == "full" and config.loss.estimator == "mws"
    assert name.startswith(config.loss.objective)
  # The same number of images for every model.
  assert len({c.num_train_steps * c.batch_size for c in runs.values()}) == 1
  assert runs["betatcvae"].loss.objective == "betatcvae" and runs["betavae"].loss.objective == "betavae"


def test_figure5_cpu_v2_protocol_has_five_paired_seeds_per_cell():
  runs = sweep.load_sweep(FIGURE5, "cpu_v2")
  cells = {name: _members(config) for name, config in runs.items()}
  assert cells["vae"] == [(s, None) for s in range(5)]
  for beta in (2, 4, 6, 8):
    for objective in ("betavae", "betatcvae"):
      assert cells[f"{objective}_beta{beta}"] == [(s, float(beta)) for s in range(5)]  # Seeds 0-4 in every cell.
      assert runs[f"{objective}_beta{beta}"].loss.objective == objective
  assert len(runs) == 9
  for config in runs.values():
    assert (config.num_train_steps, config.batch_size, config.model.architecture) == (2_500, 256, "mlp")
    assert config.loss.estimator == "mws" and config.eval.final == "full"


def test_figure5_accelerator_protocol_needs_no_tensorflow():
  runs = sweep.load_sweep(FIGURE5, "accelerator")
  for name in ("betavae", "betatcvae"):
    config = runs[name]
    betas = [b for _, b in _members(config)]
    assert sorted(set(betas)) == [1.0, 2.0, 4.0, 6.0, 8.0, 10.0] and all(betas.count(b) == 5 for b in set(betas))
  for config in runs.values():
    assert config.model.architecture == "conv64" and config.data.pipeline == "numpy"


def test_run_sweep_writes_records_skips_done_runs_and_feeds_the_report(tmp_path, monkeypatch):
  runs = sweep.load_sweep(FIGURE5, "test")
  workdir, results = str(tmp_path / "runs"), str(tmp_path / "results")

  paths = sweep.run_sweep(runs, workdir, results, only=["vae"])
  assert [os.path.basename(os.path.dirname(p)) for p in paths] == ["vae"]
  with open(paths[0]) as f:
    record = json.load(f)
  assert record["run"] == "vae" and record["objective"] == "vae"
  assert record["images_per_member"] == runs["vae"].num_train_steps * runs["vae"].batch_size
  assert record["wall_seconds"] > 0 and record["machine"]["cpu_cores"] >= 1 and record["machine"]["backend"] == "cpu"
  assert record["config"]["loss"]["objective"] == "vae" and record["config"]["ensemble"]["num_members"] == 2
  assert [(m["seed"], m["hparams"]) for m in record["members"]] == [(0, {}), (1, {})]
  for m in record["members"]:
    assert 0 <= m["mig"]["value"] <= 1 and 0 <= m["mig_histogram"]["value"] <= 1
    assert {"index_code_mi", "total_correlation", "dimwise_kl"} <= set(m["elbo_decomposition"])

  # A second start must not train "vae" again: only the two missing runs are trained.
  from vae_jax import train

  trained = []
  real = train.train_and_evaluate
  monkeypatch.setattr(train, "train_and_evaluate", lambda c, w: trained.append(os.path.basename(w)) or real(c, w))
  paths = sweep.run_sweep(runs, workdir, results)
  assert trained == ["betavae", "betatcvae"] and all(os.path.isfile(p) for p in paths)

  out = report.write_report([results], str(tmp_path / "report"))
  labels = report.group_labels(list(out["groups"]))
  assert labels == ["VAE", "β-VAE β=4", "β-TCVAE (MWS) β=4"]
  assert [len(v) for v in out["groups"].values()] == [2, 2, 2]


def test_only_names_unknown_runs():
  with pytest.raises(sweep.SweepError, match="unknown runs \\['nope'\\]"):
    sweep.run_sweep(sweep.load_sweep(FIGURE5, "test"), "/tmp/unused", "/tmp/unused", only=["nope"])


def test_a_sweep_runs_where_tensorflow_is_not_installed(tmp_path):
  # The accelerator protocol must run on a machine with JAX only: no TensorFlow import anywhere.
  code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None\n"
          "from absl import app\nfrom vae_jax import sweep\napp.run(sweep.main)")
  results = tmp_path / "results"
  proc = subprocess.run(
      [sys.executable, "-c", code, f"--sweep={FIGURE5}", "--protocol=test", f"--workdir={tmp_path / 'runs'}",
       f"--results={results}", "--only=betatcvae"],
      cwd=REPO, env={**os.environ, "XLA_FLAGS": ""}, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (results / "betatcvae" / "results.json").is_file()
  with open(tmp_path / "runs" / "betatcvae" / "metrics.jsonl") as f:
    steps = [json.loads(line).get("step") for line in f]
  assert 4 in steps  # The last training step's metrics were written.


# Sweeps over machines: --shard=I/N, VAE_JAX_SWEEP_SHARD, SLURM arrays.


@pytest.mark.parametrize("count", [1, 2, 3, 7, 12])
def test_shards_partition_the_ordered_runs(count):
  names = [f"run{i:02d}" for i in range(10)]
  shards = [sweep.shard_runs(names, i, count) for i in range(count)]
  assert sorted(n for s in shards for n in s) == names  # Every run in exactly one shard.
  assert max(map(len, shards)) - min(map(len, shards)) <= 1
  assert shards == [sweep.shard_runs(list(names), i, count) for i in range(count)]  # Deterministic.


@pytest.mark.parametrize("spec", ["3/2", "2/2", "a/b", "0/0", "1", "-1/3", "1/2/3", ""])
def test_bad_shard_specs_are_one_clear_error(spec):
  with pytest.raises(sweep.SweepError, match=r"is not I/N with 0 <= I < N") as e:
    sweep.parse_shard(spec)
  assert "\n" not in str(e.value)


def test_shard_from_the_environment():
  assert sweep.shard_from_environment({}) is None
  assert sweep.shard_from_environment({"VAE_JAX_SWEEP_SHARD": "1/3"}) == (1, 3)
  slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}
  assert sweep.shard_from_environment(slurm) == (2, 4)
  assert sweep.shard_from_environment({**slurm, "VAE_JAX_SWEEP_SHARD": "0/2"}) == (0, 2)  # The explicit one wins.
  with pytest.raises(sweep.SweepError, match="'9/4' is not I/N"):
    sweep.shard_from_environment({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"})


def test_shards_together_write_exactly_the_unsharded_sweep(tmp_path, monkeypatch):
  from vae_jax import train

  base = sweep.load_sweep(FIGURE5, "test")["vae"]
  runs = {f"r{i}": base for i in range(5)}
  monkeypatch.setattr(train, "train_and_evaluate", lambda c, w: {"members": [], "workdir": os.path.basename(w)})
  unsharded = sweep.run_sweep(runs, str(tmp_path / "w"), str(tmp_path / "all"))
  sharded = [p for i in range(3) for p in sweep.run_sweep(runs, str(tmp_path / "w"), str(tmp_path / f"s{i}"),
                                                          shard=(i, 3))]
  names = lambda paths: sorted(os.path.relpath(p, os.path.dirname(os.path.dirname(p))) for p in paths)
  assert names(sharded) == names(unsharded) == [f"r{i}/results.json" for i in range(5)]
  for path in sharded:
    with open(path) as f:
      record = json.load(f)
    assert record["workdir"] == record["run"]


def test_sweep_cli_rejects_a_bad_shard_in_one_line(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "vae_jax.sweep", f"--sweep={FIGURE5}", "--protocol=test",
                         f"--workdir={tmp_path}", "--shard=3/2"], cwd=REPO, capture_output=True, text=True, timeout=120,
                        env={**os.environ, "XLA_FLAGS": ""})
  assert proc.returncode != 0
  errors = [line for line in proc.stderr.splitlines() if "3/2" in line]
  assert errors and "is not I/N" in errors[0], proc.stderr[-2000:]
  assert not (tmp_path / "vae").exists()


RECIPE = REPO / "experiments" / "recipe_dsprites"


def _load(path, name):
  """The Python file at path as a module (a report script or a config file)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _flat(config) -> dict:
  out = {}
  for key, value in config.to_dict().items():
    if isinstance(value, dict):
      out.update({f"{key}.{k}": v for k, v in value.items()})
    else:
      out[key] = value
  return out


def test_recipe_screen_candidates_change_only_their_named_setting():
  cpu = sweep.load_sweep(str(RECIPE / "sweep.py"), "cpu")
  screen = sweep.load_sweep(str(RECIPE / "sweep.py"), "screen")
  base = _flat(cpu["mws"])
  expected = {"mws_beta10": {"loss.beta": 10.0}, "mws_beta16": {"loss.beta": 16.0},
              "mws_lr3e-3": {"optimizer.learning_rate": 3e-3}, "mws_lecun": {"model.init": "lecun"},
              "mws_log_sigma": {"model.scale_output": "log_sigma"}, "mws_width600": {"model.mlp_width": 600},
              "mws_warmup200": {"loss.warmup_steps": 200}}
  assert set(screen) >= set(expected)
  for name, changes in expected.items():
    got = _flat(screen[name])
    differ = {k: got[k] for k in got if got[k] != base[k] and not k.startswith("eval.")}
    assert differ == {"num_train_steps": 500, **changes}, name
    assert got["eval.final"] == "subset" and got["ensemble.num_members"] == 5 and got["seed"] == 0


def test_recipe_screen_table_compares_with_the_mws_arm_at_the_same_images():
  recipe_report = _load(RECIPE / "report.py", "recipe_report")
  base = [0.05, 0.30, 0.10, 0.40, 0.02]
  cand = [0.25, 0.21, 0.02, 0.33, 0.5]
  cpu = {"mws": {"eval_history": [{"images": 64, "mig": [9.0] * 5}, {"images": 128, "mig": base}],
                 "members": [{"seed": s} for s in range(5)]}}
  separate = {"mi": [[0.3, 0.0], [0.0, 0.4]], "best_latent": [0, 1]}
  together = {"mi": [[0.3, 0.0], [0.4, 0.05]], "best_latent": [0, 0]}
  screen = {"x": {"images_per_member": 128,
                  "members": [{"seed": i, "mig": {"value": v, **(together if i == 4 else separate)}}
                              for i, v in enumerate(cand)]}}
  text = recipe_report.screen_table(screen, cpu)
  rows = [line.split("|") for line in text.strip().splitlines()[2:]]
  assert [r[1].strip() for r in rows] == ["`mws` (its `eval_history`)", "`x`"]
  assert float(rows[0][4]) == pytest.approx(float(sorted(base)[2]), abs=5e-4)
  assert float(rows[1][4]) == pytest.approx(0.25, abs=5e-4)
  assert rows[1][6].strip() == "80%" and rows[0][6].strip() == "40%"  # Share of seeds >= 0.2.
  assert rows[1][7].strip().startswith(f"{0.25 - 0.10:+.3f}")
  # Seed by seed: differences +0.20, -0.09, -0.08, -0.07, +0.48; median -0.07, 2 of 5 higher;
  # ranks of |d| 4, 3, 2, 1, 5, W+ = 9 of 15: 26 of the 32 sign assignments lie as far from 7.5.
  paired = rows[1][8].strip()
  assert paired.startswith("-0.070 [") and paired.endswith(", 2 of 5, p = 0.812"), paired
  assert rows[0][8].strip() == "–"
  assert rows[1][10].strip() == "1 of 5"
  with pytest.raises(ValueError, match="no sub-grid MIG at 256"):
    recipe_report.screen_baseline(cpu["mws"], 256)


def test_recipe_paired_cell_needs_the_same_seeds():
  recipe_report = _load(RECIPE / "report.py", "recipe_report")
  assert recipe_report.paired_cell({0: 0.3, 1: 0.2}, {0: 0.1, 2: 0.2}) == "–"
  cell = recipe_report.paired_cell({0: 0.3, 1: 0.4, 2: 0.5}, {0: 0.1, 1: 0.1, 2: 0.1})
  # Three positive differences: only all-positive and all-negative are as extreme, p = 2/8.
  assert cell.startswith("+0.300 [+0.200, +0.400], 3 of 3, p = 0.250"), cell


def test_recipe_demo_protocol_is_the_demo_command_over_seeds_0_to_4():
  default = _load(REPO / "configs" / "default.py", "default_config")
  demo = _flat(default.get_config())
  runs = sweep.load_sweep(str(RECIPE / "sweep.py"), "demo")
  assert list(runs) == [f"seed{s}" for s in range(5)]
  for s, config in enumerate(runs.values()):
    got = _flat(config)
    assert {k: v for k, v in got.items() if v != demo[k]} == ({"seed": s} if s else {}) | {"eval.figures": False}



def _flat_dict(d: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in d.items():
    out.update(_flat_dict(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
  return out


def test_committed_demo_runs_are_runs_of_the_current_demo_config():
  # The README's demo table is read from these records: a change to configs/default.py
  # must come with new runs (the sweep skips any run whose results.json exists).
  runs = sweep.load_sweep(str(RECIPE / "sweep.py"), "demo")
  paths = sorted((RECIPE / "results" / "demo").glob("*/results.json"))
  assert paths, "no committed demo runs"
  for path in paths:
    want = _flat_dict(json.loads(json.dumps(runs[path.parent.name].to_dict())))
    got = _flat_dict(json.loads(path.read_text())["config"])
    # Over the record's keys: objectives that tests register add hyperparameters to the config.
    stale = {k: (v, want.get(k)) for k, v in got.items() if want.get(k) != v}
    assert not stale, f"{path} was trained with another config (committed, current): {stale}"

def test_recipe_demo_table_reports_every_seed_and_seed_0():
  recipe_report = _load(RECIPE / "report.py", "recipe_report")
  migs = {3: 0.40, 0: 0.05, 1: 0.30, 4: 0.21, 2: 0.10}
  separate = {"mi": [[0.3, 0.0], [0.0, 0.4]], "best_latent": [0, 1]}
  demo = {f"seed{s}": {"config": {"seed": s, "num_train_steps": 1500, "batch_size": 256},
                       "train_seconds_total": 60.0 * (s + 1), "resumed_from_step": 0,
                       "members": [{"mig": {"value": v, **separate}}]} for s, v in migs.items()}
  row = recipe_report.demo_table({"configs/default.py": demo}).strip().splitlines()[2].split("|")
  assert row[1].strip() == "configs/default.py" and row[2].strip() == "0, 1, 2, 3, 4" and row[3].strip() == "1,500 × 256"
  assert float(row[4]) == pytest.approx(3.0)  # Median training minutes.
  assert float(row[5]) == pytest.approx(0.21, abs=5e-4)
  assert row[7].strip() == "60%" and row[8].strip() == "0.050"
  assert row[9].strip() == "0.050, 0.300, 0.100, 0.400, 0.210"
  assert row[10].strip() == "0 of 5"


def test_recipe_demo_rows_are_labelled_with_the_demo_commands_overrides():
  recipe_report = _load(RECIPE / "report.py", "recipe_report")
  current = recipe_report.current_demo_config()
  assert current["num_train_steps"] == _load(REPO / "configs" / "default.py", "d").get_config().num_train_steps
  assert recipe_report.demo_label(dict(current, seed=3), current) == "configs/default.py"
  shorter = json.loads(json.dumps(current))
  shorter["num_train_steps"] = 700
  shorter["loss"]["warmup_steps"] = 50
  assert (recipe_report.demo_label(shorter, current)
          == "configs/default.py --config.loss.warmup_steps=50 --config.num_train_steps=700")


def test_recipe_training_minutes_count_every_step_or_none():
  recipe_report = _load(RECIPE / "report.py", "recipe_report")
  minutes = recipe_report.training_minutes_per_model
  assert minutes({"train_seconds_total": 600.0, "train_seconds": 600.0, "resumed_from_step": 0, "members": [{}, {}]}) == 5.0
  # Resumed at step 2,000 with the earlier steps' seconds carried over: the total counts.
  assert minutes({"train_seconds_total": 630.0, "train_seconds": 125.0, "resumed_from_step": 2000, "members": [{}]}) == 10.5
  # Resumed only to evaluate, the earlier seconds not recorded: unknown, not 0.
  assert np.isnan(minutes({"train_seconds_total": 0.01, "train_seconds": 0.01, "resumed_from_step": 2500, "members": [{}]}))


def test_recipe_report_flags_one_latent_holding_two_factors():
  recipe_report = _load(RECIPE / "report.py", "recipe_report")
  # posX and posY both best on latent 1 (as one-latent "position" codes): MIG cannot see it.
  assert recipe_report.shares_a_latent({"mi": [[0.2, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.5, 0.1]], "best_latent": [0, 1, 1]})
  assert not recipe_report.shares_a_latent({"mi": [[0.2, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 0.5]], "best_latent": [0, 1, 2]})
  # A factor no latent captures (orientation, MI ~ 0) does not count, whatever its argmax.
  assert not recipe_report.shares_a_latent({"mi": [[0.01, 0.0], [0.6, 0.0], [0.0, 0.5]], "best_latent": [0, 0, 1]})
