"""A sweep runner that is stopped or killed stops its points at a checkpoint; a rerun resumes."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import psutil
import pytest

from conftest import metric_rows, restore_checkpoint, run_main
from resnet_jax import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 100  # About 6 s of cifar_resnet8 on the digits: signals arrive mid-run, reruns are short.
POINT = 'model=cifar_resnet8'


@pytest.fixture
def one_point_sweep(tmp_path, data_dir):
  """The command of a one-point sweep that checkpoints every 10 steps, and its point's workdir."""
  path = tmp_path / 'sweep_file.py'
  fixed = {
    'data_dir': data_dir,
    'num_train_steps': STEPS,
    'checkpoint_every_steps': 10,
    'log_every_steps': 10,
    'eval_every_steps': 0,
  }
  path.write_text(
    'from resnet_jax.sweep import axis\n\n\ndef get_sweep():\n'
    f"  return {{'config': 'configs/quickstart.py', 'fixed': {fixed!r},\n"
    "          'points': axis('model', ['cifar_resnet8'])}\n"
  )
  workdir = tmp_path / 'runs'
  command = [sys.executable, '-m', 'resnet_jax.sweep', f'--sweep={path}', f'--workdir={workdir}']
  yield command, str(workdir / POINT)
  for process in main_processes(str(workdir / POINT)):  # Left by a failed test.
    process.kill()


def main_processes(point_dir: str) -> list[psutil.Process]:
  """The live processes training in `point_dir`: `resnet_jax.main --workdir=point_dir`, or a
  sweep worker started by a runner of this test (marked by SWEEP_UNDER_TEST in its environment).
  """
  found = []
  for process in psutil.process_iter(['cmdline', 'status']):
    cmdline = process.info['cmdline'] or []
    if process.info['status'] == psutil.STATUS_ZOMBIE:
      continue
    if f'--workdir={point_dir}' in cmdline:
      found.append(process)
    elif 'resnet_jax.sweep_worker' in cmdline:
      with contextlib.suppress(psutil.Error):
        if process.environ().get('SWEEP_UNDER_TEST') == point_dir:
          found.append(process)
  return found


def checkpoint_steps(point_dir: str) -> list[int]:
  """Steps of the finished checkpoints (Orbax writes each in a tmp directory, then renames it)."""
  names = os.listdir(os.path.join(point_dir, 'checkpoints'))
  return sorted(int(n) for n in names if n.isdigit())


def start_and_wait_for_checkpoint(
  command: list[str], point_dir: str, stderr=subprocess.PIPE
) -> subprocess.Popen:
  runner = subprocess.Popen(
    command,
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=stderr,
    text=True,
    env=dict(os.environ, SWEEP_UNDER_TEST=point_dir),
  )
  deadline = time.time() + 300
  while not os.path.isdir(os.path.join(point_dir, 'checkpoints', '10')):
    assert runner.poll() is None, runner.communicate()
    assert time.time() < deadline, 'no checkpoint after 300 s'
    time.sleep(0.1)
  assert main_processes(point_dir), 'the training process was not found'
  return runner


def assert_stopped_at_a_checkpoint_and_resumes(command: list[str], point_dir: str) -> None:
  """The point stopped early, at a checkpoint of the step it stopped at; a rerun finishes it."""
  assert not os.path.exists(os.path.join(point_dir, 'summary.json'))
  stopped_at = checkpoint_steps(point_dir)[-1]
  assert 10 <= stopped_at < STEPS
  with open(os.path.join(point_dir, 'log.txt')) as f:
    assert f"{{'preempted_at_step': {stopped_at}}}" in f.read()
  rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-4000:]
  assert f'{POINT}: resuming' in rerun.stdout
  with open(os.path.join(point_dir, 'log.txt')) as f:
    resumed_log = f.read().rsplit('\n$ ', 1)[1]  # The rerun's part of the log.
  assert f'Restored the checkpoint of step {stopped_at} ' in resumed_log
  with open(os.path.join(point_dir, 'summary.json')) as f:
    assert json.load(f)['step'] == STEPS


