"""Metric writers: TensorBoard events without TensorFlow, metrics.jsonl rows."""

import json

from tensorboard.backend.event_processing import event_accumulator

from resnet_jax import metric_logging


def test_events_and_jsonl_hold_the_written_scalars(tmp_path):
  writer = metric_logging.create_writer(str(tmp_path))
  writer.write_hparams({'model': 'cifar_resnet8', 'learning_rate': 0.1})
  for step, loss in [(1, 2.5), (2, 1.25)]:
    writer.write_scalars(step, {'train_loss': loss})
  writer.close()

  events = event_accumulator.EventAccumulator(str(tmp_path))
  events.Reload()
  assert [(e.step, e.value) for e in events.Scalars('train_loss')] == [(1, 2.5), (2, 1.25)]
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert rows == [{'step': 1, 'train_loss': 2.5}, {'step': 2, 'train_loss': 1.25}]


def test_progress_eta_counts_evaluation_and_says_seconds(caplog, monkeypatch):
  """400 steps; 10 took 9 s of training and 6 s of evaluation: 390 more take 585 s. clu's
  report said 'ETA: 6m' from the train steps alone (and '0m' for any run under a minute)."""
  clock = iter([0.0, 100.0, 106.0])  # Created at 0 s; evaluation from 100 s to 106 s.
  monkeypatch.setattr(metric_logging.time, 'monotonic', lambda: next(clock, 120.0))
  progress = metric_logging.ReportProgress(num_train_steps=400, every_steps=None, every_secs=10)
  progress(0, t=91.0)
  with progress.timed('eval', wait_jax_async_dispatch=False):
    pass
  assert progress.seconds('eval') == 6.0
  with caplog.at_level('INFO'):
    assert progress(10, t=106.0)
  assert 'ETA: 9m45s' in caplog.text and '(2m00s: 5.0% eval)' in caplog.text, caplog.text
