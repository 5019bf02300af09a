"""A clu metric writer that appends scalars to a JSON-lines file.

TensorBoard event files need TensorFlow to read; `metrics.jsonl` lets sweeps and reports read
every run's curves with the standard library alone. Non-scalar summaries are not recorded.
"""

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from clu.metric_writers import interface


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
