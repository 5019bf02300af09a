"""The tests' forked runs of main (forked_main) are what a fresh interpreter runs."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import forked_main
from conftest import metric_rows, restore_checkpoint, run_main, wait_for_checkpoint

pytestmark = pytest.mark.slow


def test_a_forked_run_ends_bit_identical_to_a_fresh_interpreter(tmp_path, data_dir):
  steps = [f'--config.data_dir={data_dir}', '--config.num_train_steps=10']
  fresh = run_main(tmp_path / 'fresh', *steps, '--config.eval_every_steps=5', fork=False)
  forked = run_main(tmp_path / 'forked', *steps, '--config.eval_every_steps=5')
  assert 'Finished' in fresh.stderr and 'Finished' in forked.stderr
  for name in ('metrics.jsonl', 'summary.json'):
    a, b = ((tmp_path / run / name).read_text() for run in ('fresh', 'forked'))
    if name == 'summary.json':
      a, b = ({k: v for k, v in json.loads(t).items() if k != 'wall_time_s'} for t in (a, b))
    else:
      a, b = metric_rows(a), metric_rows(b)
    assert a == b, name
  (step_a, state_a), (step_b, state_b) = (
    restore_checkpoint(tmp_path / r) for r in ('fresh', 'forked')
  )
  assert step_a == step_b == 10
  for x, y in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_a_forked_run_has_a_processs_exit_codes_and_signals(tmp_path, data_dir):
  common = [f'--config.data_dir={data_dir}', '--config.num_train_steps=2000']
  failed = run_main(tmp_path / 'failed', *common, '--config.num_classes=5', check=False)
  assert failed.returncode == 1 and 'error: ' in failed.stderr
  for signum, code in ((signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 0)):
    workdir = tmp_path / signum.name
    process = run_main(workdir, *common, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for_checkpoint(workdir, 1, process)
    process.send_signal(signum)
    assert process.wait(timeout=120) == code
    output, _ = process.communicate()
    assert (b'preempted_at_step' in output) == (signum == signal.SIGTERM), output[-2000:]


def test_a_forked_run_ends_as_the_interpreter_does(tmp_path):
  """Threads first (an executor's too), then the atexit functions, as at an interpreter's end."""
  code = textwrap.dedent("""
    import atexit, concurrent.futures, sys, threading, time
    say = lambda word: (sys.stdout.write(word + '\\n'), sys.stdout.flush())  # one write each
    atexit.register(say, 'atexit')
    threading.Thread(target=lambda: (time.sleep(0.5), say('thread'))).start()
    concurrent.futures.ThreadPoolExecutor(1).submit(say, 'executor')
    say('main')
  """)
  result = forked_main.run([sys.executable, '-c', code], dict(os.environ), str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() in (
    ['main', 'executor', 'thread', 'atexit'],
    ['executor', 'main', 'thread', 'atexit'],
  )
