"""The import structure: one namespace, layers that only point down, no circles.

Read statically from the sources (ast), so a function-level import counts as much as
a module-level one. The layers, top down, are the ones superres_tfx/__init__.py and
the README's layout section draw.
"""
import ast
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE = "superres_tfx"
# Top down: a module may import from its own layer and from the layers after it.
LAYERS = (
    NAMESPACE,  # the command line and its tools
    f"{NAMESPACE}.kubeflow",
    f"{NAMESPACE}.pipeline",
    f"{NAMESPACE}.components",
    f"{NAMESPACE}.serving",
    f"{NAMESPACE}.inference",
    f"{NAMESPACE}.imaging",
    f"{NAMESPACE}.pretrained",  # the shipped models, and finding them
    f"{NAMESPACE}.core",
)
# The folders' names, as importable before the namespace: none may be importable now.
OLD_TOP_LEVEL = ("pipeline", "components", "serving", "kubeflow", "superres", "core",
                 "imaging", "inference", "pretrained")


def _package_folder(package: str) -> str:
  return importlib.util.find_spec(package).submodule_search_locations[0]


def _project_modules():
  """{module name: source path} of every installed module of the namespace."""
  modules = {}
  for layer in LAYERS:
    folder = _package_folder(layer)
    for directory, subdirs, files in os.walk(folder):
      subdirs[:] = [d for d in subdirs if os.path.isfile(os.path.join(directory, d,
                                                                       "__init__.py"))]
      if layer == NAMESPACE and directory != folder:
        continue  # the root's subpackages are layers of their own (or mapped from elsewhere)
      for name in files:
        if not name.endswith(".py"):
          continue
        relative = os.path.relpath(os.path.join(directory, name), folder)[:-3].split(os.sep)
        if relative[-1] == "__init__":
          relative = relative[:-1]
        modules[".".join([layer, *relative])] = os.path.join(directory, name)
  return modules


def _imports(path: str, module: str):
  """Absolute names of the modules `path` imports (at any depth of its code)."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield alias.name
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
      for alias in node.names:
        yield f"{base}.{alias.name}"  # a submodule, or a name defined in `base`


def _layer(module: str) -> int:
  """Index in LAYERS of the longest layer prefix of `module`."""
  best = 0
  for index, layer in enumerate(LAYERS):
    if module == layer or module.startswith(layer + "."):
      if len(layer) > len(LAYERS[best]):
        best = index
  return best


def _project_module(name: str, modules) -> str:
  """The project module `name` refers to: itself, or the module defining it."""
  while name and name not in modules:
    name = name.rpartition(".")[0]
  return name


@pytest.fixture(scope="module")
def graph():
  modules = _project_modules()
  edges = {}
  for module, path in modules.items():
    targets = set()
    for name in _imports(path, module):
      if name == NAMESPACE or name.startswith(NAMESPACE + "."):
        target = _project_module(name, modules)
        if target and target != module:
          targets.add(target)
    edges[module] = targets
  return modules, edges


def test_every_layer_has_modules(graph):
  modules, _ = graph
  for layer in LAYERS:
    assert any(_layer(module) == LAYERS.index(layer) for module in modules), layer


def test_layers_only_point_down(graph):
  _, edges = graph
  upward = sorted(f"{module} imports {target}" for module, targets in edges.items()
                  for target in targets if _layer(target) < _layer(module))
  assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_import_circles(graph):
  _, edges = graph
  circles = []
  state = {}  # module -> "open" while on the path, "done" after

  def visit(module, path):
    state[module] = "open"
    for target in sorted(edges.get(module, ())):
      if state.get(target) == "open":
        circles.append(" -> ".join(path[path.index(target):] + [target]))
      elif target not in state:
        visit(target, path + [target])
    state[module] = "done"

  for module in sorted(edges):
    if module not in state:
      visit(module, [module])
  assert not circles, "circular imports:\n" + "\n".join(circles)


def test_core_is_plain_python(graph):
  """The leaf imports the standard library and itself only: no TensorFlow, no TFX."""
  modules, _ = graph
  for module, path in modules.items():
    if _layer(module) != LAYERS.index(f"{NAMESPACE}.core"):
      continue
    for name in _imports(path, module):
      top = name.split(".")[0]
      assert top in sys.stdlib_module_names or name.startswith(f"{NAMESPACE}.core"), (
          f"{module} imports {name}")


def test_code_uses_the_namespace_only():
  """No source of the project, its tests or benchmarks imports a folder by its bare name."""
  offenders = []
  for folder in ("superres_tfx", "kubeflow", "pipeline", "components", "serving", "inference",
                 "imaging", "pretrained", "core", "tests", "benchmarks"):
    for directory, _, files in os.walk(os.path.join(ROOT, folder)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(directory, name)
          for imported in _imports(path, "x.y"):
            if imported.split(".")[0] in OLD_TOP_LEVEL:
              offenders.append(f"{os.path.relpath(path, ROOT)}: {imported}")
  assert not offenders, "\n".join(offenders)


def test_tests_and_benchmarks_import_no_test_module():
  offenders = []
  for folder in ("tests", "benchmarks"):
    for directory, _, files in os.walk(os.path.join(ROOT, folder)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(directory, name)
          for imported in _imports(path, "x.y"):
            parts = imported.split(".")
            if parts[0] == "tests" and (folder == "benchmarks" or any(
                part.startswith("test_") for part in parts[1:])):
              offenders.append(f"{os.path.relpath(path, ROOT)}: {imported}")
  assert not offenders, "\n".join(offenders)


def test_only_the_namespace_is_importable_outside_the_checkout(tmp_path):
  script = ("import importlib, sys\n"
            f"importlib.import_module('{NAMESPACE}.core.names')\n"
            "found = []\n"
            f"for name in {OLD_TOP_LEVEL!r}:\n"
            "  try:\n"
            "    importlib.import_module(name)\n"
            "    found.append(name)\n"
            "  except ImportError:\n"
            "    pass\n"
            "print(','.join(found))\n")
  env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
  result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True)
  assert result.stdout.strip() == "", f"importable outside the checkout: {result.stdout}"
