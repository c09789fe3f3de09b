"""vae_jax.metric_properties: the synthetic representations have the structure they claim, and on a
tiny grid the metrics order them as known (MIG: perfect > rotated > random; a non-monotone
one-to-one code keeps MIG at 1 but not DCI with a linear predictor), and the section it writes
replaces the previous one."""

import numpy as np
import pytest

from vae_jax import metric_properties as mp

TINY = (2, 3, 3, 4, 4)


def test_representations_have_the_claimed_structure():
  data = mp.FactorTable(TINY)
  x = data.images(np.arange(int(np.prod(TINY))))
  reps = {name: fn(x) for name, fn in mp.representations(TINY).items()}
  factors = x[:, 0, 0, :]
  np.testing.assert_allclose(reps["perfect"].mean(0), 0, atol=1e-12)
  np.testing.assert_allclose(reps["perfect"].std(0), 1)
  assert reps["perfect+noise"].shape == (288, 10) and reps["split"].shape == (288, 6)
  assert reps["missing"].shape == (288, 4) and reps["random"].shape == (288, 5)
  for f in range(5):  # nonlinear and permuted codes are functions of their own factor, one to one.
    for name in ("nonlinear", "permuted"):
      assert len(np.unique(reps[name][:, f])) == TINY[f]
      assert all(len(np.unique(reps[name][factors[:, f] == v, f])) == 1 for v in range(TINY[f]))
  assert np.all(np.diff(np.unique(reps["nonlinear"][:, 3])) > 0)
  # rotated: posX and posY mixed at 45°: each rotated code correlates with both equally.
  c = np.corrcoef(np.c_[reps["rotated"], reps["perfect"]].T)[:5, 5:]
  assert c[3, 3] == pytest.approx(c[3, 4]) == pytest.approx(1 / np.sqrt(2))


def test_metrics_order_the_variants_as_known_on_a_tiny_grid(tmp_path):
  table, _ = mp.score_table(TINY, ("mig_histogram", "dci"), num_points=600, dci_importance="lasso")
  mig = {v: row["mig_histogram"] for v, row in table.items()}
  assert mig["perfect"] > 0.95 and mig["perfect"] > mig["rotated"] + 0.5 > mig["random"] + 0.5
  assert mig["permuted"] == pytest.approx(mig["perfect"])  # Histograms do not care about order.
  props = mp.properties(table)
  assert props["mig_histogram"] == {"property_1": True, "property_2": True}
  assert props["dci_disentanglement"]["property_1"] is False  # A linear predictor misses the permuted code.
  assert table["permuted"]["dci_disentanglement"] < 0.9 * table["perfect"]["dci_disentanglement"]
  out = tmp_path / "metrics.md"
  out.write_text(f"# Metrics\n\nkept\n\n{mp.BEGIN}\nold\n{mp.END}\n\ntail\n")
  mp.write_section(str(out), mp.markdown(table, {v: 0.0 for v in table}, props, "header"))
  text = out.read_text()
  assert "old" not in text and "kept" in text and "tail" in text and "| mig_histogram | yes | yes |" in text
  assert mp.draw_heatmap(table, str(tmp_path / "h.png")) and (tmp_path / "h.png").stat().st_size > 1000
