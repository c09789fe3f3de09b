"""Downstream uses: AUROC, anomaly scores and report, embedding export, generation."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from vae_jax import downstream, rundir
from vae_jax import codes as codes_lib
from vae_jax.data.grid import PROCEDURAL_NOTE, index_to_factors

HOLDOUT = "shape=heart&scale=0&orientation=0:4"


def pairwise_auroc(scores, labels):
  """P(score of a random positive > that of a random negative) + ½ P(tie), by counting pairs."""
  pos, neg = scores[labels], scores[~labels]
  diff = pos[:, None] - neg[None, :]
  return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_auroc_matches_a_direct_pairwise_count():
  rng = np.random.default_rng(0)
  for _ in range(20):
    n = int(rng.integers(2, 200))
    labels = rng.random(n) < rng.uniform(0.1, 0.9)
    labels[:2] = [True, False]
    scores = rng.integers(0, 6, n).astype(float)  # Many ties.
    assert downstream.auroc(scores, labels) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)
    scores = rng.normal(size=n) + labels
    assert downstream.auroc(scores, labels) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)
  assert downstream.auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
  assert downstream.auroc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
  assert downstream.auroc([5, 5, 5], [0, 1, 0]) == 0.5
  with pytest.raises(ValueError, match="both classes"):
    downstream.auroc([1, 2], [1, 1])
  with pytest.raises(ValueError, match="finite"):
    downstream.auroc([np.nan, 2], [0, 1])


def test_parse_latents():
  np.testing.assert_array_equal(downstream.parse_latents("0,1.5,-2; 3,0,0", 3), [[0, 1.5, -2], [3, 0, 0]])
  with pytest.raises(ValueError, match="latent_dim=3"):
    downstream.parse_latents("0,1", 3)
  with pytest.raises(ValueError, match="numbers"):
    downstream.parse_latents("0,a,1", 3)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A checkpoint of configs/test.py's tiny model (2 members, freshly initialised: training is
  tested elsewhere) whose config holds out small hearts at 4 orientations (4,096 images)."""
  import importlib.util

  from conftest import REPO
  from vae_jax import checkpoints
  from vae_jax.data import holdout
  from vae_jax.data.dsprites import ProceduralDSprites

  spec = importlib.util.spec_from_file_location("test_config_module", REPO / "configs" / "test.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.data.holdout = HOLDOUT
  config.ensemble.num_members = 2
  path = str(tmp_path_factory.mktemp("downstream"))
  dataset = ProceduralDSprites()
  _, _, _, state = rundir.build(config, dataset, len(holdout.apply_holdout(dataset, HOLDOUT)))
  ckpt = checkpoints.Checkpointer(os.path.join(path, "checkpoints"))
  ckpt.save(6, state, force=True)
  ckpt.close()
  return config, path, rundir.restore_run(config, path)


def test_export_round_trip(workdir):
  config, path, run = workdir
  out = os.path.join(path, "emb.npz")
  written = downstream.export_embeddings(config, path, "holdout", out, member=1)  # Restores the checkpoint itself.
  loaded = np.load(out)
  for key, value in written.items():
    np.testing.assert_array_equal(loaded[key], value)
  assert len(loaded["indices"]) == 4096
  np.testing.assert_array_equal(loaded["indices"], run.dataset.holdout_indices)
  np.testing.assert_array_equal(loaded["factor_indices"], index_to_factors(loaded["indices"], (3, 6, 40, 32, 32)))
  f = loaded["factor_indices"]
  assert np.all((f[:, 0] == 2) & (f[:, 1] == 0) & (f[:, 2] < 4)) and loaded["mean"].shape == (4096, 4)
  np.testing.assert_allclose(loaded["factor_values"][:, 1], np.linspace(0.5, 1, 6)[loaded["factor_indices"][:, 1]])
  assert list(loaded["factor_names"]) == ["shape", "scale", "orientation", "posX", "posY"]
  assert int(loaded["member"]) == 1 and int(loaded["seed"]) == config.seed + 1 and str(loaded["split"]) == "holdout"
  # The posteriors are member 1's encoding of exactly those images.
  some = np.array([0, 1234, 4095])
  encoder = codes_lib.member_encoder(run.model, run.objective)
  mean, log_var = codes_lib.encode_images(encoder, codes_lib.member_params(run.params, 1),
                                        run.dataset.full.images(loaded["indices"][some]))
  np.testing.assert_allclose(loaded["mean"][some], mean, atol=1e-5)
  np.testing.assert_allclose(loaded["log_var"][some], log_var, atol=1e-5)
  sub = downstream.export_embeddings(config, path, "subgrid:500", os.path.join(path, "sub.npz"), run=run)
  assert len(sub["indices"]) <= 500 and np.all(np.diff(sub["indices"]) > 0)
  with pytest.raises(ValueError, match="Unknown split"):
    downstream.export_embeddings(config, path, "test", out, run=run)


def test_anomaly_report_and_scores(workdir):
  config, path, run = workdir
  record = downstream.anomaly_report(config, path, num_images=48, run=run)
  on_disk = json.loads(open(os.path.join(path, "anomaly.json")).read())
  assert on_disk == json.loads(json.dumps(record))
  assert record["holdout"] == HOLDOUT and record["num_held_out"] == record["num_in_distribution"] == 48
  assert record["dataset_note"] == PROCEDURAL_NOTE
  assert len(record["members"]) == 2
  for m in record["members"]:
    assert set(m["auroc"]) == set(downstream.ANOMALY_SCORES)
    assert all(0.0 <= v <= 1.0 for v in m["auroc"].values())
  for m in range(2):
    with Image.open(os.path.join(path, "figures", f"anomaly_scores_member_{m}.png")) as im:
      assert im.size == (4 * 380, 360)
  # The scores themselves: KL is the encoder's analytic KL; −ELBO is the reconstruction term plus that KL.
  idx = run.dataset.holdout_indices[:8]
  scores = downstream.anomaly_scores(run.model, run.objective, run.params, run.dataset, idx,
                                     num_importance=config.eval.importance_samples, key=jax.random.PRNGKey(0))
  mean, log_var = codes_lib.encode_images(codes_lib.member_encoder(run.model, run.objective),
                                        codes_lib.member_params(run.params, 0), run.dataset.full.images(idx))
  kl = 0.5 * np.sum(np.exp(log_var) + mean ** 2 - 1 - log_var, axis=1)
  np.testing.assert_allclose(scores["kl"][0], kl, rtol=1e-4)
  assert np.all(scores["neg_elbo"] > scores["kl"]) and scores["neg_elbo"].shape == (2, 8)
  assert "llr_background" not in scores  # Only with a background model.


def test_background_log_likelihood():
  x = np.array([[[[1.0], [0.0]]], [[[0.0], [0.0]]]])  # Two 1 × 2 binary images.
  mean = np.array([[[0.25], [0.5]]])
  np.testing.assert_allclose(downstream.background_log_likelihood(x, mean, "bernoulli"),
                             [np.log(0.25) + np.log(0.5), np.log(0.75) + np.log(0.5)])
  np.testing.assert_allclose(downstream.background_log_likelihood(x, mean, "gaussian"),
                             [-0.5 * (0.75 ** 2 + 0.5 ** 2) - np.log(2 * np.pi), -0.5 * (0.25 ** 2 + 0.5 ** 2)
                              - np.log(2 * np.pi)])


def test_generate_decodes_the_given_latents(workdir):
  config, path, run = workdir
  latents = np.array([[0, 0, 0, 0], [0, 2.5, 0, -1]], np.float32)
  images = downstream.generate(config, path, latents, member=1, run=run)
  np.testing.assert_allclose(
      images, codes_lib.decode_images(run.model, codes_lib.member_params(run.params, 1), latents), atol=1e-6)
  out = downstream.generate_to_file(config, path, "0,0,0,0;0,2.5,0,-1", os.path.join(path, "gen.png"), run=run)
  with Image.open(out) as im:
    assert im.size[0] > 200
  with pytest.raises(ValueError, match="latent_dim=4"):
    downstream.generate_to_file(config, path, "0,0", "", run=run)

