"""The fault suite: each test provokes one fault in a real `python -m resnet_jax.main` run and
checks the exit code, that the message is one short paragraph, and that nothing is lost.

A run that ends early must leave every intact checkpoint and metric in place; a run resumed
after the fault must end bit-identical to a run that never met it.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from conftest import metric_rows, restore_checkpoint, run_main, wait_for_checkpoint

pytestmark = pytest.mark.slow

# A constant learning rate: a run can be lengthened on resume without changing its schedule.
CONSTANT = ['--config.schedule=constant', '--config.warmup=0', '--config.learning_rate=0.05']


def common(data_dir, steps, every=10):
  return [
    f'--config.data_dir={data_dir}',
    f'--config.num_train_steps={steps}',
    f'--config.checkpoint_every_steps={every}',
    f'--config.log_every_steps={every}',
    *CONSTANT,
  ]


def assert_one_paragraph(result, *phrases):
  """Exit code 1 and one `error:` line holding `phrases`, with no traceback anywhere."""
  assert result.returncode == 1, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert len(errors[0]) < 1200, errors[0]
  for phrase in phrases:
    assert phrase in errors[0], errors[0]
  return errors[0]


def rows_of(workdir):
  return metric_rows((workdir / 'metrics.jsonl').read_text())


def assert_same_state(workdir_a, workdir_b):
  step_a, a = restore_checkpoint(workdir_a)
  step_b, b = restore_checkpoint(workdir_b)
  assert step_a == step_b
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope='module')
def straight(tmp_path_factory, data_dir):
  """A 30-step run that nothing interrupted."""
  workdir = tmp_path_factory.mktemp('straight')
  run_main(workdir, *common(data_dir, 30))
  return workdir


@pytest.fixture(scope='module')
def first_20(tmp_path_factory, data_dir):
  """The first 20 of those steps, checkpointed at 1, 10 and 20."""
  workdir = tmp_path_factory.mktemp('first_20')
  run_main(workdir, *common(data_dir, 20))
  return workdir


def test_wrong_num_classes_stops_before_training(tmp_path, data_dir):
  result = run_main(tmp_path, *common(data_dir, 10), '--config.num_classes=5', check=False)
  assert_one_paragraph(result, 'num_classes=5', 'has 10 classes', '--config.num_classes=10')
  assert not (tmp_path / 'checkpoints').exists() and not (tmp_path / 'summary.json').exists()
  # The same workdir then serves the corrected run.
  run_main(tmp_path, *common(data_dir, 10))
  assert json.loads((tmp_path / 'summary.json').read_text())['step'] == 10


def test_resume_with_another_num_classes_lists_the_field(tmp_path, first_20, data_dir):
  shutil.copytree(first_20, tmp_path / 'run')
  result = run_main(
    tmp_path / 'run', *common(data_dir, 30), '--config.model=cifar_resnet14', check=False
  )
  assert_one_paragraph(result, "model: 'cifar_resnet8' -> 'cifar_resnet14'", 'new --workdir')


@pytest.mark.parametrize('lock_file', ['kept', 'deleted'])
def test_two_runs_in_one_workdir(tmp_path, data_dir, lock_file):
  log = open(tmp_path / 'first.log', 'w')
  first = run_main(
    tmp_path / 'run', *common(data_dir, 200, every=50), stdout=log, stderr=subprocess.STDOUT
  )
  lock = tmp_path / 'run' / 'lock.json'
  deadline = time.time() + 120
  while not (lock.exists() and lock.read_text()):
    assert first.poll() is None and time.time() < deadline, (tmp_path / 'first.log').read_text()
    time.sleep(0.1)
  if lock_file == 'deleted':  # As one deletes a lock file that looks stale.
    lock.unlink()
  second = run_main(tmp_path / 'run', *common(data_dir, 200, every=50), check=False)
  holder = f'process {first.pid} on host' if lock_file == 'kept' else 'lock.json was deleted'
  assert_one_paragraph(second, 'is in use by another run', holder)
  assert 'Taking over the lock' not in second.stderr
  assert first.wait(timeout=300) == 0, (tmp_path / 'first.log').read_text()[-3000:]
  assert json.loads((tmp_path / 'run' / 'summary.json').read_text())['step'] == 200
  assert restore_checkpoint(tmp_path / 'run')[0] == 200


def test_a_stale_lock_is_taken_over(tmp_path, data_dir):
  (tmp_path / 'lock.json').write_text(json.dumps({'host': 'gone', 'pid': 1, 'started': 'then'}))
  result = run_main(tmp_path, *common(data_dir, 10))
  assert 'Taking over the lock' in result.stderr and 'process 1 on host gone' in result.stderr


def test_an_error_exit_frees_the_lock_and_a_nan_after_restore_names_the_suspect(tmp_path, data_dir):
  """A NaN at step 10 after the step-1 checkpoint is an error exit: the lock is left free and
  unnamed, so the rerun takes it without a warning; the rerun meets the NaN again within steps
  of the checkpoint it restored, and names that checkpoint as the suspect."""
  diverging = [*common(data_dir, 30), '--config.learning_rate=1e30']
  first = run_main(tmp_path, *diverging, check=False)
  assert_one_paragraph(first, 'NaN or Inf at or before step 10', 'last good checkpoint (step 1)')
  assert (tmp_path / 'lock.json').read_text() == ''
  second = run_main(tmp_path, *diverging, check=False)
  assert 'Taking over the lock' not in second.stderr
  assert_one_paragraph(
    second, 'within 9 steps of the checkpoint of step 1 that this start restored', 'suspect'
  )
  assert (tmp_path / 'lock.json').read_text() == ''


def test_a_shorter_num_train_steps_than_the_restored_step_stops(tmp_path, first_20, data_dir):
  shutil.copytree(first_20, tmp_path / 'run')
  summary = (tmp_path / 'run' / 'summary.json').read_text()
  result = run_main(tmp_path / 'run', *common(data_dir, 10), check=False)
  assert_one_paragraph(
    result, 'num_train_steps=10 is below step 20', '--config.num_train_steps=20 or more'
  )
  assert (tmp_path / 'run' / 'summary.json').read_text() == summary  # Not "step 20 of 10".


# resnet_jax.main that receives SIGTERM during step STOP_AT (its handler runs in the loop).
def _sigterm_at(step):
  return (
    '-c',
    "import os, runpy, signal; os.environ['GLIBC_TUNABLES'] = 'glibc.malloc.hugetlb=1'; "
    'from resnet_jax import train; reached = train._PreemptionFlag.reached\n'
    'def at(self, manager, step):\n'
    f'  if step == {step}: os.kill(os.getpid(), signal.SIGTERM)\n'
    '  return reached(self, manager, step)\n'
    "train._PreemptionFlag.reached = at; runpy.run_module('resnet_jax.main', run_name='__main__')",
  )


def test_sigterm_between_two_metric_rows_resumes_to_the_same_rows(tmp_path, straight, data_dir):
  stopped = run_main(tmp_path, *common(data_dir, 30), entry=_sigterm_at(15))
  assert 'Preempted: saved the checkpoint of step 15' in stopped.stderr
  assert restore_checkpoint(tmp_path)[0] == 15
  run_main(tmp_path, *common(data_dir, 30))
  assert_same_state(tmp_path, straight)
  assert rows_of(tmp_path) == rows_of(straight)


def test_resuming_from_the_step_1_checkpoint_writes_the_same_rows(
  tmp_path, first_20, straight, data_dir
):
  workdir = tmp_path / 'run'
  shutil.copytree(first_20, workdir)
  for step in ('10', '20'):
    shutil.rmtree(workdir / 'checkpoints' / step)
  run_main(workdir, *common(data_dir, 30))
  assert_same_state(workdir, straight)
  assert rows_of(workdir) == rows_of(straight)


def test_the_run_ends_within_2_s_of_its_summary(tmp_path, data_dir):
  """With the lock released: a chain of runs or a sweep waits on nothing after summary.json.
  Twice (a run, then its resumed extension): the wait was as long as a sleep of tf.data's
  autotuning thread, from nothing to 20 s."""
  for steps in (100, 200):
    run = run_main(
      tmp_path,
      *common(data_dir, steps, every=50),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
    )
    summary = tmp_path / 'summary.json'
    while not (summary.exists() and json.loads(summary.read_text())['step'] == steps):
      assert run.poll() is None, 'the run ended without a summary'
      time.sleep(0.01)
    run.wait(timeout=120)
    assert time.time() - summary.stat().st_mtime < 2.0
    assert run.returncode == 0 and (tmp_path / 'lock.json').read_text() == ''


def _data_files(step_dir):
  files = [p for p in step_dir.rglob('*') if p.is_file() and p.parent.name == 'd']
  return sorted(files, key=lambda p: p.stat().st_size)


def _damage(step_dir, how):
  if how == 'truncated':
    largest = _data_files(step_dir)[-1]
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])
  elif how == 'zeroed':
    for path in _data_files(step_dir):
      path.write_bytes(bytes(path.stat().st_size))
  elif how == 'metadata_less':
    (step_dir / 'default' / '_METADATA').unlink()
  elif how == 'unfinished':
    step_dir.rename(step_dir.parent / f'{step_dir.name}.orbax-checkpoint-tmp-1796000000')
  elif how == 'flipped':  # One bit of array data: the file still reads, its values are wrong.
    largest = _data_files(step_dir)[-1]
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0x01
    largest.write_bytes(bytes(data))


def _listing(directory):
  return sorted(
    (str(p.relative_to(directory)), p.stat().st_size) for p in directory.rglob('*') if p.is_file()
  )


@pytest.mark.parametrize('how', ['truncated', 'zeroed', 'metadata_less', 'unfinished', 'flipped'])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(
  tmp_path, first_20, straight, data_dir, how
):
  workdir = tmp_path / 'run'
  shutil.copytree(first_20, workdir)
  _damage(workdir / 'checkpoints' / '20', how)
  damaged = next(p for p in (workdir / 'checkpoints').iterdir() if p.name.startswith('20'))
  before = _listing(damaged)

  result = run_main(workdir, *common(data_dir, 30))
  assert 'cannot be used' in result.stderr and 'Traceback' not in result.stderr
  # Set aside intact, never deleted; training went on from step 10 to the uninterrupted result.
  assert _listing(workdir / 'checkpoints' / 'damaged' / damaged.name) == before
  assert_same_state(workdir, straight)
  assert rows_of(workdir) == rows_of(straight)


def test_no_restorable_checkpoint_stops_with_their_list(tmp_path, first_20, data_dir):
  workdir = tmp_path / 'run'
  shutil.copytree(first_20, workdir)
  for step in ('1', '10', '20'):
    _damage(workdir / 'checkpoints' / step, 'metadata_less')
  result = run_main(workdir, *common(data_dir, 30), check=False)
  assert_one_paragraph(result, 'No checkpoint', 'step 20', 'step 10', 'step 1 ', 'new --workdir')
  assert sorted(p.name for p in (workdir / 'checkpoints' / 'damaged').iterdir()) == [
    '1',
    '10',
    '20',
  ]


def test_sigkill_at_random_moments_ends_bit_identical(tmp_path, data_dir):
  """Ten kills in a row, during start-up, training, checkpoint writes and evaluation."""
  steps = ['--config.eval_every_steps=20', *common(data_dir, 60, every=5)]
  reference = tmp_path / 'reference'
  run_main(reference, *steps)
  workdir = tmp_path / 'killed'
  rng = random.Random(0)
  for kill in range(10):
    process = run_main(workdir, *steps, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill % 3 == 0:  # Anywhere in start-up.
      time.sleep(rng.uniform(0.5, 8.0))
    else:  # Just after a checkpoint began: while it is written, or soon after.
      saved = [p.name for p in (workdir / 'checkpoints').glob('*') if p.name.isdigit()]
      done = max(map(int, saved), default=0)
      try:
        wait_for_checkpoint(workdir, done + 5, process, timeout=120)
      except AssertionError:
        pass  # It ended first (finished); the kill below then finds it gone.
      time.sleep(rng.uniform(0.0, 0.4))
    process.send_signal(signal.SIGKILL)
    process.wait()
  run_main(workdir, *steps)
  assert_same_state(workdir, reference)
  assert rows_of(workdir) == rows_of(reference)
  summary = json.loads((workdir / 'summary.json').read_text())
  assert (
    summary['restarts'] >= 1
    and summary['eval'] == json.loads((reference / 'summary.json').read_text())['eval']
  )


def test_a_workdir_that_cannot_be_created(tmp_path, data_dir):
  (tmp_path / 'a_file').write_text('')
  result = run_main(tmp_path / 'a_file' / 'run', *common(data_dir, 10), check=False)
  assert_one_paragraph(result, 'Cannot use --workdir=', 'a_file/run', 'not a directory')


def _mount_tmpfs(path, options):
  """Mounts a tmpfs where this machine allows it (root with mount rights); False otherwise."""
  path.mkdir(exist_ok=True)
  if shutil.which('mount') is None or os.geteuid() != 0:
    return False
  done = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)], check=False)
  return done.returncode == 0


def test_a_read_only_workdir(tmp_path, data_dir):
  workdir = tmp_path / 'read_only'
  if os.geteuid() != 0:
    workdir.mkdir()
    workdir.chmod(0o555)
  elif not _mount_tmpfs(workdir, 'ro,size=1m'):
    pytest.skip('root without mount rights: no directory is read-only to this user')
  try:
    result = run_main(workdir, *common(data_dir, 10), check=False)
    assert_one_paragraph(result, f'Cannot use --workdir={workdir}', 'read-only file system')
  finally:
    if os.geteuid() == 0:
      subprocess.run(['umount', str(workdir)], check=False)


# Where no tmpfs can be mounted: the filesystem reports no free space once the workdir holds
# two finished checkpoints (what `shutil.disk_usage` says is what the run checks before saving).
_FILLED_DISK = """
import os, shutil

