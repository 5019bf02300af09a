"""Why a run stopped, told in one paragraph: a full disk, or a loss that became NaN or Inf.

A full disk surfaces deep in Orbax's or TensorStore's threads and a NaN only as numbers; both
are turned here into an error that says what is intact in the workdir and what to do next.
"""

import errno
import pathlib
import shutil

import orbax.checkpoint as ocp
from etils import epath

from resnet_jax import checkpoints, errors, paths


class NonFiniteLossError(errors.Error, FloatingPointError):
  pass


def disk_full(error: BaseException) -> bool:
  """Whether `error`, or an error it came from, is a full disk (TensorStore reports it in text)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if 'No space left on device' in str(error) or 'Disk quota exceeded' in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def check_room(workdir: epath.Path) -> None:
  """Raises DiskFullError before a save that would not fit next to the newest checkpoint's size.

  A save that runs out of space midway fails in Orbax's background threads, with hundreds of
  lines of their tracebacks, and leaves a partial directory; this stops cleanly first.
  """
  if paths.is_url(workdir):
    return  # Buckets do not fill up.
  finished = checkpoints.finished_steps(workdir / 'checkpoints')
  if not finished:
    return
  needed = sum(f.stat().st_size for f in pathlib.Path(finished[0]).rglob('*') if f.is_file())
  if shutil.disk_usage(workdir).free < 1.2 * needed:
    raise disk_full_error(workdir)


def disk_full_error(workdir: epath.Path) -> errors.DiskFullError:
  intact = [p.name for p in checkpoints.finished_steps(workdir / 'checkpoints')]
  if len(intact) > 1:
    kept = f'the checkpoints of steps {", ".join(reversed(intact))} are intact'
  else:
    kept = f'the checkpoint of step {intact[0]} is intact' if intact else 'no checkpoint is intact'
  return errors.DiskFullError(
    f'The filesystem of {workdir} is full (no space left on device); training stopped, and '
    f'{kept} there (an unfinished save is set aside at the next start). Free space '
    'or lower config.keep_checkpoints, then rerun the same command: it resumes from the newest '
    'checkpoint.'
  )


def check_finite(
  fetched: list, step: int, manager: ocp.CheckpointManager, workdir: epath.Path, start_step: int
) -> None:
  """Raises NonFiniteLossError if any of the `fetched` step metrics flags a NaN or Inf, naming
  the checkpoint to resume from, or the one that this start restored as the suspect."""
  if not any(bool(m['nonfinite']) for m in fetched):
    return
  manager.wait_until_finished()
  last = manager.latest_step()
  if last is None:
    kept = 'no checkpoint is kept'
  elif last == start_step and start_step > 0:
    raise NonFiniteLossError(
      f'The loss or a gradient became NaN or Inf at or before step {step}, within '
      f'{step - start_step} steps of the checkpoint of step {last} that this start restored; '
      f'training stopped without saving. That checkpoint is the suspect: it may hold damaged or '
      f'already diverging values. Move {workdir}/checkpoints/{last} into '
      f'{workdir}/checkpoints/damaged/ and rerun to resume from the checkpoint before it, or '
      'lower config.learning_rate, add warmup (config.warmup) or use float32 (config.dtype).'
    )
  else:
    kept = f'the last good checkpoint (step {last}) is kept'
  raise NonFiniteLossError(
    f'The loss or a gradient became NaN or Inf at or before step {step}; training stopped '
    f'without saving, and {kept} in {workdir}. Lower config.learning_rate, add warmup '
    '(config.warmup) or use float32 (config.dtype) and restart: the run resumes from there.'
  )
