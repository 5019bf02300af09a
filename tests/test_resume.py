"""Checkpoints: kill-and-resume is bit-identical, SIGTERM saves, multi-host restores on one host."""

import os
import signal
import socket
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import run_main

STEPS = ['--config.num_train_steps=300', '--config.checkpoint_every_steps=50']


def _restore(workdir, step=None):
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


def _wait_for_checkpoint(workdir, step, process, timeout=300):
  path = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.time() + timeout
  while not os.path.isdir(path):
    assert process.poll() is None, 'the run ended before its first checkpoint'
    assert time.time() < deadline, 'no checkpoint appeared'
    time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path, data_dir):
  common = [f'--config.data_dir={data_dir}', *STEPS]
  run_main(tmp_path / 'straight', *common)

  killed = tmp_path / 'killed'
  process = run_main(killed, *common, stdout=open(os.devnull, 'w'), stderr=open(os.devnull, 'w'))
  _wait_for_checkpoint(killed, 50, process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  interrupted_at, _ = _restore(killed)
  assert interrupted_at < 300, 'the run finished before it was killed; nothing was resumed'
  run_main(killed, *common)

  step_a, straight = _restore(tmp_path / 'straight')
  step_b, resumed = _restore(killed)
  assert step_a == step_b == 300
  leaves_a, leaves_b = jax.tree.leaves(straight), jax.tree.leaves(resumed)
  assert len(leaves_a) == len(leaves_b) > 0
  for a, b in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sigterm_saves_a_restorable_checkpoint_and_exits_cleanly(tmp_path, data_dir):
  common = [f'--config.data_dir={data_dir}', *STEPS]
  process = run_main(tmp_path, *common, stdout=open(os.devnull, 'w'), stderr=open(os.devnull, 'w'))
  _wait_for_checkpoint(tmp_path, 50, process)
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=120) == 0
  step, state = _restore(tmp_path)
  assert 50 <= step < 300
  assert int(state['step']) == step
  assert not os.path.exists(tmp_path / 'summary.json')
  run_main(tmp_path, *common)
  assert _restore(tmp_path)[0] == 300


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_run_restores_on_one_process(tmp_path, data_dir):
  port = _free_port()
  common = [
    f'--config.data_dir={data_dir}',
    '--config.num_train_steps=10',
    '--config.checkpoint_every_steps=5',
    f'--coordinator_address=localhost:{port}',
    '--num_processes=2',
  ]
  logs = [open(tmp_path / f'log{i}', 'w') for i in range(2)]
  processes = [
    run_main(tmp_path / 'run', *common, f'--process_id={i}', stdout=logs[i], stderr=logs[i])
    for i in range(2)
  ]
  codes = [p.wait(timeout=300) for p in processes]
  assert codes == [0, 0], (tmp_path / 'log0').read_text()[-3000:]
  step, state = _restore(tmp_path / 'run')
  assert step == 10 and int(state['step']) == 10
  # One process picks the run up where two left it and trains on.
  run_main(tmp_path / 'run', f'--config.data_dir={data_dir}', '--config.num_train_steps=15')
  assert _restore(tmp_path / 'run')[0] == 15
