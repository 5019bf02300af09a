"""Training and sweeps under a real scheduler: a one-node Slurm cluster (tests/slurm_cluster.py).

The commands are those of docs/slurm.md, read from it, with the test's workdir and data
directory and a shorter run. Without Slurm or root the tests skip; CI sets
RESNET_JAX_REQUIRE_SLURM=1, which turns that skip into a failure.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from test_docs import bash_blocks
from test_multihost import _final_state, _launch, _wait

from conftest import REPO, metric_rows
from resnet_jax import slurm as slurm_lib

with open(os.path.join(REPO, 'docs', 'slurm.md')) as f:
  BLOCKS = bash_blocks(f.read())


def documented(first_words: str) -> list[str]:
  """The command of docs/slurm.md that starts with `first_words`, as an argument list."""
  for block in BLOCKS:
    for line in block.replace('\\\n', ' ').splitlines():
      if line.startswith(first_words):
        return shlex.split(line)
  raise AssertionError(f'docs/slurm.md has no command {first_words!r}')


def with_workdir(argv: list[str], workdir, *overrides: str) -> list[str]:
  """`argv` with its --workdir replaced and `overrides` appended."""
  replaced = [f'--workdir={workdir}' if a.startswith('--workdir=') else a for a in argv]
  assert replaced != argv, argv
  return [*replaced, *overrides]


def final_state(workdir):
  step, state = _final_state(workdir)
  return step, jax.tree.map(np.asarray, state)


def wait_for(condition, process, what, timeout=300):
  deadline = time.time() + timeout
  while not condition():
    assert process.poll() is None, f'srun ended before {what}'
    assert time.time() < deadline, f'no {what} within {timeout} s'
    time.sleep(0.05)


def running_job(slurm) -> str:
  """The id of the one job in the queue."""
  deadline = time.time() + 60
  while not (jobs := slurm.run('squeue', '--noheader', '--format=%A').stdout.split()):
    assert time.time() < deadline, 'no job in the queue'
    time.sleep(0.1)
  assert len(jobs) == 1, jobs
  return jobs[0]


def checkpoint_steps(workdir) -> list[int]:
  if not (workdir / 'checkpoints').is_dir():
    return []
  return sorted(ocp.utils.checkpoint_steps(workdir / 'checkpoints'))


@pytest.mark.slow
def test_srun_preemption_lost_task_and_sbatch_resume_to_the_hand_started_runs_result(
  slurm, data_dir, tmp_path
):
  """One run under Slurm, interrupted both ways: srun trains 2 tasks; `scancel --signal=TERM`
  leaves one checkpoint and exits 0; the same srun line resumes; task 1 killed with SIGKILL
  ends the step (--kill-on-bad-exit) within seconds; the documented sbatch script resumes from
  the newest complete checkpoint and finishes where 2 processes started by hand, never
  interrupted, finish."""
  overrides = [
    f'--config.data_dir={data_dir}',
    '--config.model=cifar_resnet8',
    '--config.num_train_steps=100',
    '--config.checkpoint_every_steps=10',
    '--config.log_every_steps=10',
    '--config.eval_every_steps=0',
  ]
  workdir = tmp_path / 'slurm'
  srun = with_workdir(documented('srun --ntasks=2'), workdir, *overrides)
  assert '--kill-on-bad-exit=1' in srun and srun[-len(overrides) - 1] == '--distributed'

  def start(name):
    log = open(tmp_path / f'{name}.log', 'w')
    return subprocess.Popen(
      srun, cwd=REPO, env=slurm.environ(), stdout=log, stderr=subprocess.STDOUT
    )

  # Preempted.
  first = start('first')
  wait_for(lambda: 10 in checkpoint_steps(workdir), first, 'the first checkpoint')
  job = running_job(slurm)
  scancel = documented('scancel --signal=TERM')
  slurm.run(*[job if a == 'JOBID' else a for a in scancel])
  assert first.wait(timeout=120) == 0, (tmp_path / 'first.log').read_text()[-3000:]
  log = (tmp_path / 'first.log').read_text()
  assert sorted(re.findall(r'JAX process (\d)/2', log)) == ['0', '1'], log[-3000:]
  stopped_at = set(re.findall(r"'preempted_at_step': (\d+)", log))
  assert len(stopped_at) == 1, f'the tasks stopped at different steps: {stopped_at}'
  preempted = int(stopped_at.pop())
  assert checkpoint_steps(workdir)[-1] == preempted < 100
  assert not (workdir / 'summary.json').exists()

  # Resumed by the same line, then a task is killed.
  second = start('second')
  wait_for(lambda: checkpoint_steps(workdir)[-1] > preempted, second, 'a new checkpoint')
  job = running_job(slurm)
  pids = slurm.run('scontrol', 'listpids', job).stdout.splitlines()[1:]
  task_1 = [int(line.split()[0]) for line in pids if line.split()[4] == '1']
  assert task_1, pids
  for pid in task_1:
    os.kill(pid, signal.SIGKILL)
  killed_at = time.time()
  code = second.wait(timeout=120)
  seconds = time.time() - killed_at
  log = (tmp_path / 'second.log').read_text()
  print(f'srun --kill-on-bad-exit=1: exit code {code} {seconds:.2f} s after a task was killed')
  assert f'Restored the checkpoint of step {preempted}' in log, log[-3000:]
  assert code != 0 and seconds < 30, log[-3000:]
  newest = ocp.CheckpointManager(workdir / 'checkpoints').latest_step()
  assert preempted < newest < 100 and not (workdir / 'summary.json').exists()

  # The sbatch script, as documented, finishes the run.
  script = next(b for b in BLOCKS if b.startswith('#!/bin/bash'))
  documented_workdir = re.search(r'--workdir=(\S+)', script).group(1)
  script = script.replace(
    f'--workdir={documented_workdir}', f'--workdir={workdir} {shlex.join(overrides)}'
  )
  output = tmp_path / 'sbatch.log'
  slurm.run('sbatch', '--wait', f'--output={output}', cwd=REPO, input=script, timeout=600)
  log = output.read_text()
  assert f'Restored the checkpoint of step {newest}' in log, log[-3000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['step'] == 100

  # Two processes started by hand, never interrupted, end at the same parameters and metrics.
  by_hand = tmp_path / 'by_hand'
  _wait(tmp_path, by_hand, _launch(tmp_path, by_hand, 2, *overrides))
  assert summary['eval'] == json.loads((by_hand / 'summary.json').read_text())['eval']
  (step, state), (hand_step, hand_state) = final_state(workdir), final_state(by_hand)
  assert step == hand_step == 100
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(hand_state), strict=True):
    np.testing.assert_array_equal(a, b)
  rows = metric_rows((workdir / 'metrics.jsonl').read_text())
  hand_rows = metric_rows((by_hand / 'metrics.jsonl').read_text())
  assert rows[-1] == hand_rows[-1]


SWEEP = """
from resnet_jax.sweep import axis, product


