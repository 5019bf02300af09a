"""Shared fixtures: the digits dataset prepared once per test session, small configs."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A TFDS data directory with the embedded digits dataset prepared."""
  from configs import quickstart
  from resnet_jax import input_pipeline

  directory = str(tmp_path_factory.mktemp('tfds'))
  config = quickstart.get_config()
  config.data_dir = directory
  input_pipeline.get_builder(config)
  return directory


@pytest.fixture
def digits_config(data_dir):
  """The quickstart config, shortened for tests."""
  from configs import quickstart

  config = quickstart.get_config()
  config.data_dir = data_dir
  config.model = 'cifar_resnet8'  # the smallest CIFAR ResNet compiles fastest
  config.num_train_steps = 20
  config.log_every_steps = 10
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 10
  return config


def run_main(workdir, *overrides, config='configs/quickstart.py', env=None, check=True, **popen):
  """Runs `python -m resnet_jax.main` in a subprocess (default: the quickstart config)."""
  command = [
    sys.executable,
    '-m',
    'resnet_jax.main',
    f'--config={config}',
    f'--workdir={workdir}',
    '--config.model=cifar_resnet8',
    *overrides,
  ]
  full_env = dict(os.environ, **(env or {}))
  if popen:
    return subprocess.Popen(command, cwd=REPO, env=full_env, **popen)
  result = subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True)
  if check and result.returncode:
    raise AssertionError(f'main failed ({result.returncode}):\n{result.stderr[-4000:]}')
  return result
