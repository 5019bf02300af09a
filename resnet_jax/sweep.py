r"""Runs every point of an ablation sweep as an ordinary training run.

A sweep file in `experiments/` names a base config, overrides shared by every point, and the
overrides of each point, built from axes as in ml-collections / big_vision sweeps:

  from resnet_jax.sweep import axis, product

  def get_sweep():
    return {
      'config': 'configs/quickstart.py',
      'fixed': {'num_train_steps': 200},
      'points': product(axis('model', ['cifar_resnet20', 'cifar_iresnet20']), axis('seed', [0, 1])),
    }

Each point is the run `python -m resnet_jax.main --config=BASE --workdir=DIR/NAME --config.F=V
...` in its own sub-workdir, NAME spelling out its overrides (`model=cifar_iresnet56-seed=0`),
its output in DIR/NAME/log.txt. A point may also replace the base config file, to compare
recipes: `axis('config', ['configs/resnet50.py', 'configs/resnet50_tv2.py'])`. Each of the
`--parallel` slots trains its points one after another in one `resnet_jax.sweep_worker`
process, which gives the same results without paying main's start-up for every point;
`--process_per_point` starts main for each instead. A point that fails, or a worker that dies,
fails only that point.
Finished points (with a summary.json) are skipped and interrupted ones resume from their
checkpoints, so rerunning the same command completes a sweep. `--dry_run` prints the command
of every point and `--point=K` runs only point K, for cluster launchers; `--launcher=slurm`
submits the unfinished points as one Slurm job array (resnet_jax/slurm.py).

SIGTERM or SIGINT (Ctrl-C) stops a sweep, or a `--point` run: the running points save a
checkpoint and exit, no further point starts, and the runner exits with 128 + the signal number.
On Linux a runner killed outright (SIGKILL, out of memory) stops its points the same way; on
other platforms its points keep training, so stop them before rerunning.

  python -m resnet_jax.sweep --sweep=experiments/digits_ablation.py --workdir=/tmp/digits
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import importlib.util
import itertools
import json
import os
import pathlib
import queue
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from resnet_jax import fields, paths
from resnet_jax.errors import SweepError

Overrides = dict[str, Any]
# A point's override of the config file itself, e.g. axis(CONFIG, ['configs/resnet50.py', ...]).
CONFIG = 'config'
_SWEEP_KEYS = {'config', 'fixed', 'points'}


# --- Building sweeps ---------------------------------------------------------------------------


def axis(field: str, values: Sequence[Any]) -> list[Overrides]:
  """One config field taking each of `values`: `axis('depth', [56, 110])`."""
  return [{field: value} for value in values]


def _merge(parts: Sequence[Overrides]) -> Overrides:
  merged = {}
  for part in parts:
    for field, value in part.items():
      if field in merged:
        raise SweepError(
          f'The sweep sets config field {field!r} twice in one point ({merged[field]!r} and '
          f'{value!r}): combine each field into a single axis.'
        )
      merged[field] = value
  return merged


def product(*axes: list[Overrides]) -> list[Overrides]:
  """Every combination of the axes; the last axis varies fastest."""
  return [_merge(parts) for parts in itertools.product(*axes)]


def zipit(*axes: list[Overrides]) -> list[Overrides]:
  """The i-th points of all axes together, e.g. a model zipped with its learning rate."""
  lengths = {len(a) for a in axes}
  if len(lengths) > 1:
    raise SweepError(f'zipit needs axes of equal length, got lengths {sorted(lengths)}.')
  return [_merge(parts) for parts in zip(*axes, strict=True)]


# --- Expanding a sweep file into runs ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Point:
  """One training run of a sweep."""

  name: str  # Sub-workdir, spelled from the overrides.
  overrides: Overrides
  workdir: str
  config_path: str
  config: ml_collections.ConfigDict  # Base config with the overrides, as main will see it.

  def command(self, python: str = 'python') -> list[str]:
    """`python -m resnet_jax.main ...` for this point."""
    args = main_args(self.config_path, self.workdir, self.overrides)
    return [python, '-m', 'resnet_jax.main', *args]

  @property
  def finished(self) -> bool:
    return (paths.resolve(self.workdir) / 'summary.json').exists()


def main_args(config_path: str, workdir: str, overrides: Overrides) -> list[str]:
  """Arguments of `python -m resnet_jax.main`; `repr` of a tuple parses back as that tuple."""
  args = [f'--config={config_path}', f'--workdir={workdir}']
  for field, value in overrides.items():
    args.append(f'--config.{field}={value if isinstance(value, str) else repr(value)}')
  return args


def point_name(overrides: Overrides) -> str:
  """`{'model': 'cifar_resnet56', 'seed': 0}` -> 'model=cifar_resnet56-seed=0'."""
  parts = []
  for field, value in overrides.items():
    text = '_'.join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    parts.append(f'{field}={re.sub(r"[^A-Za-z0-9_.+]", "_", text)}')
  return '-'.join(parts) or 'base'


def _load_python_file(path: str, module_name: str) -> Any:
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path} does not exist; paths are relative to the current directory.')
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_sweep(path: str) -> tuple[str, Overrides, list[Overrides]]:
  """Reads `get_sweep()` of a sweep file: (base config path, fixed overrides, point overrides)."""
  module = _load_python_file(path, 'sweep_file')
  sweep = module.get_sweep() if hasattr(module, 'get_sweep') else None
  if not isinstance(sweep, dict) or not {'config', 'points'} <= sweep.keys() <= _SWEEP_KEYS:
    raise SweepError(
      f'{path}: get_sweep() must return a dict with keys config (base config file), points '
      "(overrides of each point, e.g. product(axis('model', [...]), axis('seed', [0, 1]))) and "
      'optionally fixed (overrides shared by every point, left out of the workdir names).'
    )
  if not sweep['points']:
    raise SweepError(f'{path}: get_sweep() returned no points.')
  return sweep['config'], dict(sweep.get('fixed', {})), list(sweep['points'])


def _check_fields(config: ml_collections.ConfigDict, overrides: Overrides, where: str) -> None:
  for field in overrides:
    if field.startswith('model_kwargs.'):
      continue  # Checked against the point's model (fields.set_model_kwargs).
    node = config
    for i, key in enumerate(field.split('.')):
      if not isinstance(node, ml_collections.ConfigDict) or key not in node:
        known = (
          ', '.join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else ''
        )
        parent = '.'.join(field.split('.')[:i]) or 'the config'
        raise SweepError(
          f'{where}: unknown config field {field!r}: {parent} has no field {key!r}. Known fields '
          f'there: {known}. Fix the name in the sweep file, or add the field (documented) to the '
          'base config file if the sweep needs a new one.'
        )
      node = node[key]


def resolve_config(args: Sequence[str]) -> ml_collections.ConfigDict:
  """The config `python -m resnet_jax.main` builds from these arguments (same parser)."""
  argv, model_kwargs = fields.split_model_kwargs(['resnet_jax.main', *args])
  flag_values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file('config', flag_values=flag_values, sys_argv=argv)
  flags.DEFINE_string('workdir', None, 'Run directory.', flag_values=flag_values)
  flag_values(argv)
  fields.set_model_kwargs(holder.value, model_kwargs)
  return holder.value


def _check_model(config: ml_collections.ConfigDict, where: str) -> None:
  """Builds the point's model as main will (name, depth and model_kwargs), without running it."""
  from resnet_jax import train  # Imported here: it pulls in TensorFlow, sweep files need none.

  try:
    train.create_model(config)
  except ValueError as e:
    raise SweepError(f'{where}: {e}') from None


