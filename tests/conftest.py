"""Shared fixtures: the digits dataset prepared once per test session, small configs."""

import json
import os
import socket
import subprocess
import sys
import time
import types

import jax
import orbax.checkpoint as ocp
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


def restore_checkpoint(workdir, step=None):
  """The newest checkpoint of a run, as arrays on this process's first device."""
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  step = manager.latest_step() if step is None else step
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  metadata = ocp.StandardCheckpointer().metadata(
    os.path.join(workdir, 'checkpoints', str(step), 'default')
  )
  target = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata.item_metadata
  )
  return step, manager.restore(step, args=ocp.args.StandardRestore(target))


def wait_for_checkpoint(workdir, step, process, timeout=300):
  path = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.time() + timeout
  while not os.path.isdir(path):
    assert process.poll() is None, 'the run ended before its first checkpoint'
    assert time.time() < deadline, 'no checkpoint appeared'
    time.sleep(0.02)


@pytest.fixture(scope='session')
def gcs_emulator(tmp_path_factory):
  """A local Cloud Storage API (gcp-storage-emulator, in memory): environment for processes.

  Each layer that speaks gs:// is pointed at it by its own setting: TensorStore (Orbax's
  arrays) by TENSORSTORE_GCS_HTTP_URL, with a fixed token instead of credentials; etils.epath
  (every other file) through fsspec's gcsfs, which reads STORAGE_EMULATOR_HOST. TensorFlow's own
  GCS filesystem has its endpoints compiled in, so epath is told not to use it (EPATH_USE_TF).
  """
  import urllib.request

  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  url = f'http://127.0.0.1:{port}'
  log = open(tmp_path_factory.mktemp('gcs') / 'emulator.log', 'w')
  server = subprocess.Popen(
    [sys.executable, '-m', 'gcp_storage_emulator', 'start', f'--port={port}', '--in-memory'],
    stdout=log,
    stderr=subprocess.STDOUT,
  )
  deadline = time.time() + 30
  while True:
    try:
      urllib.request.urlopen(f'{url}/storage/v1/b', timeout=1)
      break
    except OSError:
      assert server.poll() is None and time.time() < deadline, 'the emulator did not start'
      time.sleep(0.2)
  env = {
    'STORAGE_EMULATOR_HOST': url,
    'EPATH_USE_TF': 'false',
    'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',  # No storage-layout calls to the real API.
    'TENSORSTORE_GCS_HTTP_URL': url,
    'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',
  }

  def create_bucket(name: str) -> str:
    request = urllib.request.Request(
      f'{url}/storage/v1/b?project=test',
      data=json.dumps({'name': name}).encode(),
      headers={'Content-Type': 'application/json'},
    )
    urllib.request.urlopen(request, timeout=10)
    return f'gs://{name}'

  yield types.SimpleNamespace(env=env, create_bucket=create_bucket)
  server.terminate()
  server.wait(timeout=30)
  log.close()
