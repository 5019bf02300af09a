"""The README's first command: the quickstart reaches its promised accuracy."""

import pytest

from configs import quickstart
from resnet_jax import train


@pytest.mark.slow
def test_quickstart_reaches_98_5_percent(data_dir, tmp_path):
  config = quickstart.get_config()
  config.data_dir = data_dir
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['step'] == config.num_train_steps
  assert summary['eval']['count'] == 360
  assert summary['eval']['top1'] >= 0.985, summary['eval']