def expand(sweep_path: str, workdir: str) -> list[Point]:
  """All points of a sweep, each checked (fields, values, model) before anything runs."""
  base_path, fixed, all_overrides = load_sweep(sweep_path)
  points = []
  for index, point_overrides in enumerate(all_overrides):
    where = f'{sweep_path}, point {index} {point_overrides}'
    # A point may name its own config file (a recipe): `axis(CONFIG, [...])`.
    config_path = point_overrides.get(CONFIG, base_path)
    base = _load_python_file(config_path, 'base_config').get_config()
    _check_fields(base, fixed, f'{sweep_path}, fixed overrides')
    _check_fields(base, {k: v for k, v in point_overrides.items() if k != CONFIG}, where)
    overrides = _merge([fixed, {k: v for k, v in point_overrides.items() if k != CONFIG}])
    name = point_name(point_overrides)
    point_workdir = os.path.join(workdir, name)
    try:
      config = resolve_config(main_args(config_path, point_workdir, overrides))
    except (flags.Error, TypeError, ValueError) as e:
      raise SweepError(f'{where}: {e}') from None
    _check_model(config, where)
    points.append(Point(name, overrides, point_workdir, config_path, config))
  names = [p.name for p in points]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise SweepError(
      f'{sweep_path}: several points share the workdir name(s) {duplicates}; every point needs '
      'distinct overrides (repeated values, or values that differ only in punctuation).'
    )
  return points


