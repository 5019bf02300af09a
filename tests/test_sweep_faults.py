"""A sweep runner that is stopped or killed stops its points at a checkpoint; a rerun resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from resnet_jax import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 300  # About 15 s of cifar_resnet8 on the digits here: a rerun finishes quickly.
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
  """The live `resnet_jax.main` processes training in `point_dir`."""
  found = []
  for process in psutil.process_iter(['cmdline', 'status']):
    cmdline = process.info['cmdline'] or []
    if f'--workdir={point_dir}' in cmdline and process.info['status'] != psutil.STATUS_ZOMBIE:
      found.append(process)
  return found


def checkpoint_steps(point_dir: str) -> list[int]:
  """Steps of the finished checkpoints (Orbax writes each in a tmp directory, then renames it)."""
  names = os.listdir(os.path.join(point_dir, 'checkpoints'))
  return sorted(int(n) for n in names if n.isdigit())


def start_and_wait_for_checkpoint(command: list[str], point_dir: str) -> subprocess.Popen:
  runner = subprocess.Popen(
    command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  deadline = time.time() + 300
  while not os.path.isdir(os.path.join(point_dir, 'checkpoints', '10')):
    assert runner.poll() is None, runner.communicate()
    assert time.time() < deadline, 'no checkpoint after 300 s'
    time.sleep(0.1)
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
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_sigterm_to_sweep_runner_stops_its_point_with_a_checkpoint(one_point_sweep, signum):
  sweep_command, point_dir = one_point_sweep
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
def test_sigkilled_sweep_runner_leaves_no_training_point(one_point_sweep):
  sweep_command, point_dir = one_point_sweep
  runner = start_and_wait_for_checkpoint(sweep_command, point_dir)
  runner.kill()
  runner.communicate(timeout=30)
  assert runner.returncode == -signal.SIGKILL
  deadline = time.time() + 60
  while main_processes(point_dir) and time.time() < deadline:
    time.sleep(0.1)
  assert not main_processes(point_dir), 'the point outlived its runner by 60 s'
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
