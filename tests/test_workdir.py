"""The workdir's guards, in-process: lock, recorded config, ranges, dataset metadata, metrics."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from etils import epath

from configs import quickstart
from resnet_jax import errors, metric_logging, train, workdir


def test_a_second_lock_on_a_held_workdir_names_the_holder(tmp_path):
  path = epath.Path(tmp_path)
  with workdir.lock(path):
    with pytest.raises(errors.WorkdirError, match=rf'process {os.getpid()} on host'):
      with workdir.lock(path):
        pass
  with workdir.lock(path):  # Released at the end of the first run.
    pass


@pytest.mark.parametrize('how', ['deleted', 'replaced'])
def test_a_held_lock_holds_when_its_file_is_deleted_or_replaced(tmp_path, how):
  path = epath.Path(tmp_path)
  with workdir.lock(path):
    lock_file = tmp_path / workdir.LOCK_FILE
    if how == 'deleted':
      lock_file.unlink()
    else:  # A new file in its place, as an editor or `cp` would leave it.
      (tmp_path / 'new').write_text(json.dumps({'host': 'gone', 'pid': 1, 'started': 'then'}))
      os.replace(tmp_path / 'new', lock_file)
    with pytest.raises(errors.WorkdirError, match='in use by another run'):
      with workdir.lock(path):
        pass


def test_an_error_leaves_the_lock_free_and_unnamed(tmp_path, caplog):
  path = epath.Path(tmp_path)
  with pytest.raises(errors.DataError):
    with workdir.lock(path):
      raise errors.DataError('bad data')
  assert (tmp_path / workdir.LOCK_FILE).read_text() == ''
  with caplog.at_level('WARNING'):
    with workdir.lock(path):
      pass
  assert 'Taking over' not in caplog.text


def test_a_bucket_lock_taken_by_another_run_stops_its_holder(tmp_path, monkeypatch):
  """The lock of object stores, exercised on a local path through the same code."""
  monkeypatch.setattr(workdir, 'HEARTBEAT_S', 0.01)
  lock_file = tmp_path / workdir.LOCK_FILE
  other = {'host': 'other', 'pid': 2, 'started': 'now', 'heartbeat': 1e12}
  with workdir._bucket_lock(epath.Path(tmp_path)) as held:  # noqa: SLF001
    held.check()
    lock_file.write_text(json.dumps(other))
    deadline = time.time() + 10
    while held.taken_by is None and time.time() < deadline:
      time.sleep(0.01)
    with pytest.raises(errors.WorkdirError, match='taken by another run.*process 2 on host other'):
      held.check()
  assert json.loads(lock_file.read_text()) == other  # The new holder's file stays.


def test_the_full_disk_message_counts_its_checkpoints(tmp_path):
  from resnet_jax import diagnosis

  (tmp_path / 'checkpoints' / '10').mkdir(parents=True)
  message = str(diagnosis.disk_full_error(epath.Path(tmp_path)))  # noqa: SLF001
  assert 'the checkpoint of step 10 is intact' in message
  (tmp_path / 'checkpoints' / '20').mkdir()
  message = str(diagnosis.disk_full_error(epath.Path(tmp_path)))  # noqa: SLF001
  assert 'the checkpoints of steps 10, 20 are intact' in message
  shutil.rmtree(tmp_path / 'checkpoints')
  assert 'no checkpoint is intact' in str(diagnosis.disk_full_error(epath.Path(tmp_path)))  # noqa: SLF001


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
  dead = subprocess.run(
    [sys.executable, '-c', 'import os; print(os.getpid())'],
    text=True,
    capture_output=True,
    check=True,
  )
  holder = {'host': 'elsewhere', 'pid': int(dead.stdout), 'started': 'yesterday'}
  (tmp_path / workdir.LOCK_FILE).write_text(json.dumps(holder))
  with caplog.at_level('WARNING'):
    with workdir.lock(epath.Path(tmp_path)):
      recorded = json.loads((tmp_path / workdir.LOCK_FILE).read_text())
  assert recorded['pid'] == os.getpid()
  assert f'process {holder["pid"]} on host elsewhere' in caplog.text


def test_a_bucket_lock_refuses_a_fresh_holder_and_takes_over_a_stale_one(tmp_path, monkeypatch):
  """The lock of object stores, exercised on a local path through the same code."""
  path = epath.Path(tmp_path)
  with workdir._bucket_lock(path):  # noqa: SLF001
    with pytest.raises(errors.WorkdirError, match='in use by another run'):
      with workdir._bucket_lock(path):  # noqa: SLF001
        pass
  stale = {'host': 'h', 'pid': 1, 'started': 's', 'heartbeat': 0.0}
  (tmp_path / workdir.LOCK_FILE).write_text(json.dumps(stale))
  with workdir._bucket_lock(path):  # noqa: SLF001
    assert json.loads((tmp_path / workdir.LOCK_FILE).read_text())['pid'] == os.getpid()
  assert not (tmp_path / workdir.LOCK_FILE).exists()


def test_resuming_with_a_changed_shape_field_lists_every_difference(tmp_path):
  path = epath.Path(tmp_path)
  config = quickstart.get_config()
  workdir.check_config(path, config, resuming=False)
  changed = quickstart.get_config()
  changed.num_classes = 5
  changed.model_kwargs.shortcut = 'B'
  changed.num_train_steps = 99  # run length may change
  changed.eval_protocol = '10crop'  # so may evaluation
  with pytest.raises(errors.WorkdirError) as error:
    workdir.check_config(path, changed, resuming=True)
  message = str(error.value)
  assert 'num_classes: 10 -> 5' in message
  assert "model_kwargs.shortcut: '(absent)' -> 'B'" in message
  assert 'num_train_steps' not in message and 'eval_protocol' not in message
  # Lengthening the run alone resumes.
  longer = quickstart.get_config()
  longer.num_train_steps = 5000
  workdir.check_config(path, longer, resuming=True)


def test_a_run_recorded_before_a_field_existed_resumes_at_its_default(tmp_path):
  path = epath.Path(tmp_path)
  workdir.check_config(path, quickstart.get_config(), resuming=False)
  recorded = json.loads((tmp_path / workdir.CONFIG_FILE).read_text())
  del recorded['crop_sampler'], recorded['bn_group_size']  # as written before they existed
  (tmp_path / workdir.CONFIG_FILE).write_text(json.dumps(recorded))
  workdir.check_config(path, quickstart.get_config(), resuming=True)  # defaults: no change
  grouped = quickstart.get_config()
  grouped.bn_group_size = 16
  with pytest.raises(errors.WorkdirError, match=r"bn_group_size: '\(absent\)' -> 16"):
    workdir.check_config(path, grouped, resuming=True)


def test_a_fresh_start_replaces_the_config_of_a_run_that_never_checkpointed(tmp_path):
  path = epath.Path(tmp_path)
  first = quickstart.get_config()
  first.num_classes = 5
  workdir.check_config(path, first, resuming=False)
  workdir.check_config(path, quickstart.get_config(), resuming=False)
  assert json.loads((tmp_path / workdir.CONFIG_FILE).read_text())['num_classes'] == 10


@pytest.mark.parametrize(
  'wrong, messages',
  [
    ({'image_size': 0, 'prefetch': -1}, ('image_size=0 must be at least 1', 'prefetch=-1 must')),
    (
      {'learning_rate': -0.1, 'momentum': 1.5},
      ('learning_rate=-0.1 must be at least 0', 'momentum=1.5 must be in [0, 1]'),
    ),
    ({'backbone_lr_scale': -1}, ('backbone_lr_scale=-1.0 must be at least 0',)),
    ({'log_every_steps': 0}, ('log_every_steps=0 must be at least 1',)),
    ({'optimizer': 'adam'}, ("config.optimizer='adam' is not one of 'sgd'",)),
    ({'dtype': 'float16'}, ("config.dtype='float16' is not one of",)),
    ({'crop_sampler': 'timm'}, ("config.crop_sampler='timm' is not one of",)),
  ],
)
def test_out_of_range_fields_are_named_together(wrong, messages):
  """Each module checks the fields it owns, every wrong one of them in one message."""
  config = quickstart.get_config()
  config.update(wrong)
  with pytest.raises(errors.ConfigError) as error:
    train.check_config(config)
  for text in messages:
    assert text in str(error.value)
  train.check_config(quickstart.get_config())


def test_num_classes_and_image_size_must_match_the_dataset(data_dir):
  from resnet_jax import input_pipeline

  config = quickstart.get_config()
  config.data_dir = data_dir
  config.num_classes = 5
  with pytest.raises(errors.DataError, match='has 10 classes.*--config.num_classes=10'):
    input_pipeline.get_builder(config)
  config.num_classes, config.image_size = 10, 32
  with pytest.raises(errors.DataError, match='images are 8x8.*--config.image_size=8'):
    input_pipeline.get_builder(config)


def test_metrics_past_the_restored_step_are_dropped(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  rows = [
    {'step': 10, 'train_loss': 1.0},
    {'step': 20, 'train_loss': 0.5},
    {'step': 20, 'eval_loss': 0.6},
    {'step': 30, 'train_loss': 0.4},
  ]
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows) + '{"step": 40, "tra')
  metric_logging.truncate_jsonl(path, 20, drop_eval_at_last=False)
  assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:3]
  metric_logging.truncate_jsonl(path, 20, drop_eval_at_last=True)
  assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:2]


def test_every_jsonl_record_is_on_disk_when_written(tmp_path):
  writer = metric_logging.JsonlWriter(tmp_path / 'metrics.jsonl')
  writer.write_scalars(5, {'train_loss': 2.0})
  assert json.loads((tmp_path / 'metrics.jsonl').read_text()) == {'step': 5, 'train_loss': 2.0}
  writer.close()


def test_wall_time_accumulates_over_restarts(tmp_path):
  path = epath.Path(tmp_path)
  first, restarts = workdir.WallClock(path, write=True).record()
  assert restarts == 0
  second, restarts = workdir.WallClock(path, write=True).record()
  assert restarts == 1 and second >= first


def test_an_unwritable_workdir_is_reported_by_path(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  with pytest.raises(errors.WorkdirError, match=r'Cannot use --workdir=.*a_file/run: not a dir'):
    workdir.create(epath.Path(blocker / 'run'))
