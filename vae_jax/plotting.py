"""Drawing primitives for the figures: image grids, traversal grids, GIFs, line and heat-map panels.

Arrays in, files out. Everything here is plain NumPy, matplotlib (Figures drawn with
the Agg canvas, never pyplot, so drawing is thread-safe and needs no display) and
PIL (GIFs); nothing knows about models or JAX. The model figures (vae_jax.figures)
and the downstream tasks (vae_jax.downstream) compute what to draw and call these.

Image-grid figures have a fixed geometry (`GridLayout`), so their pixel size is known
before drawing; `*_layout` and `*_size` give the geometry of each kind of figure.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

DPI = 100
GIF_SCALE = 2  # Nearest-neighbour upscaling of GIF frames (64 px sprites are tiny on screen).
GIF_FRAME_MS = 100


# ---------------------------------------------------------------------------
# Arrays of images.


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


def ping_pong(frames: np.ndarray) -> np.ndarray:
  """frames [T, ...] forward then back without repeating the ends: [2T − 2, ...] (T ≥ 2)."""
  return np.concatenate([frames, frames[-2:0:-1]]) if len(frames) > 2 else frames


# ---------------------------------------------------------------------------
# Figures, titles and geometry.


def new_figure(size_inches: tuple[float, float], **kwargs) -> Figure:
  """A matplotlib Figure of `size_inches` at DPI on its own Agg canvas (no pyplot state)."""
  fig = Figure(figsize=size_inches, dpi=DPI, **kwargs)
  FigureCanvasAgg(fig)
  return fig


def save_figure(fig: Figure, path: str) -> str:
  """Saves `fig` as a PNG at DPI on white (creating the directory); returns `path`."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=DPI, facecolor="white")
  return path


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


def traversal_layout(num_rows: int, num_values: int) -> GridLayout:
  """The traversal grid's geometry: a label column, the input column, then the values."""
  return GridLayout(num_rows, num_values + 1, left=2.0, header=0.3, first_gap=0.25)


def reconstructions_layout(num_images: int) -> GridLayout:
  """Two rows (inputs, reconstructions) of num_images columns, with row labels."""
  return GridLayout(2, num_images, left=1.1, header=0.2)


def prior_samples_layout(rows: int, cols: int) -> GridLayout:
  """A rows × cols grid of samples without labels."""
  return GridLayout(rows, cols)


def latent_vs_factor_size(num_factors: int, num_latents: int) -> tuple[float, float]:
  """Size in inches of the latent-vs-factor figure."""
  return 0.9 + 1.55 * num_latents, 1.4 + 1.45 * num_factors


def mi_heatmap_size(num_factors: int, num_latents: int) -> tuple[float, float]:
  """Size in inches of the MI heat map."""
  return max(6.5, 2.4 + 0.62 * num_latents), 1.9 + 0.45 * num_factors


# ---------------------------------------------------------------------------
# Image grids and GIFs.


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
  fig = new_figure((w, h))
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
  return save_figure(fig, path)


def signed_label(v: float) -> str:
  """+3, −1.5, +0.75, 0: a traversal value without trailing zeros."""
  text = f"{abs(v):.2f}".rstrip("0").rstrip(".")
  return "0" if text == "0" else ("+" if v > 0 else "−") + text


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
  col_labels = ["input /\nrecon."] + [signed_label(v) for v in values]
  return draw_image_grid(cells, path, title=title, row_labels=row_labels, col_labels=col_labels,
                         layout=traversal_layout(r, c))


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


def read_png_rgb(path: str) -> np.ndarray:
  """The RGB pixels [H, W, 3] uint8 of an image file (e.g. a figure, for TensorBoard)."""
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB"))


# ---------------------------------------------------------------------------
# Panels.


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
  fig = new_figure((w, h))
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
  return save_figure(fig, path)


def draw_mi_heatmap(mi: np.ndarray, factor_names: Sequence[str], latent_labels: Sequence[str], path: str, *,
                    title: str) -> str:
  """Heat map of normalised MI [F, K] (rows factors, columns latents as labelled), values annotated."""
  f, k = mi.shape
  fig = new_figure(mi_heatmap_size(f, k), layout="constrained")
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
  return save_figure(fig, path)


__all__ = [
    "DPI", "GIF_FRAME_MS", "GIF_SCALE", "GridLayout", "draw_image_grid", "draw_latent_vs_factor", "draw_mi_heatmap",
    "draw_traversal_grid", "fit_title", "latent_vs_factor_size", "mi_heatmap_size", "new_figure", "ping_pong",
    "prior_samples_layout", "read_png_rgb", "reconstructions_layout", "save_figure", "signed_label", "tile_images",
    "to_uint8", "traversal_layout", "write_gif",
]
