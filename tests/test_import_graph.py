"""The package's modules import each other one way only, and the leaf modules stay TF-free."""

import ast
import os
import pathlib
import subprocess
import sys

from conftest import REPO

PACKAGE = pathlib.Path(REPO) / 'resnet_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _is_module(name: str) -> bool:
  path = pathlib.Path(REPO, *name.split('.'))
  return path.with_suffix('.py').exists() or (path / '__init__.py').exists()


def import_graph() -> dict[str, set[str]]:
  """module -> the package modules it imports, at the top or inside functions."""
  graph = {}
  for path in PACKAGE.rglob('*.py'):
    name, imported = _module_name(path), set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('resnet_jax'):
        for alias in node.names:
          full = f'{node.module}.{alias.name}'
          imported.add(full if _is_module(full) else node.module)
      elif isinstance(node, ast.Import):
        imported |= {a.name for a in node.names if a.name.startswith('resnet_jax')}
    graph[name] = imported - {name}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  visiting, done = [], set()

  def visit(module):
    visiting.append(module)
    for other in sorted(graph.get(module, ())):
      if other in visiting:
        return [*visiting[visiting.index(other) :], other]
      if other not in done and (cycle := visit(other)):
        return cycle
    visiting.pop()
    done.add(module)
    return None

  for module in sorted(graph):
    if module not in done and (cycle := visit(module)):
      return cycle
  return None


def test_find_cycle_finds_one():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}) is None


def test_no_import_cycle_in_the_package():
  graph = import_graph()
  assert graph['resnet_jax.input_pipeline'] >= {'resnet_jax.datasets'}
  assert 'resnet_jax.data' not in graph['resnet_jax.input_pipeline']
  assert find_cycle(graph) is None


def test_dataset_table_and_config_checks_need_no_tensorflow():
  code = (
    'import sys; import resnet_jax.datasets, resnet_jax.data, resnet_jax.config_checks; '
    "assert 'tensorflow' not in sys.modules, 'TensorFlow imported'"
  )
  env = {**os.environ, 'PYTHONPATH': REPO}
  subprocess.run([sys.executable, '-c', code], check=True, env=env, cwd=REPO)