def get_sweep():
  return {{
    'config': 'configs/quickstart.py',
    'fixed': {{
      'data_dir': {data_dir!r},
      'model': 'cifar_resnet8',
      'num_train_steps': 20,
      'eval_every_steps': 0,
      'checkpoint_every_steps': 10,
    }},
    'points': product(axis('seed', [0, 1]), axis('learning_rate', [0.1, 0.05])),
  }}
"""


def test_the_array_script_runs_the_sweep_runner_for_each_given_point(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert slurm_lib.array_spec([8, 0, 1, 2, 5, 7]) == '0-2,5,7-8'
  script = slurm_lib.script('sweeps/s.py', 'runs/d', [1, 3, 4], "--partition=gpu --gpus='1'")
  options = [line.split(' ', 1)[1] for line in script.splitlines() if line.startswith('#SBATCH')]
  assert options == [
    '--array=1,3-4',
    '--job-name=d',
    f'--output={tmp_path}/runs/d/slurm/%A_%a.log',
    '--open-mode=append',
    f'--chdir={tmp_path}',
    '--partition=gpu',
    '--gpus=1',
  ]
  assert script.endswith(
    f'exec {sys.executable} -m resnet_jax.sweep --sweep=sweeps/s.py --workdir=runs/d '
    '--point="$SLURM_ARRAY_TASK_ID"\n'
  )


POINTS = [
  'seed=0-learning_rate=0.1',
  'seed=0-learning_rate=0.05',
  'seed=1-learning_rate=0.1',
  'seed=1-learning_rate=0.05',
]


@pytest.mark.slow
def test_sweep_as_a_job_array_resubmits_only_unfinished_points_and_reports(
  slurm, data_dir, tmp_path
):
  sweep_file = tmp_path / 'sweep.py'
  sweep_file.write_text(SWEEP.format(data_dir=data_dir))
  workdir = tmp_path / 'sweep'
  command = documented('python -m resnet_jax.sweep --sweep=')
  command = [f'--sweep={sweep_file}' if a.startswith('--sweep=') else a for a in command]
  command = [sys.executable, *with_workdir(command, workdir)[1:]]
  assert '--launcher=slurm' in command

  def submit():
    result = slurm.run(*command, cwd=REPO, timeout=300)
    job = re.search(r'^Submitted job array (\d+) ', result.stdout, flags=re.MULTILINE)
    return result.stdout, job and job.group(1)

  output, job = submit()
  assert output.startswith('4 points, 0 finished, 4 to run.'), output
  assert '--array=0-3\n' in (workdir / 'slurm' / 'array.sbatch').read_text()
  # The last point's task is cancelled, most likely while it waits for a CPU (this node has
  # two, the other tasks take them); running, it would stop at SIGTERM, unfinished either way.
  slurm.run('scancel', f'{job}_3')
  slurm.wait_for_job(job)
  for i, point in enumerate(POINTS[:3]):
    log = workdir / 'slurm' / f'{job}_{i}.log'
    assert f'{log}  {point}' in output and 'Finished:' in log.read_text(), log.read_text()[-3000:]
    assert (workdir / point / 'summary.json').exists()
  assert not (workdir / POINTS[3] / 'summary.json').exists()

  # Only the unfinished point is submitted again.
  output, job = submit()
  assert output.startswith('4 points, 3 finished, 1 to run.'), output
  assert output.count('.log') == 1 and POINTS[3] in output
  assert '--array=3\n' in (workdir / 'slurm' / 'array.sbatch').read_text()
  slurm.wait_for_job(job)
  log = (workdir / 'slurm' / f'{job}_3.log').read_text()
  assert (workdir / POINTS[3] / 'summary.json').exists(), log[-3000:]
  output, job = submit()
  assert job is None and 'Nothing to submit.' in output, output

  report = subprocess.run(
    [sys.executable, '-m', 'resnet_jax.report', f'--workdir={workdir}', f'--sweep={sweep_file}'],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert report.returncode == 0, report.stderr[-3000:]
  table = (workdir / 'results.md').read_text()
  for learning_rate in ('0.05', '0.1'):  # Two seeds each.
    assert f'| cifar_resnet8 | {learning_rate} | 75K | 747K | 2 |' in table, table
