"""The README's first command: the quickstart reaches its promised accuracy."""

import re

import pytest

from configs import quickstart
from conftest import run_main
from resnet_jax import train


@pytest.mark.slow
def test_quickstart_reaches_98_5_percent(data_dir, tmp_path):
  config = quickstart.get_config()
  config.data_dir = data_dir
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['step'] == config.num_train_steps
  assert summary['eval']['count'] == 360
  assert summary['eval']['top1'] >= 0.985, summary['eval']


@pytest.mark.slow
def test_a_logged_first_run_has_no_progress_bars_or_tensorflow_info(tmp_path):
  """The quickstart in a fresh data directory, its output going to a file: lines only."""
  data_dir = tmp_path / 'tfds'
  overrides = [f'--config.data_dir={data_dir}', '--config.num_train_steps=2']
  result = run_main(tmp_path / 'run', *overrides, '--config.eval_every_steps=0', fork=False)
  assert (data_dir / 'digits').is_dir()  # Prepared by this run.
  assert '\r' not in result.stderr and '\x1b[' not in result.stderr, 'a progress bar'
  tensorflow_info = [
    line
    for line in result.stderr.splitlines()
    if re.match(r'I\d{4} .*\.cc:\d+\]', line) and 'oneDNN custom operations' not in line
  ]
  assert not tensorflow_info
