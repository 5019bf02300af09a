"""Trains sweep points one after another in one process, as `python -m resnet_jax.main` would.

A small point of a sweep trains for seconds, while starting `resnet_jax.main` costs several
(importing TensorFlow, JAX, Flax and Orbax, and starting their runtimes). The sweep runner
(`resnet_jax/sweep.py`) therefore keeps one worker per `--parallel` slot and sends it the points
one at a time. Each point is the same `train.train_and_evaluate(config, workdir)` call that
main makes, with the same config, so it trains to the same bits as a standalone run (tested);
compiled programs come from the persistent compilation cache, shared with standalone runs.

Protocol: one JSON line per point on stdin, {"args": [main's flags], "log": PATH}. The point's
output (Python and C++ alike) is appended to PATH, and the worker answers with one line on its
original stdout: main's exit code for the point (0 trained or preempted, 1 an error of the run,
which is in the log). SIGTERM during a point saves a checkpoint and ends the point, as in main;
between points it ends the worker, and so does the end of stdin.
"""

import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence

from absl import app, logging

from resnet_jax import errors, host_memory
from resnet_jax import main as main_lib


@contextlib.contextmanager
def _output_to(path: str) -> Iterator[None]:
  """Points file descriptors 1 and 2 at `path` (appending) for the duration."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = [os.dup(1), os.dup(2)]
  log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  try:
    os.dup2(log, 1)
    os.dup2(log, 2)
    yield
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for fd in (log, *saved):
      os.close(fd)


def train_point(args: Sequence[str]) -> int:
  """One point, as `python -m resnet_jax.main ARGS` trains it; returns main's exit code."""
  from resnet_jax import sweep, train  # Imported here: they import JAX and TensorFlow.

  config = sweep.resolve_config(args)
  workdir = next(a.split('=', 1)[1] for a in args if a.startswith('--workdir='))
  try:
    summary = train.train_and_evaluate(config, workdir)
  except errors.Error as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  except Exception:  # noqa: BLE001 - the next point must still run; the log has the traceback.
    traceback.print_exc()
    return 1
  logging.info('Finished: %s', summary.get('eval', summary))
  return 0


def _end_worker(signum, frame) -> None:
  del frame
  signal.signal(signum, signal.SIG_IGN)  # Leaving already: a second one must not cut the exit.
  sys.exit(0)


def main(argv: Sequence[str]) -> None:
  del argv
  main_lib.quiet_third_party_logs()
  main_lib.configure_jax()
  answers = os.fdopen(os.dup(1), 'w')
  os.dup2(2, 1)  # Stray prints between points must not be read as answers.
  for count, line in enumerate(sys.stdin, start=1):
    request = json.loads(line)
    with _output_to(request['log']):
      logging.info('Sweep worker %d, its point %d.', os.getpid(), count)
      code = train_point(request['args'])
    signal.signal(signal.SIGTERM, _end_worker)  # Training installed its own handler.
    try:
      answers.write(f'{code}\n')
      answers.flush()
    except BrokenPipeError:
      # The runner is gone (killed): nobody reads the answer, and the point's checkpoint is
      # saved. The pipe is replaced so that closing `answers` at exit does not fail again.
      os.dup2(os.open(os.devnull, os.O_WRONLY), answers.fileno())
      break
  # End of stdin: the worker leaves. The SIGTERM that Linux sends when the runner exits
  # (PR_SET_PDEATHSIG) may arrive during the exit; raised in an atexit function, SystemExit would
  # print a traceback there.
  signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == '__main__':
  main_lib.skip_keras_import()
  host_memory.reexec_with_huge_pages()
  signal.signal(signal.SIGTERM, _end_worker)
  app.run(main)
