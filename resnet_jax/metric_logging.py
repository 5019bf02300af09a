"""Metric writers: TensorBoard events, the console, and a JSON-lines file.

TensorBoard event files need TensorFlow or TensorBoard to read; `metrics.jsonl` lets sweeps and
reports read every run's curves with the standard library alone. Event files are written by
tensorboardX, so that runs that read no TFDS dataset (fake data, benchmarks) never import
TensorFlow. In a bucket (gs://, s3://) both files go through etils.epath like every other file
of a run; object stores cannot append, so there each flush rewrites the file whole.
"""

import io
import json
import sys
import time
import types
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging
from etils import epath

from resnet_jax import paths


def _tensorflow_summary_writer(logdir: str):
  """clu's TensorBoard writer, importing TensorFlow only when called."""
  import tensorflow as tf
  from clu.metric_writers.tf.summary_writer import SummaryWriter

  tf.config.set_visible_devices([], 'GPU')  # The summary writer must not take GPU memory.
  return SummaryWriter(logdir)


# clu's metric_writers package imports its TensorFlow summary writer, and so TensorFlow, when
# it is imported (also through clu.periodic_actions), and has no option against it: a lazy import
# is proposed upstream in google/CommonLoopUtils#358. Its stand-in imports TensorFlow only when a
# writer is made. tests/test_upstream.py fails when clu changes under it.
if 'clu.metric_writers' not in sys.modules:
  _lazy = types.ModuleType('clu.metric_writers.summary_writer')
  _lazy.SummaryWriter = _tensorflow_summary_writer
  sys.modules['clu.metric_writers.summary_writer'] = _lazy

from clu import metric_writers, periodic_actions  # noqa: E402
from clu.metric_writers import interface  # noqa: E402


class ReportProgress(periodic_actions.ReportProgress):
  """clu's progress report, whose `timed` parts (input, eval) can also be read while it runs.

  Its ETA is that of the whole run so far, evaluations included, in minutes and seconds: clu's
  extrapolates the last window's train steps alone and rounds down to whole minutes, so a short
  run, or one whose time goes into evaluation, reads "ETA: 0m" throughout.
  """

  def _init_and_check(self, step: int, t: float) -> None:
    if self._previous_step is None:
      self._first = (step, t)
    super()._init_and_check(step, t)

  def _apply(self, step: int, t: float) -> None:
    steps_per_sec = (step - self._previous_step) / (t - self._previous_time)
    message = f'{steps_per_sec:.1f} steps/s'
    if self._num_train_steps:
      first_step, first_time = self._first
      eta = (self._num_train_steps - step) * (t - first_time) / (step - first_step)
      message += (
        f', {100 * step / self._num_train_steps:.1f}% ({step}/{self._num_train_steps}), '
        f'ETA: {_minutes_and_seconds(eta)}'
      )
    if self._time_per_part:
      total = time.monotonic() - self._t0
      parts = ', '.join(
        f'{100 * dt / total:.1f}% {name}' for name, dt in sorted(self._time_per_part.items())
      )
      message += f' ({_minutes_and_seconds(total)}: {parts})'
    logging.info('Progress: %s', message)
    if self._writer is not None:
      self._writer.write_scalars(step, {'steps_per_sec': steps_per_sec})
      self._writer.write_scalars(step, {'uptime': time.monotonic() - self._t0})

  def seconds(self, name: str) -> float:
    """The seconds spent so far in `timed(name)` blocks (tests/test_metric_logging.py fails if clu
    no longer keeps them in `_time_per_part`)."""
    return self._time_per_part[name]


def _minutes_and_seconds(seconds: float) -> str:
  """123456.7 -> '34h17m', 95.2 -> '1m35s'."""
  minutes, seconds = divmod(int(seconds), 60)
  return f'{minutes // 60}h{minutes % 60:02d}m' if minutes >= 60 else f'{minutes}m{seconds:02d}s'


class _Rewritten(io.StringIO):
  """A file in a bucket, opened for appending: each flush uploads everything written so far."""

  def __init__(self, path: epath.Path, mode: str):
    super().__init__(path.read_text() if 'a' in mode and path.exists() else '')
    self.seek(0, io.SEEK_END)
    self._path = path

  def flush(self):
    self._path.write_text(self.getvalue())

  def close(self):
    self.flush()
    super().close()


class _RewrittenBytes:
  """A new binary file in a bucket: each flush uploads everything written so far.

  Not an io.BytesIO: tensorboardX fsyncs every file that has a `fileno`, and BytesIO's raises.
  """

  def __init__(self, path: str):
    self._path, self._data = epath.Path(path), bytearray()

  def write(self, data: bytes) -> None:
    self._data += data

  def flush(self) -> None:
    self._path.write_bytes(bytes(self._data))

  def close(self) -> None:
    self.flush()


class _BucketEventFiles:
  """tensorboardX's writer factory for bucket URLs, through etils.epath."""

  def open(self, path: str) -> _RewrittenBytes:
    return _RewrittenBytes(path)

  def directory_check(self, path: str) -> None:
    del path  # Buckets have no directories to create.


