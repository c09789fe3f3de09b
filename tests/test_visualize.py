"""--mode=visualize: every member's figures of a workdir's latest checkpoint."""

import os

import pytest

from vae_jax import checkpoints, rundir, visualize
from vae_jax.data import holdout
from vae_jax.data.dsprites import ProceduralDSprites


def test_visualize_workdir_draws_every_member(test_config, tmp_path):
  config = test_config
  config.data.holdout = "shape=heart&scale=0&orientation=0:4"
  config.ensemble.num_members = 2
  dataset = ProceduralDSprites()
  _, _, _, state = rundir.build(config, dataset, len(holdout.apply_holdout(dataset, config.data.holdout)))
  ckpt = checkpoints.Checkpointer(os.path.join(tmp_path, "checkpoints"))
  ckpt.save(6, state, force=True)
  ckpt.close()
  out = visualize.visualize_workdir(config, str(tmp_path), members=[1])
  assert set(out) == {1}
  figures_dir = tmp_path / "figures" / "member_1"
  assert out[1]["traversal_grid"] == str(figures_dir / "traversal_grid.png")
  for name in ("traversal_grid", "reconstructions_holdout", "mi_heatmap", "latent_vs_factor", "traversal_all"):
    assert os.path.isfile(out[1][name]), name
  assert not os.path.exists(tmp_path / "figures" / "member_0")
  with pytest.raises(FileNotFoundError, match="train first"):
    visualize.visualize_workdir(config, str(tmp_path / "nothing_here"))
