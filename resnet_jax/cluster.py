"""Joining and leaving a multi-process cluster (JAX's coordination service, gloo on CPU).

A run cannot go on when one of its processes is lost. What ends the survivors stands on public
behaviour only:

- a collective that fails in Python (gloo: 'Connection reset by peer'), within a second or so of
  the loss: `leave_on_lost_peer` around the training function prints one paragraph that names
  the lost process and the checkpoint a restart resumes from, and exits with code 1;
- JAX's coordination service, when the coordinator (process 0) is lost or misses a process's
  heartbeats for `heartbeat_timeout_seconds` (--peer_timeout): its client aborts the process
  (SIGABRT, with JAX's own error lines and a C++ stack);
- the launcher: `srun --kill-on-bad-exit=1` ends every task of a step once one exits non-zero or
  is killed, and the sweep runner's points die with it (PR_SET_PDEATHSIG).

Either way no checkpoint is damaged (a save is complete or set aside at the next start), and
rerunning the same command on every process resumes from the newest complete one.
"""

import functools
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from resnet_jax import errors

# A failed gloo collective: 'Gloo all-reduce failed: ... Connection reset by peer'.
_GLOO_FAILURE = re.compile(r'\bGloo\b.* failed\b')

_leaving = threading.Lock()
_checkpoints: epath.Path | None = None


class LostPeerError(RuntimeError):
  """A process of a multi-process run was lost: killed, crashed, or cut off with its host."""

  def __init__(self, process: int | None, num_processes: int, resume_step: int | None):
    self.process, self.num_processes, self.resume_step = process, num_processes, resume_step
    lost = (
      f'process {process} of {num_processes}'
      if process is not None
      else f'a peer process (of {num_processes})'
    )
    resume = (
      f'resumes from the newest checkpoint, step {resume_step}'
      if resume_step is not None
      else 'starts from step 0 (no checkpoint is complete yet)'
    )
    super().__init__(
      f'Lost {lost} of this multi-process run; it cannot continue without all of its '
      f'processes, so this one stops too. Restart all processes with the same command: the '
      f'run {resume}.'
    )


def initialize(
  coordinator_address: str | None,
  num_processes: int | None,
  process_id: int | None,
  auto: bool,
  peer_timeout_s: int,
) -> None:
  """Joins the cluster given by the address (or, with `auto`, found by JAX); no-op without either.

  A peer that stops answering is detected within `peer_timeout_s` seconds (the coordination
  service's heartbeat timeout), on which JAX aborts this process.
  """
  if peer_timeout_s <= 0:
    raise errors.ConfigError(
      f'--peer_timeout={peer_timeout_s} must be a positive number of seconds.'
    )
  if coordinator_address:
    if num_processes is None or process_id is None or not 0 <= process_id < num_processes:
      raise errors.ConfigError(
        f'--coordinator_address={coordinator_address} needs --num_processes=N and '
        f'--process_id=I with 0 <= I < N, the same N and a distinct I on every process; got '
        f'--num_processes={num_processes} --process_id={process_id}.'
      )
    cluster = dict(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
  elif auto:
    cluster = {}
  else:
    return
  # Cross-process collectives for CPU devices; GPU and TPU backends ignore this setting.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  joining = (
    f'as process {process_id} of {num_processes} at {coordinator_address}'
    if coordinator_address
    else 'found by jax.distributed.initialize()'
  )
  try:
    jax.distributed.initialize(**cluster, heartbeat_timeout_seconds=peer_timeout_s)
  except Exception as error:  # noqa: BLE001  (JAX raises RuntimeError or its own types)
    # Left at once: JAX's shutdown at exit would fail on the half-joined client with a traceback.
    cause = str(error).strip().splitlines()[0]
    leave(
      errors.ConfigError(
        f'Could not join the multi-process cluster {joining}: {cause}. Every process needs '
        'the same --coordinator_address and --num_processes and its own --process_id (0 for '
        'the coordinator), and all must start within 5 minutes; check for a process started '
        'twice.'
      )
    )


def set_checkpoint_directory(directory: epath.Path) -> None:
  """Where the lost-peer message looks for the step a restart resumes from."""
  global _checkpoints
  _checkpoints = directory


def lost_peer_error(exception: BaseException) -> LostPeerError | None:
  """The LostPeerError that `exception` (or an exception it was raised from) stands for, if any."""
  if jax.process_count() == 1:
    return None
  while exception is not None:
    if _GLOO_FAILURE.search(str(exception)):
      return _lost_peer()
    exception = exception.__cause__ or exception.__context__
  return None


def leave_on_lost_peer(function: Callable) -> Callable:
  """Decorates `function` to leave the process (`leave`) when it raises for a lost peer."""

  @functools.wraps(function)
  def wrapper(*args, **kwargs):
    try:
      return function(*args, **kwargs)
    except Exception as exception:
      error = lost_peer_error(exception)
      if error is None:
        raise
      leave(error)

  return wrapper


def leave(error: Exception) -> NoReturn:
  """Prints `error` and ends the process with exit code 1, skipping JAX's shutdown barrier, which
  would wait for the lost process and then abort. Of concurrent callers, one prints."""
  with _leaving:
    logging.flush()
    sys.stdout.flush()
    print(f'error: {error}', file=sys.stderr, flush=True)
    os._exit(1)


def _lost_peer() -> LostPeerError:
  """The lost process is named when it can only be one: the other process of a pair. With more,
  a collective's error does not say which one it was."""
  num_processes = jax.process_count()
  peers = set(range(num_processes)) - {jax.process_index()}
  return LostPeerError(peers.pop() if len(peers) == 1 else None, num_processes, _resume_step())


def _resume_step() -> int | None:
  """The newest complete checkpoint's step, as a restart's CheckpointManager will find it."""
  if _checkpoints is None or not _checkpoints.exists():
    return None
  return max(ocp.utils.checkpoint_steps(_checkpoints), default=None)