@pytest.mark.slow
@pytest.mark.parametrize(
  'signum, mode',
  [(signal.SIGTERM, 'worker'), (signal.SIGINT, 'worker'), (signal.SIGTERM, 'process_per_point')],
  ids=lambda s: s.name if isinstance(s, signal.Signals) else s,
)
def test_sigterm_to_sweep_runner_stops_its_point_with_a_checkpoint(one_point_sweep, signum, mode):
  sweep_command, point_dir = one_point_sweep
  if mode == 'process_per_point':
    sweep_command = [*sweep_command, '--process_per_point']
  runner = start_and_wait_for_checkpoint(sweep_command, point_dir)
  runner.send_signal(signum)
  out, err = runner.communicate(timeout=120)
  assert runner.returncode == 128 + signum, err
  # The runner waited for its point to end.
  assert not main_processes(point_dir)
  assert f'{POINT}: stopped after' in out
  assert 'FAILED' not in out + err
  assert f'Sweep interrupted by {signum.name}' in err
  assert 'rerun the same command to resume it' in err
  assert len(err.strip().splitlines()) <= 3, err
  assert_stopped_at_a_checkpoint_and_resumes(sweep_command, point_dir)


@pytest.mark.slow
def test_sigkilled_sweep_runner_leaves_no_training_point(one_point_sweep, tmp_path):
  sweep_command, point_dir = one_point_sweep
  log = tmp_path / 'runner.log'  # Where the runner's output and its worker's stderr go.
  with open(log, 'w') as stderr:
    runner = start_and_wait_for_checkpoint(sweep_command, point_dir, stderr=stderr)
  runner.kill()
  runner.communicate(timeout=30)
  assert runner.returncode == -signal.SIGKILL
  deadline = time.time() + 60
  while main_processes(point_dir) and time.time() < deadline:
    time.sleep(0.1)
  assert not main_processes(point_dir), 'the point outlived its runner by 60 s'
  # The worker saved its point and left quietly, though nobody reads its answer any more.
  assert 'Traceback' not in log.read_text() and 'Exception ignored' not in log.read_text()
  assert_stopped_at_a_checkpoint_and_resumes(sweep_command, point_dir)


def test_stopped_sweep_starts_no_further_point(monkeypatch, tmp_path, capsys):
  monkeypatch.chdir(REPO)
  path = tmp_path / 'sweep_file.py'
  path.write_text(
    'from resnet_jax.sweep import axis\n\n\ndef get_sweep():\n'
    "  return {'config': 'configs/quickstart.py', 'points': axis('seed', [0, 1])}\n"
  )
  points = sweep.expand(str(path), str(tmp_path / 'runs'))
  monkeypatch.setattr(sweep, '_CHILDREN', sweep._Children())
  launched = []

  def stopped_during_run(point, env):
    launched.append(point.name)
    sweep._CHILDREN.stop(signal.SIGTERM, None)
    return 0  # What main exits with after its checkpoint on SIGTERM.

  monkeypatch.setattr(sweep, '_run_logged', stopped_during_run)
  assert sweep.run_points(points, parallel=1) == []
  assert launched == ['seed=0']
  out = capsys.readouterr().out
  assert 'seed=0: stopped after' in out and 'FAILED' not in out
  with pytest.raises(SystemExit) as stopped:
    sweep._exit_if_stopped(points)
  assert stopped.value.code == 128 + signal.SIGTERM
  assert 'Sweep interrupted by SIGTERM (0 of 2 points finished)' in capsys.readouterr().err


def _sweep_command(tmp_path, fixed, points):
  path = tmp_path / 'sweep_file.py'
  path.write_text(
    'from resnet_jax.sweep import axis, zipit\n\n\ndef get_sweep():\n'
    f"  return {{'config': 'configs/quickstart.py', 'fixed': {fixed!r}, 'points': {points}}}\n"
  )
  workdir = tmp_path / 'runs'
  return [sys.executable, '-m', 'resnet_jax.sweep', f'--sweep={path}', f'--workdir={workdir}']


