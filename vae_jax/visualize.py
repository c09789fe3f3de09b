"""Qualitative evaluation: reconstructions, prior samples, latent traversals and their GIFs,
latent-vs-factor plots and the factor × latent mutual-information heat map.

    python -m vae_jax.main --config=... --workdir=runs/x --mode=visualize

restores the workdir's latest checkpoint and writes, for each ensemble member, into
workdir/figures/ (one member) or workdir/figures/member_m/ (several members):

    reconstructions.png           inputs (top row) and their reconstructions (bottom row)
    reconstructions_holdout.png   the same for held-out images (only with data.holdout)
    prior_samples.png             decoder means at z ~ N(0, I)
    traversal_grid.png            one row per latent, ordered by KL to the prior, labelled
                                  with its KL (nats) and the factor it encodes best;
                                  columns z_k = −3 … +3, the other latents at the
                                  posterior mean of one chosen image
    traversal_latent{k}.gif       latent k's traversal, animated (−3 → +3 → −3)
    traversal_all.gif             every latent's traversal side by side, in KL order
    latent_vs_factor.png          mean of each latent's posterior mean as each factor
                                  varies, averaged over the other factors (Chen et al.,
                                  2018, Fig. 7); one line per shape on dSprites/3dshapes
    mi_heatmap.png                normalised I(z_j; v_k) for every factor and latent

and the PNGs to TensorBoard as images (figures/<name>, with /member_m for ensembles).

Array functions (`traversal_codes`, `decode_images`, `kl_per_latent`,
`latent_factor_means`, ...) are kept apart from drawing functions (matplotlib
Figures drawn with the Agg canvas, never pyplot; PIL for GIFs), so tests check the
numbers that go into a figure, not just the drawing.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import textwrap
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from vae_jax import checkpoints, evaluate, evaluation, models, parallel, writers
from vae_jax.data import get_dataset, holdout as holdout_lib
from vae_jax.data.grid import FactorDataset, factors_to_index, index_to_factors
from vae_jax.evaluation import encode as encode_lib

DPI = 100
TRAVERSAL_LIMIT = 3.0
TRAVERSAL_STEPS = 9
GIF_SCALE = 2  # Nearest-neighbour upscaling of GIF frames (64 px sprites are tiny on screen).
GIF_STEPS = 17  # Values per GIF traversal (finer than the grid's columns).
GIF_FRAME_MS = 100


# ---------------------------------------------------------------------------
# Arrays.


def member_params(params: Any, member: int) -> Any:
  """One member's parameters (no ensemble axis) from params with a leading ensemble axis."""
  return jax.tree.map(lambda p: p[member], params)


def num_members(params: Any) -> int:
  """Size of the leading ensemble axis of `params`."""
  return int(jax.tree.leaves(params)[0].shape[0])


def decoder_mean(decoded: jax.Array, likelihood: str) -> jax.Array:
  """The image a decoder output [..., H, W, C] stands for, in [0, 1].

  Bernoulli outputs are logits (mean = sigmoid); Gaussian outputs are means (clipped).
  """
  if likelihood == "bernoulli":
    return jax.nn.sigmoid(decoded)
  return jnp.clip(decoded, 0.0, 1.0)


@functools.lru_cache(maxsize=16)
def _decode_fn(model: models.VAE, likelihood: str):
  return jax.jit(lambda p, z: decoder_mean(model.apply({"params": p}, z, method=model.decode), likelihood))


@functools.lru_cache(maxsize=16)
def _encode_fn(model: models.VAE):
  return jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode))


def _padded(x: np.ndarray) -> np.ndarray:
  """x [n, ...] zero-padded to the next power of two ≥ 16 rows (few shapes, few compilations)."""
  size = max(16, 1 << max(len(x) - 1, 0).bit_length())
  return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)]) if size > len(x) else x


def decode_images(model: models.VAE, params: Any, z: np.ndarray, likelihood: str = "bernoulli",
                  *, batch_size: int = 1024) -> np.ndarray:
  """Decoder means [n, H, W, C] float32 in [0, 1] of codes z [n, K]; params of one member."""
  z = np.asarray(z, np.float32)
  if z.ndim != 2:
    raise ValueError(f"codes must be [n, K], got shape {z.shape}")
  fn = _decode_fn(model, likelihood)
  out = [np.asarray(fn(params, _padded(z[i:i + batch_size])))[:len(z[i:i + batch_size])]
         for i in range(0, len(z), batch_size)]
  return np.concatenate(out) if out else np.zeros((0, *model.decoder.image_shape), np.float32)


