"""Checkpoints that heal: a damaged newest checkpoint is set aside and an older one restored.

A run killed while writing, a full disk or a bad copy can leave the newest step directory
truncated, zeroed, without its metadata, or unfinished. Such a step is moved, intact, to
WORKDIR/checkpoints/damaged/ (nothing is ever deleted), one warning names it and the cause, and
the newest step that does restore is used. Every process of a multi-process run tries the same
step and they fall back together.
"""

import contextlib
import gc
import re
import sys
from collections.abc import Iterator
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from resnet_jax import errors

DAMAGED = 'damaged'
_STEP = re.compile(r'\d+')


def step_directories(directory: epath.Path) -> list[epath.Path]:
  """Finished and unfinished step directories (Orbax writes into `STEP.orbax-checkpoint-tmp*`
  and renames when done), newest first; damaged/ is not among them."""
  if not directory.exists():
    return []
  steps = [p for p in directory.iterdir() if p.is_dir() and _STEP.match(p.name)]
  return sorted(steps, key=lambda p: (int(_STEP.match(p.name).group()), p.name), reverse=True)


def finished_steps(directory: epath.Path) -> list[epath.Path]:
  """The step directories of saves that finished, newest first."""
  return [p for p in step_directories(directory) if _STEP.fullmatch(p.name)]


def has_checkpoint(directory: epath.Path) -> bool:
  return bool(finished_steps(directory))


def set_aside(path: epath.Path, cause: str) -> epath.Path:
  """Moves a step directory into damaged/ under a name not taken yet; returns the new path."""
  damaged = path.parent / DAMAGED
  damaged.mkdir(exist_ok=True)
  if not damaged.exists():  # A bucket has no empty directories; rename needs its target's.
    (damaged / '.keep').write_text('')
  target, n = damaged / path.name, 1
  while target.exists():
    target, n = damaged / f'{path.name}.{n}', n + 1
  path.rename(target)
  logging.warning('Checkpoint %s cannot be used (%s); moved to %s.', path, cause, target)
  return target


def set_aside_unfinished(directory: epath.Path) -> None:
  """Moves the temporary directories of saves that never finished into damaged/.

  Process 0 only, before the CheckpointManager is created."""
  for path in step_directories(directory):
    if not _STEP.fullmatch(path.name):
      set_aside(path, 'a save that never finished')


def _shapes(tree: Any) -> dict[str, tuple]:
  """'params/stage1/conv/kernel' -> (shape, dtype) for every array of a state or its metadata."""
  flat = flax.traverse_util.flatten_dict(flax.serialization.to_state_dict(tree), sep='/')
  # Empty optimizer states are None in Orbax's metadata and absent from the state.
  return {k: (tuple(v.shape), np.dtype(v.dtype).name) for k, v in flat.items() if v is not None}


def _mismatch(stored: dict[str, tuple], expected: dict[str, tuple]) -> str | None:
  """A sentence on how a readable checkpoint differs from the configured model, if it does."""
  missing, extra = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
  if missing or extra:
    return (
      f'its arrays are not those of the configured model (missing: {missing[:3]}, '
      f'unexpected: {extra[:3]})'
    )
  for name in sorted(expected):
    if stored[name] != expected[name]:
      return (
        f'{name} has shape {stored[name][0]} ({stored[name][1]}) there and '
        f'{expected[name][0]} ({expected[name][1]}) in the configured model'
      )
  return None


def _try_restore(path: epath.Path, abstract_state: Any) -> tuple[Any, str | None]:
  """(state, None), or (None, cause) for a checkpoint that cannot be read. A readable checkpoint
  of another model is not damage: it raises CheckpointError and stays where it is."""
  item = path / 'default'
  try:
    stored = _shapes(ocp.StandardCheckpointHandler().metadata(item).tree)
  except Exception as error:  # noqa: BLE001  (Orbax and TensorStore raise many types)
    return None, f'unreadable metadata: {_first_line(error)}'
  mismatch = _mismatch(stored, _shapes(abstract_state))
  if mismatch:
    raise errors.CheckpointError(
      f'The checkpoint {path} does not fit the configured model: {mismatch}. It was written '
      'with another config.model, model_kwargs or num_classes: resume with the config it was '
      'trained with (WORKDIR/config.json records it), or use a new --workdir.'
    )
  with _freed_reads_unreported():
    try:
      args = ocp.args.StandardRestore(abstract_state)
      return ocp.StandardCheckpointHandler().restore(item, args=args), None
    except Exception as error:  # noqa: BLE001
      return None, f'unreadable arrays: {_first_line(error)}'


@contextlib.contextmanager
def _freed_reads_unreported() -> Iterator[None]:
  """A failed restore leaves Orbax's other reads of that step unfinished; freed, each reports the
  same error again as an 'Exception ignored' traceback. The cause is reported once instead."""
  hook = sys.unraisablehook
  sys.unraisablehook = lambda unraisable: None
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = hook


def _first_line(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return f'{type(error).__name__}: {lines[-1] if lines else ""}'[:300]


def _everywhere(ok: bool) -> bool:
  """Whether `ok` holds on every process (the processes must fall back to the same step)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def restore_newest(
  manager: ocp.CheckpointManager, abstract_state: Any, directory: epath.Path
) -> Any | None:
  """The newest checkpoint that restores, after setting aside every newer one that does not;
  None if the workdir has no checkpoint. Raises CheckpointError if none restores."""
  damaged = []
  for step in sorted(manager.all_steps(), reverse=True):
    path = directory / str(step)
    state, cause = _try_restore(path, abstract_state)
    if _everywhere(cause is None):
      if damaged:
        logging.info('Resuming from step %d, the newest checkpoint that restores.', step)
      return state
    cause = cause or 'another process could not read it'
    if jax.process_index() == 0:
      damaged.append(f'step {step} ({cause}), now in {set_aside(path, cause)}')
    else:
      damaged.append(f'step {step} ({cause})')
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
    manager.reload()
  if damaged:
    raise errors.CheckpointError(
      f'No checkpoint in {directory} can be restored: {"; ".join(damaged)}. They are kept, '
      'unchanged. To start the run over, move the workdir away or use a new --workdir.'
    )
  return None
