"""The figures of one trained model (one ensemble member), into workdir/figures/
(workdir/figures/member_m/ in an ensemble) and TensorBoard (figures/<name>[/member_m]):

    reconstructions.png           inputs (top row) and their reconstructions (bottom row)
    reconstructions_holdout.png   the same for held-out images (only with data.holdout)
    prior_samples.png             decoder means at z ~ N(0, I)
    traversal_grid.png            one row per latent (by KL to the prior, labelled with it
                                  and the factor it encodes best); columns z_k = −3 … +3,
                                  the other latents at the posterior mean of one image
    traversal_latent{k}.gif       latent k's traversal, animated (−3 → +3 → −3)
    traversal_all.gif             every latent's traversal side by side, in KL order
    latent_vs_factor.png          mean of each latent's posterior mean as each factor varies,
                                  averaged over the others (Chen et al., 2018, Fig. 7)
    mi_heatmap.png                normalised I(z_j; v_k) for every factor and latent

Images are encoded by the objective's encoder (`Objective.encode`: the autoencoder's
codes have zero log-variance), grids through vae_jax.evaluation.encode. The arrays
behind a figure (`codes.traversal_codes`, `codes.kl_per_latent`, ...) are kept apart from the
drawing (vae_jax.plotting), so tests check the numbers that go into a figure.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np
from absl import logging

from vae_jax import codes, models, plotting, writers
from vae_jax.data import holdout as holdout_lib
from vae_jax.data.grid import FactorDataset, factors_to_index, index_to_factors

GIF_STEPS = 17  # Values per GIF traversal (finer than the grid's columns).
RECONSTRUCTIONS = 10  # Images per reconstructions figure.


# ---------------------------------------------------------------------------
# Labels and choices.


def figures_dir(workdir: str, member: int, members: int) -> str:
  """workdir/figures for a single model, workdir/figures/member_m in an ensemble."""
  base = os.path.join(workdir, "figures")
  return base if members == 1 else os.path.join(base, f"member_{member}")


def dataset_label(dataset) -> str:
  """The dataset's name, marked as a procedural stand-in where it is one (dataset.procedural)."""
  name = holdout_lib.full_grid(dataset).name
  return f"{name} (procedurally generated, not the original file)" if getattr(dataset, "procedural", False) else name