def encode_images(model: models.VAE, params: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Posterior (mean, log_var), each [n, K], of images x [n, H, W, C]; params of one member."""
  x = np.asarray(x, np.float32)
  mean, log_var = _encode_fn(model)(params, _padded(x))
  return np.asarray(mean)[:len(x)], np.asarray(log_var)[:len(x)]


def kl_per_latent(means: np.ndarray, log_vars: np.ndarray) -> np.ndarray:
  """Average KL(q(z_k | x) || N(0, 1)) in nats [K] over the images of means, log_vars [N, K]."""
  means = np.asarray(means, np.float64)
  log_vars = np.asarray(log_vars, np.float64)
  return np.mean(0.5 * (np.exp(log_vars) + means ** 2 - 1.0 - log_vars), axis=0)


def latent_order_by_kl(kl: np.ndarray) -> np.ndarray:
  """Latent indices [K] sorted by decreasing KL (ties by index)."""
  return np.argsort(-np.asarray(kl), kind="stable")


def traversal_values(num: int = TRAVERSAL_STEPS, limit: float = TRAVERSAL_LIMIT) -> np.ndarray:
  """The traversal's latent values [num], evenly spaced over [−limit, +limit]."""
  return np.linspace(-limit, limit, num)


def traversal_codes(z0: np.ndarray, latent_order: Sequence[int], values: np.ndarray) -> np.ndarray:
  """Codes [R, C, K]: row r is z0 with latent latent_order[r] set to values[c] in column c.

  Args:
    z0: the base code [K] (e.g. one image's posterior mean).
    latent_order: the latent traversed in each row [R].
    values: the values each row's latent takes [C].
  """
  z0 = np.asarray(z0, np.float32)
  order = np.asarray(latent_order, np.int64)
  values = np.asarray(values, np.float32)
  codes = np.broadcast_to(z0, (len(order), len(values), z0.shape[0])).copy()
  codes[np.arange(len(order)), :, order] = values  # Row r, every column, latent order[r].
  return codes


def traversal_images(model: models.VAE, params: Any, z0: np.ndarray, latent_order: Sequence[int],
                     values: np.ndarray, likelihood: str = "bernoulli") -> np.ndarray:
  """Decoded traversal [R, C, H, W, ch] in [0, 1] of `traversal_codes(z0, latent_order, values)`."""
  codes = traversal_codes(z0, latent_order, values)
  r, c, k = codes.shape
  images = decode_images(model, params, codes.reshape(r * c, k), likelihood)
  return images.reshape(r, c, *images.shape[1:])


def latent_factor_means(means: np.ndarray, factor_indices: np.ndarray, factor: int, num_values: int,
                        group: int | None = None, num_groups: int = 1) -> np.ndarray:
  """Mean posterior mean of each latent per value of `factor` (and of `group`): [G, V, K].

  Averages over all images with that value, i.e. over the other factors when the images
  form a grid. NaN where no image has the value.

  Args:
    means: posterior means [N, K].
    factor_indices: factor-index rows [N, F] of the same images.
    factor: the factor on the x-axis; num_values: its number of values V.
    group: optional categorical factor splitting the curves (G = num_groups lines).
  """
  means = np.asarray(means, np.float64)
  v = np.asarray(factor_indices)[:, factor]
  g = np.zeros_like(v) if group is None else np.asarray(factor_indices)[:, group]
  cell = g * num_values + v
  counts = np.bincount(cell, minlength=num_groups * num_values).astype(np.float64)
  sums = np.stack([np.bincount(cell, means[:, k], minlength=num_groups * num_values)
                   for k in range(means.shape[1])], axis=-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    out = sums / counts[:, None]
  return out.reshape(num_groups, num_values, means.shape[1])


def best_factor_per_latent(mi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """For mi [F, K]: the row (factor) of each latent's largest MI [K], and that MI [K]."""
  mi = np.asarray(mi, np.float64)
  return np.argmax(mi, axis=0), np.max(mi, axis=0)


def grid_shape_of(indices: np.ndarray, factor_sizes: Sequence[int]) -> tuple[int, ...]:
  """The sizes of the sub-grid that flat indices [N] (in row-major sub-grid order) span.

  Raises ValueError if the indices are not a full sub-grid.
  """
  factors = index_to_factors(indices, factor_sizes)
  sizes = tuple(len(np.unique(factors[:, f])) for f in range(len(factor_sizes)))
  if int(np.prod(sizes)) != len(indices) or np.any(np.diff(np.asarray(indices)) <= 0):
    raise ValueError(f"The {len(indices)} indices are not a sub-grid in row-major order (they span {sizes}); "
                     "pass the posteriors of a grid (e.g. vae_jax.evaluation.encode.subgrid_indices).")
  return sizes


def categorical_group_factor(dataset: FactorDataset) -> int | None:
  """The factor to draw one line per value of in the latent-vs-factor plot (dSprites' shape), or None."""
  for f in range(len(dataset.factor_names)):
    if holdout_lib.value_labels(dataset, f) is not None:
      return f
  return None


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Images in [0, 1] (any shape) → uint8 in [0, 255]."""
  return np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def tile_images(images: np.ndarray, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
  """One image [R·(H+pad)−pad, C·(W+pad)−pad, ch] of images [R, C, H, W, ch], separated by `pad` px."""
  r, c, h, w, ch = images.shape
  out = np.full((r * (h + pad) - pad, c * (w + pad) - pad, ch), pad_value, np.float32)
  for i in range(r):
    for j in range(c):
      out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = images[i, j]
  return out


# ---------------------------------------------------------------------------
# Drawing.


def fit_title(text: str, width_in: float, max_lines: int, fontsize: float = 10.0,
              min_fontsize: float = 7.0) -> tuple[str, float]:
  """`text` wrapped to a figure `width_in` inches wide, in the largest font (≤ fontsize) that
  needs at most `max_lines` lines; returns (wrapped text, font size)."""
  size = fontsize
  while True:
    chars = max(20, int(width_in * 72.0 / (size * 0.56)))  # ~0.56 em per character (DejaVu Sans).
    lines = [w for line in text.split("\n") for w in (textwrap.wrap(line, chars) or [""])]
    if len(lines) <= max_lines or size <= min_fontsize:
      return "\n".join(lines), size
    size -= 0.5


@dataclasses.dataclass(frozen=True)
class GridLayout:
  """Fixed geometry (inches) of an image-grid figure, so its pixel size is known in advance.

  The figure is left + C·cell + (C−1)·gap + first_gap + right wide and
  title + header + R·cell + (R−1)·gap + bottom tall, where title = 0.12 + 0.18 per
  title line; `first_gap` is extra space after column 0 (the traversal's input column).
  """

  rows: int
  cols: int
  left: float = 0.2
  title_lines: int = 3
  header: float = 0.0
  cell: float = 0.8
  gap: float = 0.06
  first_gap: float = 0.0
  right: float = 0.15
  bottom: float = 0.15

  @property
  def title(self) -> float:
    return 0.12 + 0.18 * self.title_lines

  @property
  def size_inches(self) -> tuple[float, float]:
    w = self.left + self.cols * self.cell + (self.cols - 1) * self.gap + self.first_gap + self.right
    h = self.title + self.header + self.rows * self.cell + (self.rows - 1) * self.gap + self.bottom
    return w, h

  @property
  def size_pixels(self) -> tuple[int, int]:
    """(width, height) in pixels of the PNG at DPI."""
    w, h = self.size_inches
    return int(round(w * DPI)), int(round(h * DPI))

  def cell_box(self, i: int, j: int) -> tuple[float, float]:
    """(left, top) of row i, column j in inches from the figure's top-left corner."""
    x = self.left + j * (self.cell + self.gap) + (self.first_gap if j > 0 else 0.0)
    return x, self.title + self.header + i * (self.cell + self.gap)


def _new_figure(size_inches: tuple[float, float], **kwargs) -> Figure:
  fig = Figure(figsize=size_inches, dpi=DPI, **kwargs)
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path: str) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=DPI, facecolor="white")
  return path


def draw_image_grid(cells: Sequence[Sequence[np.ndarray | None]], path: str, *, title: str,
                    row_labels: Sequence[str] = (), col_labels: Sequence[str] = (),
                    cell_titles: Sequence[Sequence[str]] | None = None, layout: GridLayout | None = None,
                    col_label_size: float = 8.0, row_label_size: float = 8.5) -> str:
  """Draws images cells[r][c] ([H, W, ch] in [0, 1], or None for an empty cell) as a labelled grid.

  col_labels title the first row's cells; cell_titles[r][c], if given, title every cell.
  Returns the PNG path; its pixel size is `layout.size_pixels`.
  """
  rows, cols = len(cells), len(cells[0])
  layout = layout or GridLayout(rows, cols)
  w, h = layout.size_inches
  fig = _new_figure((w, h))
  # One axes in inch coordinates over the whole figure (origin top-left): an axes per
  # image would cost most of the drawing time.
  ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
  ax.axis("off")
  text, size = fit_title(title, w - 0.2, layout.title_lines)
  ax.text(w / 2, 0.08, text, ha="center", va="top", fontsize=size, linespacing=1.15)
  # The images are pasted into one figure-sized canvas at the figure's own resolution
  # (nearest-neighbour), so drawing is one unresampled imshow however many cells there are.
  c = layout.cell
  width_px, height_px = layout.size_pixels
  canvas = np.ones((height_px, width_px, 3), np.float32)
  cell_px = int(round(c * DPI))
  for i in range(rows):
    for j in range(cols):
      x, y = layout.cell_box(i, j)
      image = cells[i][j]
      if image is not None:
        image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
        rows_src = (np.arange(cell_px) * image.shape[0]) // cell_px
        cols_src = (np.arange(cell_px) * image.shape[1]) // cell_px
        x0, y0 = int(round(x * DPI)), int(round(y * DPI))
        canvas[y0 - 1:y0 + cell_px + 1, x0 - 1:x0 + cell_px + 1] = 0.75  # A thin grey frame.
        canvas[y0:y0 + cell_px, x0:x0 + cell_px] = image[rows_src][:, cols_src]
      label = cell_titles[i][j] if cell_titles is not None else (col_labels[j] if i == 0 and col_labels else "")
      if label:
        ax.text(x + c / 2, y - 0.04, label, ha="center", va="bottom", fontsize=col_label_size)
    if row_labels:
      x, y = layout.cell_box(i, 0)
      ax.text(x - 0.08, y + c / 2, row_labels[i], ha="right", va="center", fontsize=row_label_size)
  ax.imshow(canvas, extent=(0.0, w, h, 0.0), interpolation="nearest", aspect="auto")
  ax.set_xlim(0.0, w)
  ax.set_ylim(h, 0.0)
  return _save(fig, path)


def traversal_layout(num_rows: int, num_values: int) -> GridLayout:
  """The traversal grid's geometry: a label column, the input column, then the values."""
  return GridLayout(num_rows, num_values + 1, left=2.0, header=0.3, first_gap=0.25)


def reconstructions_layout(num_images: int) -> GridLayout:
  """Two rows (inputs, reconstructions) of num_images columns, with row labels."""
  return GridLayout(2, num_images, left=1.1, header=0.2)


def prior_samples_layout(rows: int, cols: int) -> GridLayout:
  """A rows × cols grid of samples without labels."""
  return GridLayout(rows, cols)


def draw_traversal_grid(images: np.ndarray, values: np.ndarray, row_labels: Sequence[str], path: str, *,
                        title: str, input_image: np.ndarray | None = None,
                        reconstruction: np.ndarray | None = None) -> str:
  """Traversal grid figure of images [R, C, H, W, ch] (row r: one latent at values [C]).

  Column 0 shows the chosen input image (row 0) and its reconstruction (row 1).
  """
  r, c = images.shape[:2]
  cells = [[None] + [images[i, j] for j in range(c)] for i in range(r)]
  cells[0][0] = input_image
  if r > 1:
    cells[1][0] = reconstruction
  col_labels = ["input /\nrecon."] + [_signed(v) for v in values]
  return draw_image_grid(cells, path, title=title, row_labels=row_labels, col_labels=col_labels,
                         layout=traversal_layout(r, c))


def _signed(v: float) -> str:
  """+3, −1.5, +0.75, 0: a traversal value without trailing zeros."""
  text = f"{abs(v):.2f}".rstrip("0").rstrip(".")
  return "0" if text == "0" else ("+" if v > 0 else "−") + text


def write_gif(frames: np.ndarray, path: str, *, scale: int = GIF_SCALE, frame_ms: int = GIF_FRAME_MS) -> str:
  """An endlessly looping GIF of frames [T, H, W, ch] in [0, 1], upscaled `scale`× (nearest)."""
  frames = to_uint8(frames)
  if scale > 1:
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
  mode = "L" if frames.shape[-1] == 1 else "RGB"
  pil = [Image.fromarray(f[..., 0] if mode == "L" else f, mode=mode) for f in frames]
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  pil[0].save(path, save_all=True, append_images=pil[1:], duration=frame_ms, loop=0, optimize=False)
  return path


def ping_pong(frames: np.ndarray) -> np.ndarray:
  """frames [T, ...] forward then back without repeating the ends: [2T − 2, ...] (T ≥ 2)."""
  return np.concatenate([frames, frames[-2:0:-1]]) if len(frames) > 2 else frames


def draw_latent_vs_factor(curves: Mapping[int, np.ndarray], factor_names: Sequence[str],
                          factor_values: Sequence[np.ndarray], latent_order: Sequence[int],
                          latent_labels: Sequence[str],
                          path: str, *, title: str, group_labels: Sequence[str] = ()) -> str:
  """Rows: factors (curves[f] [G, V_f, K], x = factor_values[f] [V_f]); columns: latents in latent_order.

  One line per group (e.g. dSprites' shapes, named by group_labels).
  """
  factors = list(curves)
  k = len(latent_order)
  w, h = latent_vs_factor_size(len(factors), k)
  fig = _new_figure((w, h))
  margins = dict(left=0.75 / w, right=1 - 0.15 / w, top=1 - 0.85 / h, bottom=(0.95 if group_labels else 0.55) / h,
                 wspace=0.45, hspace=0.6)  # Fixed margins: constrained layout is slow for this many axes.
  axes = fig.subplots(len(factors), k, squeeze=False, sharex="row", sharey="col", gridspec_kw=margins)
  colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
  for i, f in enumerate(factors):
    x = np.asarray(factor_values[f], np.float64)
    for j, latent in enumerate(latent_order):
      ax = axes[i, j]
      for g in range(curves[f].shape[0]):
        label = group_labels[g] if group_labels else None
        ax.plot(x, curves[f][g, :, latent], color=colors[g % len(colors)] if group_labels else "k", lw=1.3,
                marker="." if len(x) <= 12 else None, label=label)
      ax.tick_params(labelsize=7)
      ax.grid(alpha=0.3)
      if i == 0:
        ax.set_title(latent_labels[j], fontsize=8.5)
      ax.set_xlabel(factor_names[f], fontsize=8, labelpad=1)
      if j == 0:
        ax.set_ylabel("mean of μ", fontsize=8)
  if group_labels:
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(labels), fontsize=8.5, frameon=False)
  text, size = fit_title(title, w - 0.3, 3)
  fig.suptitle(text, fontsize=size, y=1 - 0.08 / h, va="top")
  return _save(fig, path)


def latent_vs_factor_size(num_factors: int, num_latents: int) -> tuple[float, float]:
  """Size in inches of the latent-vs-factor figure."""
  return 0.9 + 1.55 * num_latents, 1.4 + 1.45 * num_factors


def draw_mi_heatmap(mi: np.ndarray, factor_names: Sequence[str], latent_labels: Sequence[str], path: str, *,
                    title: str) -> str:
  """Heat map of normalised MI [F, K] (rows factors, columns latents as labelled), values annotated."""
  f, k = mi.shape
  fig = _new_figure(mi_heatmap_size(f, k), layout="constrained")
  ax = fig.add_subplot()
  im = ax.imshow(mi, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
  for i in range(f):
    for j in range(k):
      ax.text(j, i, f"{mi[i, j]:.2f}", ha="center", va="center", fontsize=8,
              color="white" if mi[i, j] < 0.6 else "black")
  ax.set_xticks(range(k), latent_labels, fontsize=8)
  ax.set_yticks(range(f), factor_names, fontsize=9)
  ax.set_xlabel("latent $z_j$ (ordered by KL to the prior, largest first)", fontsize=9)
  ax.set_ylabel("factor $v_k$", fontsize=9)
  fig.colorbar(im, ax=ax, label="$I(z_j; v_k)\\,/\\,H(v_k)$", shrink=0.9)
  text, size = fit_title(title, fig.get_figwidth() - 0.3, 3, fontsize=9.5)
  fig.suptitle(text, fontsize=size)
  return _save(fig, path)


def mi_heatmap_size(num_factors: int, num_latents: int) -> tuple[float, float]:
  """Size in inches of the MI heat map."""
  return max(6.5, 2.4 + 0.62 * num_latents), 1.9 + 0.45 * num_factors


# ---------------------------------------------------------------------------
# The figures of one model.


def figures_dir(workdir: str, member: int, members: int) -> str:
  """workdir/figures for a single model, workdir/figures/member_m in an ensemble."""
  base = os.path.join(workdir, "figures")
  return base if members == 1 else os.path.join(base, f"member_{member}")


def dataset_label(dataset: FactorDataset | str) -> str:
  """The dataset's name (or `dataset` if it is a name), marked as a procedural stand-in where it is one."""
  name = dataset if isinstance(dataset, str) else holdout_lib.full_grid(dataset).name
  return f"{name} (procedurally generated, not the original file)" if name.endswith("_procedural") else name


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


def _value_name(dataset: FactorDataset, factor: int, index: int) -> str:
  """A factor value's label (e.g. 'ellipse') where the dataset names them, else its index."""
  labels = holdout_lib.value_labels(dataset, factor)
  return labels[index] if labels else str(int(index))


def _mi_rows(mi, dataset: FactorDataset) -> tuple[np.ndarray, list[str], str]:
  """(mi [F', K], the names of its rows, estimator) from an array over all factors or a metrics record."""
  if isinstance(mi, Mapping):
    return np.asarray(mi["mi"], np.float64), list(mi["factors"]), str(mi.get("estimator", ""))
  mi = np.asarray(mi, np.float64)
  if mi.shape[0] != len(dataset.factor_names):
    raise ValueError(f"mi has {mi.shape[0]} rows; pass one per factor {dataset.factor_names} or a metrics "
                     "record {'mi': ..., 'factors': [names]}.")
  return mi, list(dataset.factor_names), ""


def write_figures(
    config: ml_collections.ConfigDict,
    model: models.VAE,
    params: Any,
    dataset,
    workdir: str,
    *,
    member: int = 0,
    means: np.ndarray | None = None,
    log_vars: np.ndarray | None = None,
    indices: np.ndarray | None = None,
    mi: np.ndarray | Mapping | None = None,
    step: int | None = None,
    writer=None,
    image_index: int | None = None,
    num_values: int = TRAVERSAL_STEPS,
) -> dict[str, str]:
  """Writes one member's figures into figures_dir(workdir, member, S); returns {name: path}.

  Args:
    config: the run's config (model, loss.likelihood, eval.subset_images, seed).
    model: the VAE; params: parameters with the leading ensemble axis S (state.params).
    dataset: the dataset (a HoldoutDataset adds reconstructions of held-out images).
    member: which member to draw.
    means, log_vars: optional posterior parameters [N, K] of this member for the grid
      images `indices` [N] (default: the whole grid, in order), e.g. from the final
      evaluation; None encodes the evaluation sub-grid (eval.subset_images) here.
    indices: flat grid indices of means' rows; they must form a sub-grid in row-major order.
    mi: normalised MI [F, K] over every factor, or a metrics.json "mig" record
      ({"mi", "factors", "estimator"}); None estimates it on the posteriors above with
      Chen et al.'s sampling estimator over every factor.
    step: the training step (TensorBoard, titles). writer: a clu metric writer for the
      images; None creates one on workdir (chief process only) and closes it.
    image_index: the full-grid index of the image the traversals start from
      (default: every factor at its middle value).
    num_values: columns of the traversal (values from −3 to +3).
  """
  grid = holdout_lib.full_grid(dataset)
  members = num_members(params)
  p = member_params(params, member)
  likelihood = config.loss.likelihood
  out_dir = figures_dir(workdir, member, members)
  os.makedirs(out_dir, exist_ok=True)
  rng = np.random.default_rng([config.seed, member])
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), member)
  where = f"member {member}, " if members > 1 else ""
  where += f"step {step}, " if step is not None else ""
  data_label = dataset_label(dataset)
  paths = {}

  has_factors = bool(grid.factor_names)  # CelebA has none: no MI, no latent-vs-factor plot.
  if not has_factors:
    if means is None:
      indices = np.sort(rng.choice(len(grid), size=min(len(grid), config.eval.subset_images), replace=False))
      one = jax.tree.map(lambda x: x[member:member + 1], params)
      m_, lv_ = encode_lib.encode_dataset(model, one, grid, parallel.create_mesh(), indices=indices,
                                          batch_size=config.eval.batch_size, progress=False)
      means, log_vars = m_[0], lv_[0]
    grid_note = f"{len(means):,} images"
  # Posteriors over a grid: the caller's, or the evaluation sub-grid.
  elif means is None:
    strides = evaluate.subgrid_strides(grid.factor_sizes, config.eval.subset_images)
    indices, _ = encode_lib.subgrid_indices(grid.factor_sizes, strides)
    one = jax.tree.map(lambda x: x[member:member + 1], params)
    m_, lv_ = encode_lib.encode_dataset(model, one, grid, parallel.create_mesh(), indices=indices,
                                        batch_size=config.eval.batch_size, progress=False)
    means, log_vars = m_[0], lv_[0]
  means = np.asarray(means)
  log_vars = np.asarray(log_vars)
  if has_factors:
    indices = np.arange(len(grid)) if indices is None else np.asarray(indices)
    if means.shape != log_vars.shape or means.shape[0] != len(indices):
      raise ValueError(f"means {means.shape} and log_vars {log_vars.shape} must both be [{len(indices)}, K].")
    sub_sizes = grid_shape_of(indices, grid.factor_sizes)
    factor_idx = index_to_factors(indices, grid.factor_sizes)
    grid_note = "the whole grid" if len(indices) == len(grid) else f"a sub-grid of {len(indices):,} images"

  kl = kl_per_latent(means, log_vars)
  order = latent_order_by_kl(kl)
  if not has_factors:
    mi_rows, mi_names, mi_note = np.zeros((0, means.shape[1])), [], "no factors"
  elif mi is None:
    counted = tuple(f for f, s in enumerate(sub_sizes) if s > 1)
    chen = evaluation.mig(means, log_vars, sub_sizes, num_samples=config.eval.mig_samples, factors=counted, key=key)
    mi_rows, mi_names, estimator = np.asarray(chen["mi"]), [grid.factor_names[f] for f in counted], chen["estimator"]
    mi_note = f"{estimator} on {grid_note}"
  else:
    mi_rows, mi_names, estimator = _mi_rows(mi, grid)
    mi_note = estimator or "as given"

  # Reconstructions.
  def reconstructions(name, pool, label):
    chosen = np.sort(rng.choice(pool, size=min(10, len(pool)), replace=False))
    x = grid.images(chosen)
    mu, _ = encode_images(model, p, x)
    recon = decode_images(model, p, mu, likelihood)
    cells = [list(x), list(recon)]
    paths[name] = draw_image_grid(
        cells, os.path.join(out_dir, f"{name}.png"), row_labels=["input", "reconstruction"],
        col_labels=[f"#{i}" for i in chosen], layout=reconstructions_layout(len(chosen)),
        title=f"Reconstructions of {label}: decoder mean at the posterior mean (bottom) of each input (top)\n"
              f"{where}{data_label}")

  reconstructions("reconstructions", holdout_lib.split_indices(dataset, "train"), "training images")
  if hasattr(dataset, "holdout_indices"):
    reconstructions("reconstructions_holdout", dataset.holdout_indices, f"held-out images ({dataset.spec})")

  # Prior samples.
  z = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (64, means.shape[1])))
  samples = decode_images(model, p, z, likelihood).reshape(8, 8, *grid.image_shape)
  paths["prior_samples"] = draw_image_grid(
      [list(row) for row in samples], os.path.join(out_dir, "prior_samples.png"), layout=prior_samples_layout(8, 8),
      title=f"Samples from the prior: decoder means at z ~ N(0, I)\n{where}{data_label}")

  # Traversals.
  image_index = default_image_index(dataset) if image_index is None else int(image_index)
  x0 = grid.images(np.asarray([image_index]))
  mu0, _ = encode_images(model, p, x0)
  recon0 = decode_images(model, p, mu0, likelihood)[0]
  values = traversal_values(num_values)
  trav = traversal_images(model, p, mu0[0], order, values, likelihood)
  factors0 = ""
  if has_factors:
    row = index_to_factors([image_index], grid.factor_sizes)[0]
    factors0 = " (" + ", ".join(f"{n}={_value_name(grid, f, i)}" for f, (n, i) in
                                enumerate(zip(grid.factor_names, row))) + ")"
  row_labels = [f"z{k}   KL {kl[k]:.2f} nats" for k in order]
  if has_factors:
    best, best_mi = best_factor_per_latent(mi_rows)
    row_labels = [f"{label}\nbest: {mi_names[best[k]]} (MI {best_mi[k]:.2f})" for label, k in zip(row_labels, order)]
  paths["traversal_grid"] = draw_traversal_grid(
      trav, values, row_labels, os.path.join(out_dir, "traversal_grid.png"), input_image=x0[0], reconstruction=recon0,
      title=f"Latent traversals: row = one latent (by KL to the prior, largest first), set to −3 … +3;\n"
            f"the others stay at the posterior mean of image #{image_index}{factors0}.\n"
            f"{where}{data_label}" + (f"; MI: {mi_note}" if has_factors else ""))
  fine = traversal_images(model, p, mu0[0], order, traversal_values(GIF_STEPS), likelihood)
  for r, k in enumerate(order):
    paths[f"traversal_latent{k}"] = write_gif(ping_pong(fine[r]), os.path.join(out_dir, f"traversal_latent{k}.gif"))
  side_by_side = np.stack([tile_images(fine[:, c][None]) for c in range(fine.shape[1])])
  paths["traversal_all"] = write_gif(ping_pong(side_by_side), os.path.join(out_dir, "traversal_all.gif"))

  if has_factors:
    _factor_figures(paths, grid, means, factor_idx, kl, order, mi_rows, mi_names, mi_note, out_dir,
                    f"{where}{data_label}", grid_note)
  _write_tensorboard(paths, workdir, step or 0, member if members > 1 else None, writer)
  logging.info("Wrote %d figures to %s.", len(paths), out_dir)
  return paths


