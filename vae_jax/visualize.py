"""--mode=visualize: the figures of a workdir's latest checkpoint.

    python -m vae_jax.main --config=... --workdir=runs/x --mode=visualize

restores the checkpoint (vae_jax.rundir.restore_run) and writes, for each ensemble
member, the figures of vae_jax.figures (reconstructions, prior samples, traversal grid
and GIFs, latent-vs-factor plot, MI heat map) into workdir/figures/ (one member) or
workdir/figures/member_m/ (several), and their PNGs to TensorBoard.
"""

from __future__ import annotations

from typing import Sequence

import jax
import ml_collections

from vae_jax import codes, figures, rundir, writers


def visualize_workdir(config: ml_collections.ConfigDict, workdir: str, *, members: Sequence[int] | None = None,
                      run: rundir.Run | None = None) -> dict[int, dict[str, str]]:
  """The figures of every member (or of `members`) of workdir's latest checkpoint.

  Returns {member: {figure name: path}}. `run` (rundir.restore_run's result, with the
  holdout applied) saves restoring again.

  Holds the workdir's lock (rundir.hold_workdir) while it draws.

  Raises:
    FileNotFoundError: the workdir has no checkpoint (nothing is created).
  """
  with rundir.hold_workdir(workdir, existing=run is None):
    run = run if run is not None else rundir.restore_run(config, workdir)
    members = range(codes.num_members(run.params)) if members is None else members
    writer = writers.create_writer(workdir, tensorboard=config.tensorboard, just_logging=jax.process_index() != 0)
    out = {}
    try:
      for m in members:
        out[m] = figures.write_figures(run.model, run.objective, run.params, run.dataset, workdir, member=m,
                                       step=run.step, writer=writer, subset_images=config.eval.subset_images,
                                       seed=config.seed)
    finally:
      writer.close()
    return out


__all__ = ["visualize_workdir"]
