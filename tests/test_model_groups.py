"""Models read from run records: grouping order and labels from the objectives' registry."""

import pytest

from vae_jax import model_groups


def test_labels_and_order_come_from_the_objectives():
  keys = [("d", "mlp", "annealedvae", (("c_max", 25.0), ("capacity_weight", 1000.0))),
          ("d", "mlp", "factorvae", (("tc_weight", 7.0),)),
          ("d", "mlp", "betatcvae/mss", (("alpha", 1.0), ("beta", 4.0), ("gamma", 2.0))),
          ("d", "mlp", "dipvae_ii", (("lambda_od", 10.0),)),
          ("d", "mlp", "vae", ())]
  # The key hyperparameter always, the others only away from their defaults.
  assert model_groups.group_labels(keys) == ["AnnealedVAE C_max=25", "FactorVAE γ=7", "β-TCVAE (MSS) β=4 γ=2",
                                             "DIP-VAE-II λ_od=10", "VAE"]
  models = [model_groups.Model(run="r", member=i, seed=i, hparams=k[3], objective=k[2].split("/")[0],
                               estimator=k[2].partition("/")[2], architecture=k[1], dataset=k[0],
                               dataset_note="", step=1, mig={})
            for i, k in enumerate(keys)]
  order = [key[2] for key in model_groups.group_models(models)]
  assert order == ["vae", "betatcvae/mss", "factorvae", "dipvae_ii", "annealedvae"]


def test_a_run_dir_is_its_own_record_or_its_subfolders(tmp_path):
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "metrics.json").write_text("{}")
  for name in ("b", "a"):
    (tmp_path / "sweep" / name).mkdir(parents=True)
    (tmp_path / "sweep" / name / "results.json").write_text("{}")
  (tmp_path / "sweep" / "unfinished").mkdir()
  assert model_groups.find_metrics(str(tmp_path / "run")) == [str(tmp_path / "run" / "metrics.json")]
  assert model_groups.find_metrics(str(tmp_path / "sweep")) == [
      str(tmp_path / "sweep" / n / "results.json") for n in ("a", "b")]
  assert model_groups.find_metrics(str(tmp_path / "missing")) == []


def test_headline_scores_are_the_values_and_the_total_correlation():
  metrics = {"mig": {"value": 0.25}, "sap": {"value": 1}, "figure": {"value": "x.png"},
             "elbo_decomposition": {"total_correlation": 1.5, "kl": 9.0}, "active_units": {"count": 3}}
  assert model_groups.headline_scores(metrics) == pytest.approx(
      {"mig": 0.25, "sap": 1.0, "total correlation (nats)": 1.5})
