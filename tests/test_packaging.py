"""`pip install .` and `pip install -e .` into a fresh environment, used from another directory."""

import importlib.util
import os
import shutil
import site
import subprocess
import sys

import pytest

from conftest import REPO


def _source_tree(destination):
  """What a build reads, copied, so that build files never land in the checkout."""
  destination.mkdir()
  for name in ('pyproject.toml', 'requirements.txt', 'README.md'):
    shutil.copy(os.path.join(REPO, name), destination / name)
  for name in ('resnet_jax', 'configs'):
    shutil.copytree(
      os.path.join(REPO, name), destination / name, ignore=shutil.ignore_patterns('__pycache__')
    )
  return destination


def _fresh_environment(directory):
  """A virtual environment that sees this one's packages (none downloaded) but not the project."""
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(directory)], check=True)
  python = directory / 'bin' / 'python'
  purelib = subprocess.run(
    [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
    capture_output=True,
    text=True,
    check=True,
  ).stdout.strip()
  with open(os.path.join(purelib, 'dependencies.pth'), 'w') as f:
    f.write('\n'.join(site.getsitepackages()) + '\n')
  return python


def _run(python, *args, cwd):
  # Huge pages already set: `resnet_jax.main` need not restart itself (host_memory.py).
  env = dict(os.environ, GLIBC_TUNABLES='glibc.malloc.hugetlb=1')
  result = subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  return result.stdout


def _pip_install(python, *args, cwd):
  # Without build isolation when setuptools is at hand: nothing to download.
  isolation = [] if importlib.util.find_spec('setuptools') is None else ['--no-build-isolation']
  _run(python, '-m', 'pip', 'install', '--quiet', '--no-deps', *isolation, *args, cwd=cwd)


WHERE = 'import configs.iresnet50, resnet_jax; print(resnet_jax.__file__); print(configs.__file__)'


@pytest.mark.slow
def test_pip_install_runs_the_fake_data_command_from_another_directory(tmp_path):
  source = _source_tree(tmp_path / 'source')
  (tmp_path / 'elsewhere').mkdir()
  python = _fresh_environment(tmp_path / 'env')
  _pip_install(python, str(source), cwd=tmp_path / 'elsewhere')
  package, configs = _run(python, '-c', WHERE, cwd=tmp_path / 'elsewhere').split()
  assert package.startswith(str(tmp_path / 'env')) and configs.startswith(str(tmp_path / 'env'))
  # The README's fake-data command, shortened, with the installed config file.
  _run(
    python,
    '-m',
    'resnet_jax.main',
    f'--config={os.path.join(os.path.dirname(configs), "iresnet50.py")}',
    f'--workdir={tmp_path / "run"}',
    '--config.dataset=fake',
    '--config.model=cifar_resnet8',
    '--config.image_size=16',
    '--config.batch_size=8',
    '--config.bn_group_size=0',
    '--config.eval_batch_size=8',
    '--config.num_train_steps=2',
    cwd=tmp_path / 'elsewhere',
  )
  assert (tmp_path / 'run' / 'summary.json').exists()

  # Editable: the same environment now imports the source tree itself.
  _pip_install(python, '-e', str(source), cwd=tmp_path / 'elsewhere')
  package, configs = _run(python, '-c', WHERE, cwd=tmp_path / 'elsewhere').split()
  assert package == str(source / 'resnet_jax' / '__init__.py')
  assert configs == str(source / 'configs' / '__init__.py')
