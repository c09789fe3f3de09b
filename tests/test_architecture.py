"""The package's structure: no import cycles (imports inside functions count), no private
names imported across modules, and modules small enough to read."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "vae_jax"
MAX_LINES = 460


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> list[tuple[str, str]]:
  """(imported module, imported name or "") for every import statement in module `name`, anywhere in it."""
  path = MODULES[name]
  package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
  out = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out += [(a.name, "") for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
      for a in node.names:
        full = f"{base}.{a.name}"
        out.append((full, "") if full in MODULES else (base, a.name))
  return [(m, n) for m, n in out if m.split(".")[0] == "vae_jax"]


def graph() -> dict[str, set[str]]:
  edges = {}
  for name in MODULES:
    targets = set()
    for module, _ in imports_of(name):
      while module not in MODULES and "." in module:
        module = module.rsplit(".", 1)[0]
      if module in MODULES and module != name:
        targets.add(module)
    edges[name] = targets
  return edges


def find_cycle(edges):
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(edges[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(edges):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def test_the_cycle_finder_finds_a_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
  """A package __init__ importing its own submodules is not a cycle unless a submodule imports a
  sibling through the package; every edge here is module -> module actually named in an import."""
  edges = graph()
  # `from vae_jax.objectives.base import X` in vae_jax/objectives/__init__.py and `from vae_jax.objectives
  # import base` in a submodule name the submodule itself, not the package.
  assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges))}"


def test_no_private_names_imported_across_modules():
  bad = [f"{name} imports {module}.{imported}" for name in MODULES for module, imported in imports_of(name)
         if imported.startswith("_") and module != name]
  assert not bad, bad


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
  lines = len(MODULES[name].read_text().splitlines())
  assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concept"
