r"""What a user waits for: startup, fast failures, the quickstart, the README commands, the tests.

    python -m benchmarks.time_to_result                  # startup rows and the quickstart
    python -m benchmarks.time_to_result --rows=all       # also the sweep and both test tiers

Each row runs a real command in a subprocess, `--repeats` times (median reported), and records
wall time and CPU time (user + system of the command and its children). CPU time is the figure
to compare between machines that are not idle: wall time on a busy 2-core machine is inflated by
whatever else runs. The quickstart row starts with an empty compilation cache and an empty
workdir every time (the digits data are prepared once, beforehand) and reports the first
training step (compilation included) and the final top-1 from the run's own log and summary.
Prints a Markdown table; writes JSON to `--output` if given.
"""

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

flags.DEFINE_list(
  'rows',
  ['help', 'misspelt_field', 'unknown_model', 'quickstart', 'fake_data'],
  "Rows to measure, or 'all'.",
)
flags.DEFINE_integer('repeats', 3, 'Runs per row; the median is reported.')
flags.DEFINE_string('output', '', 'Optional JSON file for the results.')
FLAGS = flags.FLAGS

ALL_ROWS = (
  'help',
  'misspelt_field',
  'unknown_model',
  'quickstart',
  'fake_data',
  'digits_sweep',
  'fast_tests',
  'all_tests',
)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = [sys.executable, '-m', 'resnet_jax.main']


def _commands(scratch: str) -> dict[str, list[str]]:
  workdir = os.path.join(scratch, 'workdir')
  return {
    'help': MAIN + ['--help'],
    'misspelt_field': MAIN
    + ['--config=configs/quickstart.py', f'--workdir={workdir}', '--config.batchsize=8'],
    'unknown_model': MAIN
    + ['--config=configs/quickstart.py', f'--workdir={workdir}', '--config.model=resnet51'],
    'quickstart': MAIN + ['--config=configs/quickstart.py', f'--workdir={workdir}'],
    'fake_data': MAIN
    + [
      '--config=configs/iresnet50.py',
      f'--workdir={workdir}',
      '--config.dataset=fake',
      '--config.batch_size=8',
      '--config.bn_group_size=0',
      '--config.eval_batch_size=8',
      '--config.num_train_steps=3',
    ],
    'digits_sweep': [
      'bash',
      '-c',
      f'{sys.executable} -m resnet_jax.sweep --sweep=experiments/digits_ablation.py '
      f'--workdir={workdir} && {sys.executable} -m resnet_jax.report --workdir={workdir}',
    ],
    'fast_tests': [
      sys.executable,
      '-m',
      'pytest',
      '-q',
      '-m',
      'not slow',
      '-n',
      '2',
      '-p',
      'no:cacheprovider',
    ],
    'all_tests': [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider'],
  }


def _run(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
  """Wall seconds, CPU seconds (children), combined output."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  return wall, cpu, result.stdout + result.stderr


def _quickstart_details(output: str, workdir: str) -> dict[str, float]:
  details = {}
  first = re.search(r'First step \(compilation included\): ([\d.]+) s', output)
  if first:
    details['first_step_s'] = float(first[1])
  summary = os.path.join(workdir, 'summary.json')
  if os.path.exists(summary):
    with open(summary) as f:
      details['top1'] = json.load(f)['eval']['top1']
  return details


def main(argv: list[str]) -> None:
  del argv
  rows = ALL_ROWS if FLAGS.rows == ['all'] else FLAGS.rows
  unknown = sorted(set(rows) - set(ALL_ROWS))
  if unknown:
    raise app.UsageError(f'Unknown rows {unknown}; valid: {", ".join(ALL_ROWS)}.')
  results = []
  print(f'load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores')
  print('| row | wall s (median) | CPU s (median) | details |')
  print('|---|---|---|---|')
  with tempfile.TemporaryDirectory() as data_dir:
    base_env = dict(os.environ, TFDS_DATA_DIR=data_dir)
    # Prepare the digits once, so that the quickstart rows measure training, not preparation.
    prepare = [
      sys.executable,
      '-c',
      'from configs import quickstart; from resnet_jax import input_pipeline; '
      'input_pipeline.get_builder(quickstart.get_config())',
    ]
    if subprocess.run(prepare, cwd=REPO, env=base_env, capture_output=True).returncode:
      print('(the digits could not be prepared in advance; the first quickstart does it)')
    for row in rows:
      walls, cpus, details = [], [], []
      for _ in range(FLAGS.repeats):
        with tempfile.TemporaryDirectory() as scratch:
          # Fresh compilation caches (main's and the tests'): every run compiles, as on a new
          # machine.
          env = dict(
            base_env,
            JAX_COMPILATION_CACHE_DIR=os.path.join(scratch, 'xla'),
            RESNET_JAX_TEST_CACHE_DIR=os.path.join(scratch, 'test-xla'),
          )
          wall, cpu, output = _run(_commands(scratch)[row], env)
          walls.append(wall)
          cpus.append(cpu)
          if row == 'quickstart':
            details.append(_quickstart_details(output, os.path.join(scratch, 'workdir')))
      merged = {
        k: statistics.median(d[k] for d in details if k in d)
        for k in {k for d in details for k in d}
      }
      results.append({'row': row, 'wall_s': walls, 'cpu_s': cpus, 'details': merged})
      text = ', '.join(f'{k} {v:.4g}' for k, v in sorted(merged.items()))
      print(
        f'| {row} | {statistics.median(walls):.1f} | {statistics.median(cpus):.1f} | {text} |',
        flush=True,
      )
  if FLAGS.output:
    with open(FLAGS.output, 'w') as f:
      json.dump({'load_average': os.getloadavg(), 'results': results}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
