"""Drawing primitives: geometry known in advance, titles that fit, grids and GIFs of the right size."""

import numpy as np
from PIL import Image

from vae_jax import plotting


def test_grid_layout_and_title_fitting():
  layout = plotting.GridLayout(2, 3, left=1.0, title_lines=2, header=0.2)
  w = 1.0 + 3 * 0.8 + 2 * 0.06 + 0.15
  h = 0.12 + 2 * 0.18 + 0.2 + 2 * 0.8 + 0.06 + 0.15
  assert layout.size_pixels == (round(w * 100), round(h * 100))
  text, size = plotting.fit_title("word " * 40, 5.0, 3)
  assert len(text.split("\n")) <= 3 and size < 10
  text, size = plotting.fit_title("short", 5.0, 3)
  assert text == "short" and size == 10.0
  # The traversal grid has one row per latent: its height grows by one cell per latent.
  assert (plotting.traversal_layout(5, 9).size_pixels[1] - plotting.traversal_layout(4, 9).size_pixels[1]
          == round((0.8 + 0.06) * 100))


def test_image_arrays():
  images = np.zeros((2, 3, 4, 5, 1), np.float32)
  images[1, 2] = 1.0
  tiled = plotting.tile_images(images, pad=2, pad_value=0.5)
  assert tiled.shape == (2 * 6 - 2, 3 * 7 - 2, 1)
  assert tiled[6:, 14:].min() == 1.0 and tiled[4, 0, 0] == 0.5
  np.testing.assert_array_equal(plotting.to_uint8(np.array([-1.0, 0.0, 0.5, 1.0, 2.0])), [0, 0, 128, 255, 255])
  np.testing.assert_array_equal(plotting.ping_pong(np.arange(4)), [0, 1, 2, 3, 2, 1])
  assert [plotting.signed_label(v) for v in (3.0, -1.5, 0.75, 0.0)] == ["+3", "−1.5", "+0.75", "0"]


def test_drawn_files_have_their_layout_size(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.random((3, 5, 16, 16, 1)).astype(np.float32)
  path = plotting.draw_traversal_grid(images, np.linspace(-3, 3, 5), ["a", "b", "c"], str(tmp_path / "t.png"),
                                      title="traversal", input_image=images[0, 0], reconstruction=images[0, 1])
  with Image.open(path) as im:
    assert im.size == plotting.traversal_layout(3, 5).size_pixels
  assert plotting.read_png_rgb(path).shape == plotting.traversal_layout(3, 5).size_pixels[::-1] + (3,)
  gif = plotting.write_gif(plotting.ping_pong(images[0]), str(tmp_path / "sub" / "t.gif"))
  with Image.open(gif) as im:
    assert im.size == (32, 32) and im.n_frames == 8
  curves = {1: rng.random((2, 4, 3))}
  path = plotting.draw_latent_vs_factor(curves, ["shape", "x"], [np.arange(2), np.arange(4)], [2, 0, 1],
                                        ["z2", "z0", "z1"], str(tmp_path / "lvf.png"), title="t",
                                        group_labels=["a", "b"])
  with Image.open(path) as im:
    assert im.size == tuple(round(v * 100) for v in plotting.latent_vs_factor_size(1, 3))
  path = plotting.draw_mi_heatmap(rng.random((2, 3)), ["x", "y"], ["z0", "z1", "z2"], str(tmp_path / "mi.png"),
                                  title="t")
  with Image.open(path) as im:
    assert im.size == tuple(round(v * 100) for v in plotting.mi_heatmap_size(2, 3))
  fig = plotting.new_figure((2.0, 1.0))
  fig.add_subplot().plot([0, 1])
  with Image.open(plotting.save_figure(fig, str(tmp_path / "f.png"))) as im:
    assert im.size == (200, 100)