_usage, _root = shutil.disk_usage, os.environ['FULL_DISK_WORKDIR']

def _disk_usage(path):
  usage = _usage(path)
  steps = os.path.join(_root, 'checkpoints')
  finished = [n for n in os.listdir(steps) if n.isdigit()] if os.path.isdir(steps) else []
  return usage._replace(free=0) if str(path).startswith(_root) and len(finished) >= 2 else usage

shutil.disk_usage = _disk_usage
"""


def _fill_disk(tmp_path, workdir, how):
  """The environment for a run whose workdir's disk fills up; None if `how` cannot be had."""
  if how == 'tmpfs':  # Room for about two checkpoints of cifar_resnet8 and its metrics.
    return {} if _mount_tmpfs(workdir, 'size=2200k') else None
  hook = tmp_path / 'hook'
  hook.mkdir()
  (hook / 'sitecustomize.py').write_text(_FILLED_DISK)
  pythonpath = os.pathsep.join(filter(None, [str(hook), os.environ.get('PYTHONPATH')]))
  return {'PYTHONPATH': pythonpath, 'FULL_DISK_WORKDIR': str(workdir)}


@pytest.mark.parametrize('how', ['tmpfs', 'simulated'])
def test_a_full_disk_keeps_the_intact_checkpoints(tmp_path, data_dir, how):
  workdir = tmp_path / 'small'
  env = _fill_disk(tmp_path, workdir, how)
  if env is None:
    pytest.skip('no tmpfs can be mounted here (needs root with mount rights)')
  try:
    args = ['--config.keep_checkpoints=10', *common(data_dir, 200, every=10)]
    result = run_main(workdir, *args, env=env, check=False)
    assert_one_paragraph(result, 'is full', 'rerun the same command')
    names = [p.name for p in (workdir / 'checkpoints').iterdir()]
    intact = sorted(int(name) for name in names if name.isdigit())
    assert intact and len(intact) == len(names), f'no checkpoint, or a partial one: {names}'
    last, state = restore_checkpoint(workdir)
    assert last == intact[-1] and int(state['step']) == last
    rows = rows_of(workdir)
    assert rows and rows[-1]['step'] >= last
    # Room made: the same command resumes and finishes.
    if how == 'tmpfs':
      subprocess.run(['mount', '-o', 'remount,size=64m', str(workdir)], check=True)
    run_main(workdir, *args)
    assert json.loads((workdir / 'summary.json').read_text())['step'] == 200
  finally:
    if how == 'tmpfs':
      subprocess.run(['umount', str(workdir)], check=False)


def test_a_misspelt_field_is_named_in_one_line(tmp_path):
  start = time.time()
  result = run_main(tmp_path, '--config.batchsize=8', check=False, fork=False)
  took = time.time() - start
  assert_one_paragraph(result, '--config.batchsize names no field', 'batch_size')
  assert len(result.stderr.strip().splitlines()) == 1
  assert not tmp_path.exists() or not any(tmp_path.iterdir())
  assert took < 20, f'{took:.1f} s: the config was checked after the heavy imports'