def default_image_index(dataset) -> int:
  """A typical image to traverse around: every factor at its middle value (a kept image)."""
  grid = holdout_lib.full_grid(dataset)
  if not grid.factor_names:
    return len(grid) // 2
  index = int(factors_to_index(np.asarray([[s // 2 for s in grid.factor_sizes]]), grid.factor_sizes)[0])
  held = getattr(dataset, "holdout_indices", None)
  if held is not None and np.isin(index, held):
    kept = dataset.kept_indices
    index = int(kept[np.argmin(np.abs(kept - index))])
  return index


def categorical_group_factor(dataset: FactorDataset) -> int | None:
  """The factor to draw one line per value of in the latent-vs-factor plot (dSprites' shape), or None."""
  for f in range(len(dataset.factor_names)):
    if holdout_lib.value_labels(dataset, f) is not None:
      return f
  return None


def value_name(dataset: FactorDataset, factor: int, index: int) -> str:
  """A factor value's label (e.g. 'ellipse') where the dataset names them, else its index."""
  labels = holdout_lib.value_labels(dataset, factor)
  return labels[index] if labels else str(int(index))


# ---------------------------------------------------------------------------
# The figures.


class Codec(NamedTuple):
  """One member's encoder and decoder: model, encoder (`codes.member_encoder`), params (no ensemble axis), likelihood."""

  model: models.VAE
  encoder: Callable
  params: Any
  likelihood: str

  def reconstruct(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(posterior means [n, K], decoder means at them [n, H, W, C]) of images x."""
    mean, _ = codes.encode_images(self.encoder, self.params, x)
    return mean, codes.decode_images(self.model, self.params, mean, self.likelihood)


def write_reconstructions(codec: Codec, dataset, out_dir: str, rng: np.random.Generator, caption: str) -> dict[str, str]:
  """reconstructions.png of training images, and reconstructions_holdout.png of held-out ones."""
  pools = [("reconstructions", holdout_lib.split_indices(dataset, "train"), "training images")]
  if hasattr(dataset, "holdout_indices"):
    pools.append(("reconstructions_holdout", dataset.holdout_indices, f"held-out images ({dataset.spec})"))
  grid = holdout_lib.full_grid(dataset)
  paths = {}
  for name, pool, label in pools:
    chosen = np.sort(rng.choice(pool, size=min(RECONSTRUCTIONS, len(pool)), replace=False))
    x = grid.images(chosen)
    _, recon = codec.reconstruct(x)
    paths[name] = plotting.draw_image_grid(
        [list(x), list(recon)], os.path.join(out_dir, f"{name}.png"), row_labels=["input", "reconstruction"],
        col_labels=[f"#{i}" for i in chosen], layout=plotting.reconstructions_layout(len(chosen)),
        title=f"Reconstructions of {label}: decoder mean at the posterior mean (bottom) of each input (top)\n"
              f"{caption}")
  return paths


def write_prior_samples(codec: Codec, latent_dim: int, key: jax.Array, out_dir: str, caption: str) -> dict[str, str]:
  """prior_samples.png: 8 × 8 decoder means at z ~ N(0, I)."""
  z = np.asarray(jax.random.normal(key, (64, latent_dim)))
  samples = codes.decode_images(codec.model, codec.params, z, codec.likelihood)
  samples = samples.reshape(8, 8, *samples.shape[1:])
  return {"prior_samples": plotting.draw_image_grid(
      [list(row) for row in samples], os.path.join(out_dir, "prior_samples.png"),
      layout=plotting.prior_samples_layout(8, 8),
      title=f"Samples from the prior: decoder means at z ~ N(0, I)\n{caption}")}


def write_traversals(codec: Codec, dataset, image_index: int, kl: np.ndarray, table: codes.MITable | None, out_dir: str,
                     caption: str, num_values: int = codes.TRAVERSAL_STEPS) -> dict[str, str]:
  """traversal_grid.png (rows in KL order, labelled with KL and, given `table`, the best factor)
  and the GIFs traversal_latent{k}.gif and traversal_all.gif, around image `image_index`."""
  grid = holdout_lib.full_grid(dataset)
  order = codes.latent_order_by_kl(kl)
  x0 = grid.images(np.asarray([image_index]))
  mu0, recon0 = codec.reconstruct(x0)
  values = codes.traversal_values(num_values)
  images = codes.traversal_images(codec.model, codec.params, mu0[0], order, values, codec.likelihood)
  described = ""
  if grid.factor_names:
    row = index_to_factors([image_index], grid.factor_sizes)[0]
    described = " (" + ", ".join(f"{n}={value_name(grid, f, i)}" for f, (n, i) in
                                 enumerate(zip(grid.factor_names, row))) + ")"
  row_labels = [f"z{k}   KL {kl[k]:.2f} nats" for k in order]
  if table is not None and table.mi.size:
    best, best_mi = codes.best_factor_per_latent(table.mi)
    row_labels = [f"{label}\nbest: {table.factors[best[k]]} (MI {best_mi[k]:.2f})"
                  for label, k in zip(row_labels, order)]
  paths = {"traversal_grid": plotting.draw_traversal_grid(
      images, values, row_labels, os.path.join(out_dir, "traversal_grid.png"), input_image=x0[0],
      reconstruction=recon0[0],
      title=f"Latent traversals: row = one latent (by KL to the prior, largest first), set to −3 … +3;\n"
            f"the others stay at the posterior mean of image #{image_index}{described}.\n"
            f"{caption}" + (f"; MI: {table.note}" if table is not None else ""))}
  fine = codes.traversal_images(codec.model, codec.params, mu0[0], order, codes.traversal_values(GIF_STEPS), codec.likelihood)
  gifs = {f"traversal_latent{k}": fine[r] for r, k in enumerate(order)}
  gifs["traversal_all"] = np.stack([plotting.tile_images(fine[:, c][None]) for c in range(fine.shape[1])])
  for name, frames in gifs.items():
    paths[name] = plotting.write_gif(plotting.ping_pong(frames), os.path.join(out_dir, f"{name}.gif"))
  return paths


def latent_vs_factor_curves(grid: FactorDataset, means: np.ndarray, indices: np.ndarray,
                            group: int | None) -> tuple[dict[int, np.ndarray], list[np.ndarray]]:
  """({factor: codes.latent_factor_means [G, V_f, K]} of every factor varying in the sub-grid `indices`
  but `group`, and each factor's values present [V_f])."""
  factor_idx = index_to_factors(indices, grid.factor_sizes)
  curves, xs = {}, []
  for f in range(len(grid.factor_names)):
    present = np.unique(factor_idx[:, f])
    xs.append(np.asarray(grid.factor_values[f])[present])
    if f == group or len(present) < 2:
      continue
    local = factor_idx.copy()
    local[:, f] = np.searchsorted(present, factor_idx[:, f])  # Sub-grid value → 0..V−1.
    curves[f] = codes.latent_factor_means(means, local, f, len(present), group,
                                    grid.factor_sizes[group] if group is not None else 1)
  return curves, xs


def write_factor_figures(grid: FactorDataset, posteriors: codes.Posteriors, kl: np.ndarray, table: codes.MITable, out_dir: str,
                         caption: str) -> dict[str, str]:
  """latent_vs_factor.png and mi_heatmap.png (datasets with factors only)."""
  order = codes.latent_order_by_kl(kl)
  group = categorical_group_factor(grid)
  curves, xs = latent_vs_factor_curves(grid, posteriors.means, posteriors.indices, group)
  split = f"; one line per {grid.factor_names[group]}" if group is not None else ""
  paths = {"latent_vs_factor": plotting.draw_latent_vs_factor(
      curves, grid.factor_names, xs, order, [f"z{k} (KL {kl[k]:.2f})" for k in order],
      os.path.join(out_dir, "latent_vs_factor.png"),
      group_labels=(holdout_lib.value_labels(grid, group) or ()) if group is not None else (),
      title=f"Mean of each latent's posterior mean (columns, by KL) as each factor varies (rows), averaged over "
            f"the other factors{split}\n{caption}, {posteriors.note}")}
  paths["mi_heatmap"] = plotting.draw_mi_heatmap(
      table.mi[:, order], table.factors, [f"z{k}" for k in order], os.path.join(out_dir, "mi_heatmap.png"),
      title=f"Mutual information of each factor with each latent, normalised by the factor's entropy\n"
            f"{table.note}; {caption}")
  return paths


def write_tensorboard(paths: Mapping[str, str], workdir: str, step: int, member: int | None, writer=None) -> None:
  """Writes every PNG in `paths` as a TensorBoard image figures/<name>[/member_m] (chief process only)
  with `writer` (flushed), or a writer on workdir created and closed here."""
  if jax.process_index() != 0:
    return
  own = writer is None
  if own:
    writer = writers.create_writer(workdir)
  suffix = f"/member_{member}" if member is not None else ""
  writer.write_images(step, {f"figures/{name}{suffix}": plotting.read_png_rgb(path)[None]
                             for name, path in paths.items() if path.endswith(".png")})
  if own:
    writer.close()
  else:
    writer.flush()


def write_figures(model: models.VAE, objective, params: Any, dataset, workdir: str, *, member: int = 0,
                  step: int | None = None, mi: np.ndarray | Mapping | None = None, writer=None,
                  subset_images: int = 12_000, seed: int = 0, means: np.ndarray | None = None,
                  log_vars: np.ndarray | None = None, indices: np.ndarray | None = None,
                  image_index: int | None = None, num_values: int = codes.TRAVERSAL_STEPS) -> dict[str, str]:
  """Writes one member's figures into figures_dir(workdir, member, S); returns {name: path}.

  Args:
    model, objective: the VAE and its objective (encoder, likelihood); params: the VAE's
      parameters with the leading ensemble axis S (state.params["vae"]).
    dataset: the dataset (a HoldoutDataset adds reconstructions of held-out images).
    member: the member to draw; step: the training step (TensorBoard, titles).
    mi: normalised MI [F, K] over every factor, or a metrics.json "mig" record; None
      estimates it (Chen et al.'s sampling estimator, every varying factor).
    writer: a clu metric writer for the images; None: one on workdir, closed here.
    subset_images: size bound of the sub-grid encoded when `means` is None (the run's
      eval.subset_images); seed: fixes every random choice (the run's seed).
    means, log_vars: this member's posteriors [N, K] of the grid images `indices` [N]
      (default: the whole grid; a sub-grid in row-major order), e.g. the evaluation's.
    image_index: the full-grid index the traversals start from (default: middle values).
    num_values: columns of the traversal (values from −3 to +3).
  """
  grid = holdout_lib.full_grid(dataset)
  members = codes.num_members(params)
  encoder = codes.member_encoder(model, objective)
  codec = Codec(model, encoder, codes.member_params(params, member), objective.likelihood)
  out_dir = figures_dir(workdir, member, members)
  os.makedirs(out_dir, exist_ok=True)
  key = jax.random.fold_in(jax.random.PRNGKey(seed), member)
  caption = (f"member {member}, " if members > 1 else "") + (f"step {step}, " if step is not None else "")
  caption += dataset_label(dataset)

  posteriors = codes.member_posteriors(encoder, params, member, dataset, means=means, log_vars=log_vars, indices=indices,
                                 subset_images=subset_images, seed=seed)
  kl = codes.kl_per_latent(posteriors.means, posteriors.log_vars)
  table = None  # CelebA has no factors: no MI, no latent-vs-factor plot.
  if grid.factor_names:
    table = codes.estimate_mi(posteriors, grid, key) if mi is None else codes.mi_table(mi, grid)

  paths = write_reconstructions(codec, dataset, out_dir, np.random.default_rng([seed, member]), caption)
  paths |= write_prior_samples(codec, len(kl), jax.random.fold_in(key, 1), out_dir, caption)
  image_index = default_image_index(dataset) if image_index is None else int(image_index)
  paths |= write_traversals(codec, dataset, image_index, kl, table, out_dir, caption, num_values)
  if table is not None:
    paths |= write_factor_figures(grid, posteriors, kl, table, out_dir, caption)
  write_tensorboard(paths, workdir, step or 0, member if members > 1 else None, writer)
  logging.info("Wrote %d figures to %s.", len(paths), out_dir)
  return paths


