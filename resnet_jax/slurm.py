"""A sweep as one Slurm job array: `python -m resnet_jax.sweep ... --launcher=slurm`.

One `sbatch --array` script has a task for each unfinished point, which runs this sweep's
`--point=I` (SIGTERM from a preemption or `scancel` checkpoints the point; a requeued or
resubmitted task resumes it). The script and the tasks' logs go to WORKDIR/slurm/ (to ./slurm/
for a bucket workdir: Slurm writes logs to local or shared disks only). Rerunning the command
submits a new array of the points that are still unfinished: while an earlier array still
runs, its points hold their workdirs' locks and the new tasks of those points stop at once.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence

from resnet_jax import paths
from resnet_jax.errors import SweepError


def array_spec(indices: Sequence[int]) -> str:
  """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8', the form of `sbatch --array`."""
  ranges = []
  for index in sorted(indices):
    if ranges and index == ranges[-1][1] + 1:
      ranges[-1][1] = index
    else:
      ranges.append([index, index])
  return ','.join(str(a) if a == b else f'{a}-{b}' for a, b in ranges)


def log_directory(workdir: str) -> str:
  if paths.is_url(workdir):
    return os.path.abspath('slurm')
  return os.path.join(paths.resolve(workdir), 'slurm')


def script(sweep_path: str, workdir: str, indices: Sequence[int], slurm_args: str) -> str:
  """The sbatch script: one array task per index, each the sweep runner's `--point`."""
  logs = log_directory(workdir)
  options = [
    f'--array={array_spec(indices)}',
    f'--job-name={os.path.basename(os.path.normpath(workdir))}',
    f'--output={logs}/%A_%a.log',
    '--open-mode=append',  # A requeued task adds to its log.
    f'--chdir={os.getcwd()}',  # The sweep file and its configs are named relative to it.
    *shlex.split(slurm_args),
  ]
  runner = [sys.executable, '-m', 'resnet_jax.sweep', f'--sweep={sweep_path}']
  return '\n'.join(
    [
      '#!/bin/bash',
      *(f'#SBATCH {shlex.quote(option)}' for option in options),
      f'exec {shlex.join(runner)} --workdir={shlex.quote(workdir)} --point="$SLURM_ARRAY_TASK_ID"',
      '',
    ]
  )


def submit(
  names: Sequence[str], finished: Sequence[bool], sweep_path: str, workdir: str, slurm_args: str
) -> None:
  """Writes and submits the array of the unfinished points (the sweep's points by name, and
  whether each finished); prints the job id and the logs."""
  todo = [i for i, done in enumerate(finished) if not done]
  print(f'{len(names)} points, {len(names) - len(todo)} finished, {len(todo)} to run.')
  if not todo:
    print(
      f'Nothing to submit. Next: python -m resnet_jax.report --workdir={workdir} '
      f'--sweep={sweep_path}'
    )
    return
  logs = log_directory(workdir)
  os.makedirs(logs, exist_ok=True)
  path = os.path.join(logs, 'array.sbatch')
  with open(path, 'w') as f:
    f.write(script(sweep_path, workdir, todo, slurm_args))
  try:
    result = subprocess.run(['sbatch', '--parsable', path], capture_output=True, text=True)
  except FileNotFoundError:
    raise SweepError(
      '--launcher=slurm needs sbatch on the PATH: run this on a Slurm login node.'
    ) from None
  if result.returncode:
    raise SweepError(
      f'sbatch refused {path}: {result.stderr.strip()} Fix the options (--slurm_args) and '
      'rerun the same command.'
    )
  job = result.stdout.strip().split(';')[0]
  print(f'Submitted job array {job} ({path}), tasks {array_spec(todo)}; logs:')
  for i in todo:
    print(f'  {logs}/{job}_{i}.log  {names[i]}')
  print(
    f'squeue --jobs={job} shows them. Once they have left the queue, rerun this command to '
    'submit the unfinished points again, or report the sweep.'
  )