def _worker_pid(point_dir) -> int:
  with open(os.path.join(point_dir, 'log.txt')) as f:
    return int(re.search(r'Sweep worker (\d+), its point', f.read())[1])


@pytest.mark.slow
def test_sweep_worker_trains_each_point_as_a_standalone_run(tmp_path, data_dir):
  """Points trained one after another in one worker equal standalone runs to the bit; a point
  that fails (here: a num_classes the dataset does not have) fails alone."""
  fixed = {
    'data_dir': data_dir,
    'model': 'cifar_resnet8',
    'num_train_steps': 20,
    'log_every_steps': 5,
    'eval_every_steps': 10,
  }
  command = _sweep_command(
    tmp_path, fixed, "zipit(axis('seed', [0, 1, 2]), axis('num_classes', [10, 5, 10]))"
  )
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 1, result.stderr[-3000:]
  runs = tmp_path / 'runs'
  names = ['seed=0-num_classes=10', 'seed=1-num_classes=5', 'seed=2-num_classes=10']
  assert f'{names[0]}: done' in result.stdout and f'{names[2]}: done' in result.stdout
  assert f'{names[1]}: FAILED' in result.stdout and 'has 10 classes' in result.stdout
  assert len({_worker_pid(runs / name) for name in names}) == 1, 'not one worker for all'

  standalone = tmp_path / 'standalone'
  overrides = [f'--config.{k}={v}' for k, v in fixed.items()]
  run_main(standalone, *overrides, '--config.seed=2')
  assert (
    json.loads((runs / names[2] / 'summary.json').read_text())['eval']
    == json.loads((standalone / 'summary.json').read_text())['eval']
  )
  assert metric_rows((runs / names[2] / 'metrics.jsonl').read_text()) == metric_rows(
    (standalone / 'metrics.jsonl').read_text()
  )
  (_, in_worker), (_, alone) = restore_checkpoint(runs / names[2]), restore_checkpoint(standalone)
  for a, b in zip(jax.tree.leaves(in_worker), jax.tree.leaves(alone), strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_killed_sweep_worker_fails_only_its_point_and_is_replaced(tmp_path, data_dir):
  fixed = {
    'data_dir': data_dir,
    'model': 'cifar_resnet8',
    'num_train_steps': STEPS,
    'checkpoint_every_steps': 10,
    'eval_every_steps': 0,
  }
  command = _sweep_command(tmp_path, fixed, "axis('seed', [0, 1])")
  first, second = str(tmp_path / 'runs' / 'seed=0'), str(tmp_path / 'runs' / 'seed=1')
  runner = start_and_wait_for_checkpoint(command, first)
  (worker,) = main_processes(first)
  worker.kill()
  out, err = runner.communicate(timeout=600)
  assert runner.returncode == 1, err[-3000:]
  assert 'seed=0: FAILED' in out and '(exit code -9' in out
  assert 'seed=1: done' in out
  assert _worker_pid(second) != worker.pid  # A new worker took the next point.
  rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert 'seed=0: resuming' in rerun.stdout and 'seed=0: done' in rerun.stdout
  with open(os.path.join(first, 'summary.json')) as f:
    assert json.load(f)['step'] == STEPS


@pytest.mark.slow
def test_sigterm_while_a_worker_exits_prints_nothing(tmp_path):
  """The runner's exit sends its workers SIGTERM (PR_SET_PDEATHSIG), which can arrive while a
  worker runs its atexit functions; here it arrives in one, every time."""
  code = (
    'import atexit, os, runpy, signal; '
    'atexit.register(lambda: os.kill(os.getpid(), signal.SIGTERM)); '
    "runpy.run_module('resnet_jax.sweep_worker', run_name='__main__')"
  )
  result = subprocess.run(
    [sys.executable, '-c', code],
    cwd=REPO,
    stdin=subprocess.DEVNULL,
    capture_output=True,
    text=True,
    env=dict(os.environ, GLIBC_TUNABLES='glibc.malloc.hugetlb=1'),  # No restart for huge pages.
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr and 'Exception ignored' not in result.stderr
