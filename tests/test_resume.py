"""Checkpoints: kill-and-resume is bit-identical, SIGTERM saves, multi-host restores on one host."""

import os
import signal
import socket

import jax
import numpy as np
import pytest

from conftest import restore_checkpoint, run_main, wait_for_checkpoint

# Killed or stopped just after step 10's checkpoint, 50 steps (a few seconds) before the end.
STEPS = ['--config.num_train_steps=60', '--config.checkpoint_every_steps=10']


def _straight_and_resumed(tmp_path, common):
  """(Final state of a run never interrupted, final state of the same run killed with SIGKILL
  after its step-10 checkpoint and rerun)."""
  run_main(tmp_path / 'straight', *common)
  killed = tmp_path / 'killed'
  process = run_main(killed, *common, stdout=open(os.devnull, 'w'), stderr=open(os.devnull, 'w'))
  wait_for_checkpoint(killed, 10, process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  interrupted_at, _ = restore_checkpoint(killed)
  assert interrupted_at < 60, 'the run finished before it was killed; nothing was resumed'
  run_main(killed, *common)
  (step_a, straight), (step_b, resumed) = map(restore_checkpoint, (tmp_path / 'straight', killed))
  assert step_a == step_b == 60
  leaves_a, leaves_b = jax.tree.leaves(straight), jax.tree.leaves(resumed)
  assert len(leaves_a) == len(leaves_b) > 0
  for a, b in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_array_equal(a, b)
  return straight, resumed


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path, data_dir):
  _straight_and_resumed(tmp_path, [f'--config.data_dir={data_dir}', *STEPS])


@pytest.mark.slow
def test_sigkill_then_resume_with_every_recipe_option_on_is_bit_identical(tmp_path, data_dir):
  """Every option of the later recipes at once: the augmentations and mixing are keyed by
  (seed, example) and (seed, step), the drops by (seed, step), the micro-batches by the step's
  batch, and the moving average is in the checkpoint. Depth 26 gives iResNet a stacked run of
  middle blocks, whose drop rates are scanned over."""
  straight, _ = _straight_and_resumed(
    tmp_path,
    [
      f'--config.data_dir={data_dir}',
      *STEPS,
      '--config.depth=26',
      '--config.randaugment_layers=2',
      '--config.random_erasing=0.5',
      '--config.mixup_alpha=0.2',
      '--config.cutmix_alpha=1.0',
      '--config.loss=sigmoid_xent',
      '--config.label_smoothing=0.1',
      '--config.ema_decay=0.9',
      '--config.ema_every_steps=3',
      '--config.stochastic_depth_rate=0.3',
      '--config.grad_accum_steps=2',
      '--config.optimizer=lamb',
      '--config.learning_rate=0.005',
    ],
  )
  assert not np.array_equal(
    straight['ema']['params']['head']['kernel'], straight['params']['head']['kernel']
  )


@pytest.mark.slow
def test_sigterm_saves_a_restorable_checkpoint_and_exits_cleanly(tmp_path, data_dir):
  common = [f'--config.data_dir={data_dir}', *STEPS]
  process = run_main(tmp_path, *common, stdout=open(os.devnull, 'w'), stderr=open(os.devnull, 'w'))
  wait_for_checkpoint(tmp_path, 10, process)
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=120) == 0
  step, state = restore_checkpoint(tmp_path)
  assert 10 <= step < 60
  assert int(state['step']) == step
  assert not os.path.exists(tmp_path / 'summary.json')
  run_main(tmp_path, *common)
  assert restore_checkpoint(tmp_path)[0] == 60


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
  step, state = restore_checkpoint(tmp_path / 'run')
  assert step == 10 and int(state['step']) == 10
  # One process picks the run up where two left it and trains on.
  run_main(tmp_path / 'run', f'--config.data_dir={data_dir}', '--config.num_train_steps=15')
  assert restore_checkpoint(tmp_path / 'run')[0] == 15