def _factor_figures(paths, grid, means, factor_idx, kl, order, mi_rows, mi_names, mi_note, out_dir, where, grid_note):
  """The latent-vs-factor plot and the MI heat map (datasets with factors only) → paths."""
  group = categorical_group_factor(grid)
  group_labels = holdout_lib.value_labels(grid, group) if group is not None else ()
  curves, xs = {}, []
  for f, name in enumerate(grid.factor_names):
    present = np.unique(factor_idx[:, f])
    xs.append(np.asarray(grid.factor_values[f])[present])
    if f == group or len(present) < 2:
      continue
    dense = np.searchsorted(present, factor_idx[:, f])  # Sub-grid value → 0..V−1.
    local = factor_idx.copy()
    local[:, f] = dense
    curves[f] = latent_factor_means(means, local, f, len(present), group,
                                    grid.factor_sizes[group] if group is not None else 1)
  split = f"; one line per {grid.factor_names[group]}" if group is not None else ""
  paths["latent_vs_factor"] = draw_latent_vs_factor(
      curves, grid.factor_names, xs, order, [f"z{k} (KL {kl[k]:.2f})" for k in order],
      os.path.join(out_dir, "latent_vs_factor.png"), group_labels=group_labels or (),
      title=f"Mean of each latent's posterior mean (columns, by KL) as each factor varies (rows), averaged over "
            f"the other factors{split}\n{where}, {grid_note}")

  # MI heat map.
  paths["mi_heatmap"] = draw_mi_heatmap(
      mi_rows[:, order], mi_names, [f"z{k}" for k in order], os.path.join(out_dir, "mi_heatmap.png"),
      title=f"Mutual information of each factor with each latent, normalised by the factor's entropy\n"
            f"{mi_note}; {where}")