def _open_for_append(path: epath.Path):
  if paths.is_url(path):
    return _Rewritten(path, 'a')
  return path.open('a')


def truncate_jsonl(path: str | epath.Path, last_step: int, drop_eval_at_last: bool) -> None:
  """Drops the records of `metrics.jsonl` past `last_step`, the step a run resumes from.

  A killed run wrote records for steps it will train again; without this the file would hold
  them twice. With `drop_eval_at_last`, evaluation records at `last_step` go too: a finished run
  started again evaluates its final step once more.
  """
  path = paths.resolve(path)
  if not path.exists():
    return
  kept = []
  for line in path.read_text().splitlines(keepends=True):
    try:
      record = json.loads(line)
    except ValueError:
      continue  # The half-written last line of a killed run.
    if record['step'] > last_step:
      continue
    if (
      drop_eval_at_last
      and record['step'] == last_step
      and any(k.startswith('eval_') for k in record)
    ):
      continue
    kept.append(line if line.endswith('\n') else line + '\n')
  paths.write_text_atomic(path, ''.join(kept))


class JsonlWriter(interface.MetricWriter):
  """Writes one line per `write_scalars` call: {"step": ..., "name": value, ...}.

  A local file is flushed at every record, so a killed run loses none; a file in a bucket is
  uploaded whole at each `flush`, which the training loop calls before every checkpoint.
  """

  def __init__(self, path: str | epath.Path):
    path = paths.resolve(path)
    self._file = _open_for_append(path)
    self._flush_each_record = not paths.is_url(path)

  def write_scalars(self, step: int, scalars: Mapping[str, interface.Scalar]):
    record = {'step': int(step)} | {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._file.write(json.dumps(record) + '\n')
    if self._flush_each_record:
      self._file.flush()

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def write_images(self, step, images):
    del step, images

  def write_videos(self, step, videos):
    del step, videos

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def write_texts(self, step, texts):
    del step, texts

  def write_histograms(self, step, arrays, num_buckets=None):
    del step, arrays, num_buckets

  def write_hparams(self, hparams: Mapping[str, Any]):
    del hparams

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


class TensorBoardWriter(interface.MetricWriter):
  """TensorBoard event files through tensorboardX, which needs no TensorFlow.

  clu's own TensorBoard writer imports TensorFlow (several seconds at startup), which a run
  that reads no TFDS dataset never needs otherwise. In buckets (gs://, s3://) the files go
  through etils.epath.
  """

  def __init__(self, logdir: str, purge_step: int | None = None):
    import tensorboardX  # Imported here: only process 0 writes events.
    from tensorboardX import record_writer

    for scheme in ('gs', 's3'):
      record_writer.register_writer_factory(scheme, _BucketEventFiles())
    # purge_step: TensorBoard hides the events of earlier files from this step on, which a
    # resumed run writes again.
    self._writer = tensorboardX.SummaryWriter(logdir, flush_secs=30, purge_step=purge_step)
    self._summary = tensorboardX.summary

  def write_scalars(self, step: int, scalars: Mapping[str, interface.Scalar]):
    for name, value in scalars.items():
      self._writer.add_scalar(name, float(np.asarray(value)), global_step=step)

  def write_images(self, step: int, images: Mapping[str, interface.Array]):
    for name, value in images.items():
      self._writer.add_images(name, np.asarray(value), global_step=step, dataformats='NHWC')

  def write_texts(self, step: int, texts: Mapping[str, str]):
    for name, value in texts.items():
      self._writer.add_text(name, value, global_step=step)

  def write_histograms(self, step: int, arrays, num_buckets=None):
    for name, value in arrays.items():
      bins = (num_buckets or {}).get(name, 'tensorflow')
      self._writer.add_histogram(name, np.asarray(value), global_step=step, bins=bins)

  def write_hparams(self, hparams: Mapping[str, Any]):
    # The three hparams summaries go into this run's own event file (tensorboardX's
    # add_hparams would start a second run directory for them).
    for summary in self._summary.hparams(dict(hparams), {}):
      self._writer.file_writer.add_summary(summary)

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def write_videos(self, step, videos):
    del step, videos

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()


def create_writer(
  workdir: str | epath.Path, resume_step: int = 0, finished: bool = False
) -> metric_writers.MetricWriter:
  """Console on every process; TensorBoard events and metrics.jsonl on process 0 only.

  A run resumed from `resume_step` first drops the records it will write again (`finished`:
  it only evaluates its final step again)."""
  console = metric_writers.LoggingWriter()
  if jax.process_index() > 0:
    return console
  workdir = paths.resolve(workdir)
  truncate_jsonl(workdir / 'metrics.jsonl', resume_step, drop_eval_at_last=finished)
  events = TensorBoardWriter(str(workdir), purge_step=resume_step + 1 if resume_step else None)
  jsonl = JsonlWriter(workdir / 'metrics.jsonl')
  return metric_writers.MultiWriter([console, events, jsonl])