def check_finished_config(point: Point) -> None:
  """Refuses to reuse a finished point that was trained with a different config."""
  trained = json.loads((paths.resolve(point.workdir) / 'summary.json').read_text())['config']
  expected = json.loads(point.config.to_json())
  changed = sorted(k for k in expected.keys() | trained.keys() if expected.get(k) != trained.get(k))
  if changed:
    raise SweepError(
      f'{point.workdir} finished with a config that differs from the sweep in {changed} '
      f'(trained: {[trained.get(k) for k in changed]}, '
      f'sweep: {[expected.get(k) for k in changed]}). '
      'Use a new --workdir for the changed sweep, or delete that point to retrain it.'
    )


# --- Running -------------------------------------------------------------------------------------


def visible_gpus() -> list[str]:
  """GPU ids this process may use, found without initialising JAX in the parent process."""
  if 'CUDA_VISIBLE_DEVICES' in os.environ:
    return [d for d in os.environ['CUDA_VISIBLE_DEVICES'].split(',') if d.strip()]
  try:
    out = subprocess.run(
      ['nvidia-smi', '--query-gpu=index', '--format=csv,noheader'],
      capture_output=True,
      text=True,
      check=True,
    )
  except (OSError, subprocess.CalledProcessError):
    return []
  return out.stdout.split()


def device_groups(parallel: int) -> list[dict[str, str]]:
  """Environment of each of `parallel` slots: disjoint GPU sets, or plain processes on CPU."""
  gpus = visible_gpus()
  if not gpus:
    return [{} for _ in range(parallel)]
  if parallel > len(gpus):
    raise SweepError(
      f'--parallel={parallel} needs at least {parallel} GPUs, {len(gpus)} are visible '
      f'({",".join(gpus)}). Lower --parallel, or run points on several machines with --point.'
    )
  per_slot = len(gpus) // parallel
  return [
    {'CUDA_VISIBLE_DEVICES': ','.join(gpus[i * per_slot : (i + 1) * per_slot])}
    for i in range(parallel)
  ]


# `python -c _DIE_WITH_PARENT PARENT_PID PROGRAM ARGS...` asks Linux to send it SIGTERM (main's
# signal to checkpoint and exit) once its parent dies, even by SIGKILL, then becomes PROGRAM ARGS
# (the setting survives exec, and main's own re-exec, of a non-setuid program). A subprocess
# preexec_fn could do the same without the extra interpreter start (15 ms), but it makes Python
# fork this process, which has threads (XLA's, run_points'), and run Python code between fork and
# exec. A parent that died before prctl sends nothing: the ppid check covers that.
_DIE_WITH_PARENT = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
if os.getppid() != int(sys.argv[1]):
  sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


class _Children:
  """The running points' processes, and the signal that stopped the sweep, if one did.

  A stop sends each point SIGTERM, on which main saves a checkpoint and exits (0, without a
  summary.json), whichever signal the runner got: main turns SIGINT into a KeyboardInterrupt,
  which loses the steps since the last checkpoint. For the same reason each point runs in a
  session of its own, so that Ctrl-C in a terminal reaches only the runner, not the points.
  """

  def __init__(self) -> None:
    self.stopped_by: int | None = None
    self._running: set[subprocess.Popen] = set()

  def start(self, command: list[str], **popen: Any) -> subprocess.Popen:
    """Starts `command`, to be stopped with the sweep; `forget` it once it has ended."""
    if sys.platform.startswith('linux'):
      # The kernel signals the child when the *thread* that started it ends, not the process:
      # run_points starts points from its pool's threads, which live until every point has
      # ended, and `--point` from the main thread.
      command = [sys.executable, '-c', _DIE_WITH_PARENT, str(os.getpid()), *command]
    process = subprocess.Popen(command, start_new_session=True, **popen)
    self._running.add(process)
    if self.stopped_by is not None:  # Stopped while it started: stop() may not have seen it.
      process.terminate()
    return process

  def forget(self, process: subprocess.Popen) -> None:
    self._running.discard(process)

  def run(self, command: list[str], **popen: Any) -> int:
    """Runs `command` to its end; returns its exit code (negative: killed by that signal)."""
    process = self.start(command, **popen)
    try:
      return process.wait()
    finally:
      self.forget(process)

  def stop(self, signum: int, frame: Any) -> None:
    """Signal handler: stops the running points (run_points starts no new ones)."""
    del frame
    self.stopped_by = signum
    for process in list(self._running):
      process.terminate()


_CHILDREN = _Children()