def _write_tensorboard(paths: Mapping[str, str], workdir: str, step: int, member: int | None, writer) -> None:
  """Writes every PNG in `paths` as a TensorBoard image figures/<name>[/member_m]."""
  if jax.process_index() != 0:
    return
  own = writer is None
  if own:
    writer = writers.create_writer(workdir)
  suffix = f"/member_{member}" if member is not None else ""
  images = {f"figures/{name}{suffix}": np.asarray(Image.open(path).convert("RGB"))[None]
            for name, path in paths.items() if path.endswith(".png")}
  writer.write_images(step, images)
  if own:
    writer.close()
  else:
    writer.flush()


# ---------------------------------------------------------------------------
# A workdir's latest checkpoint.


class Restored(NamedTuple):
  """A workdir's latest checkpoint with what it needs: dataset (holdout applied), model, mesh, params [S], step."""

  dataset: Any
  model: models.VAE
  mesh: Any
  params: Any
  step: int


def restore_workdir(config: ml_collections.ConfigDict, workdir: str) -> Restored:
  """Restores workdir's latest checkpoint (as evaluate.evaluate_workdir does).

  The dataset has config.data.holdout applied (a HoldoutDataset) if one is set.

  Raises:
    FileNotFoundError: there is no checkpoint.
  """
  from vae_jax import train  # The state structure lives with training.

  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise FileNotFoundError(f"No checkpoint under {ckpt_dir}: train first with --mode=train and the same --workdir "
                            "and --config.")
  dataset = holdout_lib.apply_holdout(holdout_lib.full_grid(get_dataset(config.data)), config.data.get("holdout", ""))
  model = models.create_model(config.model, dataset.image_shape, config.loss.objective)
  mesh = parallel.create_mesh()
  target = jax.device_put(train.create_ensemble_state(config, model, dataset.image_shape), parallel.replicated(mesh))
  ckpt = checkpoints.Checkpointer(ckpt_dir)
  state = ckpt.restore_latest(target)
  ckpt.close()
  if state is None:
    raise FileNotFoundError(f"No checkpoint under {ckpt_dir}: train first with --mode=train and the same --workdir "
                            "and --config.")
  return Restored(dataset, model, mesh, state.params, int(jax.device_get(state.step)[0]))


