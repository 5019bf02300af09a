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
