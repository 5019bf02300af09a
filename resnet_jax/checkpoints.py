"""Checkpoints that heal: a damaged newest checkpoint is set aside and an older one restored.

A run killed while writing, a full disk or a bad copy can leave the newest step directory
truncated, zeroed, without its metadata, or unfinished; a flipped bit leaves it readable but
wrong. Each save therefore records the CRC-32 of every array next to the arrays, in the same
atomic save, and a restore compares them before the state is used. A damaged step is moved,
intact, to WORKDIR/checkpoints/damaged/ (nothing is ever deleted), one warning names it and the
cause, and the newest step that does restore is used. Every process of a multi-process run tries
the same step and they fall back together.
"""

import contextlib
import gc
import re
import sys
import zlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from resnet_jax import errors

DAMAGED = 'damaged'
# The items of a step directory besides the state ('default'): the arrays' digests, and the
# training loop's open log window (see `Restored`).
DIGESTS = 'digests'
LOG_WINDOW = 'log_window'
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


def newest_state(workdir: epath.Path) -> epath.Path | None:
  """The state (params, batch_stats, ...) of the newest finished save of the run in `workdir`,
  the directory that `init_from`, predict and export read; None if it has none."""
  finished = finished_steps(workdir / 'checkpoints')
  return finished[0] / 'default' if finished else None


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


def _flat(tree: Any) -> dict[str, Any]:
  return flax.traverse_util.flatten_dict(flax.serialization.to_state_dict(tree), sep='/')


def _shapes(tree: Any) -> dict[str, tuple]:
  """'params/stage1/conv/kernel' -> (shape, dtype) for every array of a state or its metadata."""
  # Empty optimizer states are None in Orbax's metadata and absent from the state.
  return {
    k: (tuple(v.shape), np.dtype(v.dtype).name) for k, v in _flat(tree).items() if v is not None
  }


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


def digests(state: Any) -> dict[str, list]:
  """'params/stage1/conv/kernel' -> [shape, dtype, CRC-32 of its bytes] for every array of a
  state, from this process's copy: the state is replicated, so each process holds every array
  whole. CRC-32 catches any flipped bit or burst up to 32 bits, at several GB/s (zlib's)."""
  return {k: _digest(v) for k, v in _flat(state).items() if v is not None}


def _digest(array: Any) -> list:
  local = np.asarray(array.addressable_data(0) if isinstance(array, jax.Array) else array)
  data = np.ascontiguousarray(local).reshape(-1).view(np.uint8)
  return [list(local.shape), local.dtype.name, zlib.crc32(data)]


def save_args(state: Any, log_window: dict[str, list[float]]) -> ocp.args.Composite:
  """What `CheckpointManager.save` writes for one step, all in one atomic save: the state, the
  digests of its arrays and the open log window."""
  return ocp.args.Composite(
    **{
      'default': ocp.args.StandardSave(state),
      DIGESTS: ocp.args.JsonSave(digests(state)),
      LOG_WINDOW: ocp.args.JsonSave(log_window),
    }
  )


class Restored(NamedTuple):
  """A restored checkpoint: the state, and the per-step training metrics logged since the last
  metrics row before it ({'loss': [...], 'top1': [...]}; empty in checkpoints of older runs), so
  that the next row averages the same steps as an uninterrupted run's."""

  state: Any
  log_window: dict[str, list[float]]


def _verify(path: epath.Path, state: Any) -> str | None:
  """Why the restored `state` is not what was saved at `path`, if it is not; None also for a
  checkpoint written before digests were recorded."""
  if not (path / DIGESTS).exists():
    logging.info('Checkpoint %s records no digests (an older run); restored unverified.', path)
    return None
  try:
    recorded = ocp.JsonCheckpointHandler().restore(path / DIGESTS)
  except Exception as error:  # noqa: BLE001
    return f'unreadable digests: {_first_line(error)}'
  restored = digests(state)
  differing = sorted(
    k for k in restored.keys() | recorded.keys() if restored.get(k) != recorded.get(k)
  )
  if differing:
    return (
      f'{len(differing)} of its arrays differ from the digests recorded when it was saved '
      f'(first: {differing[0]})'
    )
  return None


def _log_window(path: epath.Path) -> dict[str, list[float]]:
  if not (path / LOG_WINDOW).exists():
    return {}
  return ocp.JsonCheckpointHandler().restore(path / LOG_WINDOW)


def _try_restore(path: epath.Path, abstract_state: Any) -> tuple[Restored | None, str | None]:
  """(restored, None), or (None, cause) for a checkpoint that cannot be read or whose arrays are
  not those it saved. A readable checkpoint of another model is not damage: it raises
  CheckpointError and stays where it is."""
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
      state = ocp.StandardCheckpointHandler().restore(item, args=args)
    except Exception as error:  # noqa: BLE001
      return None, f'unreadable arrays: {_first_line(error)}'
  cause = _verify(path, state)
  if cause:
    return None, cause
  try:
    return Restored(state, _log_window(path)), None
  except Exception as error:  # noqa: BLE001
    return None, f'unreadable log window: {_first_line(error)}'


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
  """The type and first line of the error at the root of `error`'s chain: Orbax wraps what
  TensorStore found wrong in a message that ends in the array's whole multi-line spec."""
  while error.__cause__ is not None:
    error = error.__cause__
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return f'{type(error).__name__}: {lines[0] if lines else ""}'[:300]


def _everywhere(ok: bool) -> bool:
  """Whether `ok` holds on every process (the processes must fall back to the same step)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def restore_newest(
  manager: ocp.CheckpointManager, abstract_state: Any, directory: epath.Path
) -> Restored | None:
  """The newest checkpoint that restores, after setting aside every newer one that does not;
  None if the workdir has no checkpoint. Raises CheckpointError if none restores."""
  damaged = []
  for step in sorted(manager.all_steps(), reverse=True):
    path = directory / str(step)
    restored, cause = _try_restore(path, abstract_state)
    if _everywhere(cause is None):
      if damaged:
        logging.info('Resuming from step %d, the newest checkpoint that restores.', step)
      return restored
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