class _Worker:
  """The `resnet_jax.sweep_worker` process of one --parallel slot, which trains its points one
  after another; started at the first point, and again after one that ended it."""

  def __init__(self, env: dict[str, str]) -> None:
    self._env = env
    self._process: subprocess.Popen | None = None

  def train(self, point: Point, log_path: str) -> int:
    """Trains `point`, its output appended to `log_path`; returns main's exit code for it."""
    if self._process is None:
      self._process = _CHILDREN.start(
        [sys.executable, '-m', 'resnet_jax.sweep_worker'],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **self._env},
      )
    request = {
      'args': main_args(point.config_path, point.workdir, point.overrides),
      'log': log_path,
    }
    try:
      self._process.stdin.write(json.dumps(request) + '\n')
      self._process.stdin.flush()
      answer = self._process.stdout.readline()
    except BrokenPipeError:
      answer = ''
    if answer.strip():
      return int(answer)
    returncode = self._process.wait()  # The worker ended during the point: its exit code.
    self.close()
    return returncode

  def close(self) -> None:
    if self._process is not None:
      self._process.stdin.close()
      self._process.wait()
      _CHILDREN.forget(self._process)
      self._process = None


@dataclasses.dataclass
class _Slot:
  """One of --parallel places to train: its devices, and its worker unless each point gets a
  process of its own."""

  env: dict[str, str]
  worker: _Worker | None


@contextlib.contextmanager
def _local_log(point: Point) -> Iterator[str]:
  """A local file to append the point's output to: WORKDIR/NAME/log.txt itself, or in a bucket
  a local copy of it, uploaded whole when the point ends (objects cannot be appended to)."""
  log = paths.resolve(point.workdir) / 'log.txt'
  if not paths.is_url(log):
    log.parent.mkdir(parents=True, exist_ok=True)
    yield str(log)
    return
  with tempfile.TemporaryDirectory() as local_dir:
    local = pathlib.Path(local_dir) / 'log.txt'
    local.write_text(log.read_text() if log.exists() else '')
    try:
      yield str(local)
    finally:
      log.write_text(local.read_text())


def _run_logged(point: Point, slot: _Slot) -> int:
  """Trains one point, its output appended to WORKDIR/NAME/log.txt; returns main's exit code."""
  command = point.command(sys.executable)
  with _local_log(point) as log_path:
    with open(log_path, 'a') as log:
      log.write(f'\n$ {shlex.join(command)}\n')
      if slot.worker is None:
        log.flush()
        return _CHILDREN.run(
          command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **slot.env}
        )
      log.write('# (trained by a resnet_jax.sweep_worker process, with the same results)\n')
    return slot.worker.train(point, log_path)


def _result_text(point: Point) -> str:
  summary = json.loads((paths.resolve(point.workdir) / 'summary.json').read_text())
  return f'top-1 error {100 * (1 - summary["eval"]["top1"]):.2f}%'


def run_points(points: Sequence[Point], parallel: int, in_workers: bool = True) -> list[Point]:
  """Trains every unfinished point, `parallel` at a time; returns the points that failed.

  `in_workers`: each slot trains its points in one sweep_worker process, instead of starting
  `python -m resnet_jax.main` for every point.
  """
  todo = [p for p in points if not p.finished]
  for p in points:
    if p.finished:
      check_finished_config(p)
  print(
    f'{len(points)} points, {len(points) - len(todo)} finished, {len(todo)} to run.', flush=True
  )
  slots = queue.Queue()
  for env in device_groups(parallel):
    slots.put(_Slot(env, _Worker(env) if in_workers else None))
  failed = []

  def run(index: int, point: Point) -> None:
    slot = slots.get()
    env = slot.env
    try:
      if _CHILDREN.stopped_by is not None:
        return
      state = 'resuming' if (paths.resolve(point.workdir) / 'checkpoints').is_dir() else 'starting'
      devices = f' on GPUs {env["CUDA_VISIBLE_DEVICES"]}' if env else ''
      print(f'[{index + 1}/{len(todo)}] {point.name}: {state}{devices}', flush=True)
      start = time.time()
      returncode = _run_logged(point, slot)
      took = f'{time.time() - start:.0f} s'
      if returncode == 0 and point.finished:
        print(
          f'[{index + 1}/{len(todo)}] {point.name}: done in {took}, {_result_text(point)}',
          flush=True,
        )
      elif _CHILDREN.stopped_by is not None and returncode in (0, -signal.SIGTERM):
        print(
          f'[{index + 1}/{len(todo)}] {point.name}: stopped after {took}, resumes on a rerun',
          flush=True,
        )
      else:
        failed.append(point)
        log_path = paths.resolve(point.workdir) / 'log.txt'
        tail = ''.join(log_path.read_text().splitlines(keepends=True)[-15:])
        print(
          f'[{index + 1}/{len(todo)}] {point.name}: FAILED after {took} (exit code '
          f'{returncode}, no summary.json); last lines of {log_path}:\n{tail}',
          flush=True,
        )
    finally:
      slots.put(slot)

  try:
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
      for future in [pool.submit(run, i, p) for i, p in enumerate(todo)]:
        future.result()
  finally:
    while not slots.empty():
      slot = slots.get()
      if slot.worker is not None:
        slot.worker.close()
  return failed


