"""experiments/colab_tpu.ipynb: its cells run on CPU with the sweep's tiny protocol."""

import json
import os
import sys
import types

from conftest import REPO

NOTEBOOK = REPO / "experiments" / "colab_tpu.ipynb"


def code_cells():
  with open(NOTEBOOK) as f:
    notebook = json.load(f)
  return [(c.get("metadata", {}).get("tags", []), "".join(c["source"]))
          for c in notebook["cells"] if c["cell_type"] == "code"]


def python_lines(source):
  """The cell without IPython's shell (!) and magic (%) lines, which the test cannot run."""
  return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))


def test_notebook_installs_from_requirements_tpu_and_runs_the_accelerator_protocol():
  cells = code_cells()
  install = [s for tags, s in cells if "install" in tags]
  assert install and "pip install -q -r requirements-tpu.txt" in install[0]
  params = {}
  exec(python_lines(next(s for tags, s in cells if "parameters" in tags)), params)
  assert params["PROTOCOL"] == "accelerator" and os.path.isfile(REPO / params["SWEEP"])


def test_notebook_cells_execute_on_cpu_with_the_test_protocol(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)
  shown = []
  display = types.ModuleType("IPython.display")
  display.Image = lambda path: ("image", path)
  display.display = shown.append
  namespace = {}
  for tags, source in code_cells():
    if "IPython" in source:  # Stubbed only now: matplotlib behaves differently once IPython is imported.
      monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
      monkeypatch.setitem(sys.modules, "IPython.display", display)
    exec(compile(python_lines(source), str(NOTEBOOK), "exec"), namespace)
    if "parameters" in tags:  # What a tester would type into the parameters cell.
      namespace.update(PROTOCOL="test", WORKDIR=str(tmp_path / "runs"), RESULTS=str(tmp_path / "results"),
                       REPORT=str(tmp_path / "report"))
  assert len(namespace["paths"]) == 3 and all(os.path.isfile(p) for p in namespace["paths"])
  with open(namespace["result"]["table"]) as f:
    assert "β-TCVAE (MWS) β=4" in f.read()
  assert shown == [("image", namespace["result"]["figure"])] and os.path.getsize(shown[0][1]) > 10_000
