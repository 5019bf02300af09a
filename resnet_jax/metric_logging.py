"""Metric writers: clu's TensorBoard and console writers, plus a JSON-lines file.

TensorBoard event files need TensorFlow to read; `metrics.jsonl` lets sweeps and reports read
every run's curves with the standard library alone. Without TensorFlow installed (fake-data
runs on accelerator machines) only the console and JSON-lines writers are used.
"""

import importlib.util
import json
import os
import sys
import types
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging


def _tensorflow_installed() -> bool:
  try:
    return importlib.util.find_spec('tensorflow') is not None
  except ValueError:  # An entry of None in sys.modules: TensorFlow deliberately blocked.
    return False


if not _tensorflow_installed():
  # clu's metric_writers package imports its TensorBoard writer, and so TensorFlow, eagerly.
  # Stand in an empty module for it so that the console writer and periodic actions work.
  _stub = types.ModuleType('clu.metric_writers.summary_writer')
  _stub.SummaryWriter = None
  sys.modules['clu.metric_writers.summary_writer'] = _stub

from clu import metric_writers  # noqa: E402
from clu.metric_writers import interface  # noqa: E402
from clu.periodic_actions import ReportProgress  # noqa: E402, F401  (re-exported for train.py)


class JsonlWriter(interface.MetricWriter):
  """Writes one line per `write_scalars` call: {"step": ..., "name": value, ...}."""

  def __init__(self, path: str):
    self._file = open(path, 'a')  # noqa: SIM115  (closed by `close`)

  def write_scalars(self, step: int, scalars: Mapping[str, interface.Scalar]):
    record = {'step': int(step)} | {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._file.write(json.dumps(record) + '\n')

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


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard (if TensorFlow is installed) and console on process 0; console elsewhere."""
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(workdir, just_logging=True)
  if _tensorflow_installed():
    import tensorflow as tf

    tf.config.set_visible_devices([], 'GPU')  # The summary writer must not take GPU memory.
    main = metric_writers.create_default_writer(workdir)
  else:
    logging.warning('TensorFlow is not installed: no TensorBoard summaries, console only.')
    main = metric_writers.create_default_writer(workdir, just_logging=True)
  return metric_writers.MultiWriter([main, JsonlWriter(os.path.join(workdir, 'metrics.jsonl'))])
