"""Joining and leaving a multi-process cluster (JAX's coordination service, gloo on CPU).

A run cannot go on when one of its processes is lost, so every survivor leaves with exit code 1
and one paragraph that names the lost process and the checkpoint a restart resumes from. JAX's
own ways out are unfit: the atexit handler's shutdown barrier waits for the lost process until
the heartbeat timeout, and the client's default error callback then aborts the process with a
C++ stack trace (SIGABRT). Survivors therefore leave with os._exit, from one of two places:

- a collective that fails in Python (gloo: 'Connection reset by peer'), within a second or so of
  the loss: `leave_on_lost_peer` around the training function;
- the coordination service's error, on a C++ thread, when the coordinator (process 0) is lost
  (within milliseconds) or when the service misses a process's heartbeats for peer_timeout_s
  seconds (a process stuck in a collective that never fails, a host that vanished silently).
"""

import ctypes
import functools
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import NoReturn
from unittest import mock

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax._src import distributed

from resnet_jax import errors

# A failed gloo collective: 'Gloo all-reduce failed: ... Connection reset by peer'.
_GLOO_FAILURE = re.compile(r'\bGloo\b.* failed\b')

_leaving = threading.Lock()
_checkpoints: epath.Path | None = None
# While this process joins the cluster: how it joins, for the error message if it cannot.
_joining: str | None = None


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

  A lost peer is detected within `peer_timeout_s` seconds (the coordination service's heartbeat
  timeout), and then ends this process with a LostPeerError message and exit code 1.
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
    # Cross-process collectives for CPU devices; GPU and TPU backends ignore this setting.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    cluster = dict(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
  elif auto:
    cluster = {}
  else:
    return
  global _joining
  _joining = (
    f'as process {process_id} of {num_processes} at {coordinator_address}'
    if coordinator_address
    else 'found by jax.distributed.initialize()'
  )
  make_client = getattr(getattr(distributed, '_jax', None), 'get_distributed_runtime_client', None)
  try:
    if make_client is None:  # Another JAX: its own handling of lost peers (an abort) applies.
      logging.warning('This JAX version offers no hook for lost peers; a lost process aborts.')
      jax.distributed.initialize(**cluster, heartbeat_timeout_seconds=peer_timeout_s)
    else:
      # This jaxlib cannot pass the callback's absl::Status to Python: the call throws
      # std::bad_cast, which ends in std::terminate. That is the moment to leave, so the callback
      # is also the C++ terminate handler (std::set_terminate of the libstdc++ jaxlib loaded).
      ctypes.CDLL('libstdc++.so.6')._ZSt13set_terminatePFvvE(_TERMINATE_HANDLER)
      # jax.distributed.initialize takes no error callback, so one is handed to its client here.
      client = functools.partial(make_client, missed_heartbeat_callback=_on_service_error)
      with mock.patch.object(distributed._jax, 'get_distributed_runtime_client', client):
        jax.distributed.initialize(**cluster, heartbeat_timeout_seconds=peer_timeout_s)
  except Exception as error:  # noqa: BLE001  (JAX raises RuntimeError or its own types)
    # Left at once: JAX's shutdown at exit would fail on the half-joined client with a traceback.
    cause = str(error).strip().splitlines()[0]
    leave(_join_error('the coordination service refused it' if 'bad_cast' in cause else cause))
  _joining = None


def _join_error(cause: str) -> errors.ConfigError:
  return errors.ConfigError(
    f'Could not join the multi-process cluster {_joining}: {cause}. Every process needs the '
    'same --coordinator_address and --num_processes and its own --process_id (0 for the '
    'coordinator), and all must start within 5 minutes; check for a process started twice.'
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
  neither a collective's error nor the coordination service (whose status does not reach
  Python) says which one it was."""
  num_processes = jax.process_count()
  peers = set(range(num_processes)) - {jax.process_index()}
  return LostPeerError(peers.pop() if len(peers) == 1 else None, num_processes, _resume_step())


def _resume_step() -> int | None:
  """The newest complete checkpoint's step, as a restart's CheckpointManager will find it."""
  if _checkpoints is None or not _checkpoints.exists():
    return None
  return max(ocp.utils.checkpoint_steps(_checkpoints), default=None)


def _on_service_error(*status) -> None:
  """The coordination service reported a lost process (or lost the coordinator itself), or
  refused this one while it joined (a process id taken twice)."""
  del status
  if _joining is not None:
    leave(_join_error('the coordination service refused it or lost a peer'))
  leave(_lost_peer())


_TERMINATE_HANDLER = ctypes.CFUNCTYPE(None)(_on_service_error)