FLAGS = flags.FLAGS


def _exit_if_stopped(points: Sequence[Point]) -> None:
  """After a stop that left points unfinished: one line, and exit 128 + the signal number."""
  signum = _CHILDREN.stopped_by
  if signum is None or all(p.finished for p in points):
    return
  print(
    f'Sweep interrupted by {signal.Signals(signum).name} ({sum(p.finished for p in points)} of '
    f'{len(points)} points finished): rerun the same command to resume it.',
    file=sys.stderr,
  )
  sys.exit(128 + signum)


def run_sweep() -> None:
  points = expand(FLAGS.sweep, FLAGS.workdir)
  if FLAGS.dry_run:
    for point in points:
      print(shlex.join(point.command()))
    finished = sum(p.finished for p in points)
    print(f'# {len(points)} points, {finished} finished.', file=sys.stderr)
    return
  if FLAGS.launcher == 'slurm':
    if FLAGS.point is not None:
      raise SweepError('--launcher=slurm submits every unfinished point; drop --point.')
    from resnet_jax import slurm

    for point in points:
      if point.finished:
        check_finished_config(point)
    slurm.submit(
      [p.name for p in points],
      [p.finished for p in points],
      FLAGS.sweep,
      FLAGS.workdir,
      FLAGS.slurm_args,
    )
    return
  signal.signal(signal.SIGTERM, _CHILDREN.stop)
  signal.signal(signal.SIGINT, _CHILDREN.stop)
  if FLAGS.point is not None:
    if not 0 <= FLAGS.point < len(points):
      raise SweepError(f'--point={FLAGS.point}, but the sweep has points 0..{len(points) - 1}.')
    point = points[FLAGS.point]
    if point.finished:
      check_finished_config(point)
      print(f'{point.name} already finished, {_result_text(point)}.')
      return
    # In the foreground: a cluster launcher captures the output itself.
    returncode = _CHILDREN.run(point.command(sys.executable))
    _exit_if_stopped([point])
    sys.exit(returncode)
  failed = run_points(points, FLAGS.parallel, in_workers=not FLAGS.process_per_point)
  _exit_if_stopped(points)
  if failed:
    sys.exit(
      f'{len(failed)} point(s) failed: {", ".join(p.name for p in failed)}. Rerun the same '
      'command to retry them (finished points are skipped).'
    )
  print(
    f'All {len(points)} points finished. Next: python -m resnet_jax.report '
    f'--workdir={FLAGS.workdir} --sweep={FLAGS.sweep}'
  )


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.parallel < 1:
    raise app.UsageError('--parallel must be at least 1.')
  # This process only checks and launches points; building models for the checks must not
  # claim the GPUs or TPU chips that the points train on.
  jax.config.update('jax_platforms', 'cpu')
  try:
    run_sweep()
  except (SweepError, FileNotFoundError) as e:
    sys.exit(f'Error: {e}')


def define_flags() -> None:
  """Command-line flags, defined only when run as a program: sweep files import this module."""
  flags.DEFINE_string('sweep', None, 'Sweep file, e.g. experiments/digits_ablation.py.')
  flags.DEFINE_string('workdir', None, 'Directory holding one sub-workdir per point.')
  flags.DEFINE_integer(
    'parallel', 1, 'Points trained at once; visible GPUs are split between them.'
  )
  flags.DEFINE_bool('dry_run', False, 'Print the command of every point, run nothing.')
  flags.DEFINE_integer('point', None, 'Run only the point with this index (from 0).')
  flags.DEFINE_bool(
    'process_per_point',
    False,
    'Start `python -m resnet_jax.main` for every point, instead of training the points of each '
    '--parallel slot one after another in one worker process (same results, less start-up).',
  )
  flags.DEFINE_enum(
    'launcher',
    'local',
    ['local', 'slurm'],
    'local: train the points here. slurm: submit the unfinished points as one sbatch job array '
    '(one task per point, each running --point=I) and return.',
  )
  flags.DEFINE_string(
    'slurm_args', '', "sbatch options of every array task, e.g. '--partition=gpu --gpus=1'."
  )
  flags.mark_flags_as_required(['sweep', 'workdir'])


if __name__ == '__main__':
  define_flags()
  app.run(main)
