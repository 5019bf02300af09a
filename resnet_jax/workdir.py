"""A workdir belongs to one run: it is writable, locked by the run's process 0, and keeps the
config the run started with.

Two processes training into one workdir would overwrite each other's checkpoints, and a run
resumed with another model or dataset would fail deep inside Orbax, or worse, train on
silently. Both are refused here, before any data is read or anything compiles.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import ml_collections
from absl import logging
from etils import epath

from resnet_jax import errors, fields, paths

LOCK_FILE = 'lock.json'
CONFIG_FILE = 'config.json'
WALL_TIME_FILE = 'wall_time.json'

# A bucket has no file locks: there the lock is a file whose time its holder refreshes, and a
# lock not refreshed for STALE_AFTER_S seconds belongs to a run that is gone.
HEARTBEAT_S = 60
STALE_AFTER_S = 300

# Fields a resumed run may change: its length, how often it logs, evaluates and saves, where the
# data lives, and how it is evaluated. Every other field changes the shapes of the checkpoint or
# the meaning of the training that is already in it.
RESUMABLE_CHANGES = frozenset(
  {
    'num_train_steps',
    'num_epochs',
    'log_every_steps',
    'eval_every_steps',
    'checkpoint_every_steps',
    'keep_checkpoints',
    'eval_only',
    'init_from',
    'data_dir',
    'prefetch',
    'fake_eval_batches',
    'eval_split',
    'eval_batch_size',
    'eval_protocol',
    'eval_image_size',
    'eval_crop_fraction',
    'eval_resize_size',
    'eval_sizes',
    'eval_max_aspect',
  }
)


def create(workdir: epath.Path) -> None:
  """Creates `workdir` and proves that files can be written there, or says why not."""
  probe = workdir / f'.write_test.{socket.gethostname()}.{os.getpid()}'
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe.write_text('')
    probe.unlink()
  except Exception as error:  # noqa: BLE001  (every filesystem raises its own types)
    cause = _describe(error)
    raise errors.WorkdirError(
      f'Cannot use --workdir={workdir}: {cause}. Choose a directory this user can create and '
      'write (for a bucket: check that it exists and that the credentials may write to it, '
      'e.g. `gcloud storage ls gs://BUCKET`), or fix its permissions.'
    ) from None


def _describe(error: BaseException) -> str:
  if isinstance(error, OSError) and error.errno is not None:
    where = f' ({error.filename})' if error.filename else ''
    return f'{os.strerror(error.errno).lower()}{where}'
  if isinstance(error, FileNotFoundError):
    # fsspec's object stores (gcsfs, s3fs) raise it, with the API's URL as its message, when
    # the bucket is missing: a new object is not found only there.
    return 'no such bucket'
  return f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}'.rstrip(': ')


def _holder() -> dict[str, Any]:
  return {
    'host': socket.gethostname(),
    'pid': os.getpid(),
    'started': datetime.datetime.now().isoformat(timespec='seconds'),
    'heartbeat': time.time(),
  }


def _in_use(workdir: epath.Path, holder: dict[str, Any]) -> errors.WorkdirError:
  who = (
    f'process {holder.get("pid")} on host {holder.get("host")}, started {holder.get("started")}'
    if holder
    else f'a process whose {LOCK_FILE} was deleted or emptied while it ran'
  )
  return errors.WorkdirError(
    f'{workdir} is in use by another run: {who}. Two runs in one workdir would '
    "overwrite each other's checkpoints. Wait for that run to end, stop it (SIGTERM saves a "
    'checkpoint, and this command then resumes it), or use another --workdir.'
    + (
      f' In a bucket a lock is stale {STALE_AFTER_S // 60} minutes after its holder stopped '
      'refreshing it; after a crash, this command then takes it over.'
      if paths.is_url(workdir)
      else ''
    )
  )


def _stale_warning(workdir: epath.Path, holder: dict[str, Any]) -> None:
  logging.warning(
    'Taking over the lock of %s from process %s on host %s (started %s), which is no longer '
    'running.',
    workdir,
    holder.get('pid'),
    holder.get('host'),
    holder.get('started'),
  )


class Held:
  """The workdir's lock as its holder sees it. `check` raises WorkdirError once another run has
  taken it (only a bucket's lock can be taken: a local one holds until its process ends)."""

  def __init__(self, workdir: epath.Path):
    self._workdir, self.taken_by = workdir, None

  def check(self) -> None:
    if self.taken_by is not None:
      holder = self.taken_by
      raise errors.WorkdirError(
        f'The lock of {self._workdir} was taken by another run while this one held it: process '
        f'{holder.get("pid")} on host {holder.get("host")}, started {holder.get("started")}. '
        'This run stopped without saving, so as not to overwrite the checkpoints of that run. '
        'Let that run finish or stop it, then rerun this command to resume from the newest '
        'checkpoint, or use another --workdir.'
      )


@contextlib.contextmanager
def _local_lock(workdir: epath.Path) -> Iterator[Held]:
  """An flock on the workdir directory itself: the kernel releases it when the holder dies,
  however it dies, and deleting or replacing lock.json does not release it. lock.json only
  names the holder; a lock whose file still names one but is free is stale."""
  path = os.fspath(workdir / LOCK_FILE)
  directory = os.open(os.fspath(workdir), os.O_RDONLY | os.O_DIRECTORY)
  try:
    try:
      fcntl.flock(directory, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
      if error.errno not in (errno.EAGAIN, errno.EACCES):
        raise
      raise _in_use(workdir, _read_holder(path)) from None
    previous = _read_holder(path)
    if previous:
      _stale_warning(workdir, previous)
    paths.write_text_atomic(epath.Path(path), json.dumps(_holder()))
    try:
      yield Held(workdir)
    finally:
      paths.write_text_atomic(epath.Path(path), '')  # Released: an empty file names no holder.
  finally:
    os.close(directory)


def _read_holder(path: str | epath.Path) -> dict[str, Any]:
  try:
    return json.loads(epath.Path(path).read_text() or '{}')
  except (OSError, ValueError):
    return {}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
  return all(a.get(k) == b.get(k) for k in ('host', 'pid', 'started'))


@contextlib.contextmanager
def _bucket_lock(workdir: epath.Path) -> Iterator[Held]:
  """A lock file in a bucket, refreshed every HEARTBEAT_S by a thread of its holder, which
  first checks that the file still names this run: a file another run wrote in its place means
  the lock was taken, and the run stops at its next step (`Held.check`)."""
  path = workdir / LOCK_FILE
  previous = _read_holder(path) if path.exists() else {}
  if previous:
    if time.time() - previous.get('heartbeat', 0) < STALE_AFTER_S:
      raise _in_use(workdir, previous)
    _stale_warning(workdir, previous)
  holder = _holder()
  path.write_text(json.dumps(holder))
  held = Held(workdir)
  stop = threading.Event()

  def refresh():
    while not stop.wait(HEARTBEAT_S):
      current = _read_holder(path) if path.exists() else {}
      if current and not _same(current, holder):
        held.taken_by = current
        return
      path.write_text(json.dumps(holder | {'heartbeat': time.time()}))

  thread = threading.Thread(target=refresh, name='workdir-lock-heartbeat', daemon=True)
  thread.start()
  try:
    yield held
  finally:
    stop.set()
    thread.join()
    if held.taken_by is None:
      path.unlink(missing_ok=True)


def lock(workdir: epath.Path) -> contextlib.AbstractContextManager[Held]:
  """Holds the workdir for this run while the context is open; raises WorkdirError if another
  live run holds it. Only process 0 of a multi-process run calls this. The lock is released,
  and lock.json names no holder, however the context ends."""
  return _bucket_lock(workdir) if paths.is_url(workdir) else _local_lock(workdir)


def changed_fields(recorded: dict[str, Any], config: dict[str, Any]) -> dict[str, tuple]:
  """{field: (recorded value, new value)} for every field a resumed run must keep.

  A field the recorded config lacks (a run from before the field existed) that is at its
  configs/default.py value is no change: a new field's default keeps the old behaviour.
  """
  from configs import default  # Imported here: the package need not be on the path to lock.

  old, new = fields.flatten(recorded), fields.flatten(config)
  defaults = fields.flatten(json.loads(default.get_config().to_json()))
  missing = object()
  changes = {}
  for field in sorted(old.keys() | new.keys()):
    if field.split('.')[0] in RESUMABLE_CHANGES:
      continue
    before, after = old.get(field, missing), new.get(field, missing)
    if before is missing and field in defaults and after == defaults[field]:
      continue
    if before != after:
      changes[field] = tuple('(absent)' if v is missing else v for v in (before, after))
  return changes


def check_config(workdir: epath.Path, config: ml_collections.ConfigDict, resuming: bool) -> None:
  """Records the config in WORKDIR/config.json; when `resuming`, first compares it with the
  recorded one and raises WorkdirError listing every field that may not change."""
  path = workdir / CONFIG_FILE
  current = json.loads(config.to_json())
  if resuming and path.exists():
    changes = changed_fields(json.loads(path.read_text()), current)
    if changes:
      listed = '; '.join(f'{k}: {old!r} -> {new!r}' for k, (old, new) in changes.items())
      raise errors.WorkdirError(
        f'{workdir} holds a run trained with another config, and resuming it would mix the '
        f'two. Differing fields (recorded -> now): {listed}. Rerun with the recorded values '
        f'(see {path}), or use a new --workdir for the new config. Only run length, logging, '
        'checkpointing, data location and evaluation fields may change on resume.'
      )
  if not path.exists() or not resuming:
    paths.write_text_atomic(path, json.dumps(current, indent=2))


class WallClock:
  """Wall time of a run summed over all its starts, and how often it was restarted.

  Kept in WORKDIR/wall_time.json, rewritten at every checkpoint and at the end, so a killed
  start loses at most the time since its last checkpoint from the sum.
  """

  def __init__(self, workdir: epath.Path, write: bool):
    self._path, self._write, self._start = workdir / WALL_TIME_FILE, write, time.time()
    previous = json.loads(self._path.read_text()) if self._path.exists() else None
    self._before = previous['wall_time_s'] if previous else 0.0
    self.restarts = previous['restarts'] + 1 if previous else 0

  def record(self) -> tuple[float, int]:
    """Writes and returns (wall time of all starts so far in seconds, restarts)."""
    total = self._before + time.time() - self._start
    if self._write:
      paths.write_text_atomic(
        self._path, json.dumps({'wall_time_s': total, 'restarts': self.restarts})
      )
    return total, self.restarts