def visualize_workdir(config: ml_collections.ConfigDict, workdir: str, *, members: Sequence[int] | None = None,
                      restored: Restored | None = None) -> dict[int, dict[str, str]]:
  """--mode=visualize: the figures of every member (or of `members`) of workdir's latest checkpoint.

  Returns {member: {figure name: path}}. `restored` (restore_workdir's result) saves restoring again.
  """
  restored = restored if restored is not None else restore_workdir(config, workdir)
  members = range(num_members(restored.params)) if members is None else members
  writer = writers.create_writer(workdir, just_logging=jax.process_index() != 0)
  out = {}
  try:
    for m in members:
      out[m] = write_figures(config, restored.model, restored.params, restored.dataset, workdir, member=m,
                             step=restored.step, writer=writer)
  finally:
    writer.close()
  return out


__all__ = [
    "GridLayout", "Restored", "best_factor_per_latent", "decode_images", "decoder_mean", "draw_image_grid",
    "draw_latent_vs_factor", "draw_mi_heatmap", "draw_traversal_grid", "encode_images", "figures_dir",
    "kl_per_latent", "latent_factor_means", "latent_order_by_kl", "member_params", "restore_workdir", "tile_images",
    "traversal_codes", "traversal_images", "traversal_layout", "traversal_values", "visualize_workdir", "write_figures",
    "write_gif",
]
