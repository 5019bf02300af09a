"""The train step, schedules, evaluation and the errors a user can hit."""

import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest

from configs import default, resnet50
from conftest import REPO
from resnet_jax import data, datasets, diagnosis, evaluation, finetune, optim, train


def test_depth_override_changes_model_name():
  config = default.get_config()
  config.model, config.depth = 'cifar_resnet20', 110
  assert train.model_name(config) == 'cifar_resnet110'
  config.model = 'resnet'
  with pytest.raises(ValueError, match="Unknown model 'resnet'"):
    train.model_name(config)


def test_unknown_model_lists_valid_names():
  config = default.get_config()
  config.model = 'wide_resnet50'
  with pytest.raises(ValueError, match='cifar_resnet20.*iresnet50'):
    train.create_model(config)
  config.model = 'resnet51'
  with pytest.raises(ValueError, match='valid depths: 18, 34, 50'):
    train.create_model(config)


def test_indivisible_batch_names_the_numbers(monkeypatch):
  monkeypatch.setattr(jax, 'device_count', lambda: 8)
  with pytest.raises(
    ValueError, match=r'batch_size=100 does not divide by the 8 devices.*96 or 104'
  ):
    train.check_batch_size(100, 'batch_size')


def test_unprepared_imagenet_says_how_to_prepare(tmp_path):
  from resnet_jax import input_pipeline

  config = resnet50.get_config()
  config.data_dir = str(tmp_path)
  with pytest.raises(input_pipeline.DatasetNotPreparedError, match='manual download') as error:
    input_pipeline.get_builder(config)
  assert str(tmp_path) in str(error.value)
  assert 'tfds build imagenet2012' in str(error.value)


@pytest.mark.slow
def test_main_reports_unprepared_dataset_and_exits_nonzero(tmp_path):
  from conftest import run_main

  result = run_main(
    tmp_path / 'run',
    f'--config.data_dir={tmp_path}',
    config='configs/iresnet50.py',
    check=False,
  )
  assert result.returncode == 1
  assert 'error: Dataset' in result.stderr and 'manual download' in result.stderr


@pytest.mark.slow
def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(digits_config, tmp_path):
  import orbax.checkpoint as ocp

  config = digits_config
  config.schedule = 'constant'
  config.learning_rate = 1e4
  config.weight_decay = 0.0
  config.checkpoint_every_steps = 1
  config.num_train_steps = 50
  with pytest.raises(diagnosis.NonFiniteLossError, match='last good checkpoint'):
    train.train_and_evaluate(config, str(tmp_path))
  manager = ocp.CheckpointManager(tmp_path / 'checkpoints')
  assert manager.latest_step() is not None and manager.latest_step() < 50
  for step in manager.all_steps():
    tree = manager.restore(step, args=ocp.args.StandardRestore())
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree['params']))


def test_eval_counts_every_example_once(digits_config):
  """360 test digits in batches of 64: six batches, the last one padded and masked."""
  from resnet_jax import input_pipeline

  config = digits_config
  config.eval_batch_size = 64
  builder = input_pipeline.get_builder(config)
  start_pass, num_steps = input_pipeline.eval_batches(
    builder, config, 64, datasets.eval_images(config)
  )
  batches = list(start_pass())
  assert num_steps == len(batches) == 6
  masks = np.concatenate([b['mask'] for b in batches])
  labels = np.concatenate([b['label'] for b in batches])[masks == 1]
  assert masks.sum() == 360 and np.all(masks[:360] == 1) and np.all(masks[360:] == 0)
  reference = input_pipeline.tfds.as_numpy(builder.as_dataset(split='test', batch_size=-1))
  np.testing.assert_array_equal(np.sort(labels), np.sort(reference['label']))

  model = train.create_model(config)
  mesh = train.make_mesh()
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = train.create_train_state(
    model, optax.sgd(0.1), jax.random.key(0, impl='rbg'), (1, 8, 8, 1), sharding
  )
  metrics = evaluation.evaluate(
    state,
    evaluation.jit_eval_step(config, mesh),
    data.EvalData(start_pass, num_steps),
    jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')),
  )
  assert metrics['count'] == 360
  assert 0.0 <= metrics['top1'] <= metrics['top5'] <= 1.0


def test_pretrained_weights_of_another_shape_are_named(tmp_path):
  """A checkpoint of the same network for other input channels: the array and both shapes (another
  classifier size is fine-tuning, tested in test_finetune)."""
  import orbax.checkpoint as ocp

  from resnet_jax import errors, models

  def state_for(channels):
    model = models.create_model('cifar_resnet8', num_classes=10)
    replicated = jax.sharding.NamedSharding(train.make_mesh(), jax.sharding.PartitionSpec())
    return train.create_train_state(
      model, optax.sgd(0.1), jax.random.key(0, impl='rbg'), (1, 8, 8, channels), replicated
    )

  saved = state_for(1)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / 'ckpt', {'params': saved.params, 'batch_stats': saved.batch_stats})
  checkpointer.wait_until_finished()
  state = state_for(3)
  with pytest.raises(errors.ConfigError) as error:
    finetune.restore_pretrained(state, str(tmp_path / 'ckpt'))
  assert str(error.value) == (
    f"The checkpoint in '{tmp_path / 'ckpt'}' holds params/stem_conv/kernel of shape "
    '(3, 3, 1, 16), where the configured model has shape (3, 3, 3, 16): check config.num_classes, '
    'config.model and config.model_kwargs against the run or conversion that wrote it.'
  )
  restored = finetune.restore_pretrained(saved, str(tmp_path / 'ckpt'))
  for x, y in zip(jax.tree.leaves(restored.params), jax.tree.leaves(saved.params), strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_training_reduces_loss(digits_config, tmp_path):
  config = digits_config
  config.num_train_steps = 60
  config.log_every_steps = 20
  config.learning_rate = 0.05
  train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  losses = [r['train_loss'] for r in records if 'train_loss' in r]
  assert len(losses) == 3
  assert losses[-1] < 0.7 * losses[0]


@pytest.mark.slow
def test_eight_devices_equal_one_device_for_the_global_batch_and_for_groups(tmp_path):
  import eight_devices

  runs = eight_devices.run('train', tmp_path / 'runs.npz')
  for run in ('group0', 'group2'):
    names = sorted(k.split('/', 2)[2] for k in runs if k.startswith(f'{run}/1/'))
    assert len(names) > 20 and 'loss' in names, names
    for name in names:
      one, eight = runs[f'{run}/1/{name}'], runs[f'{run}/8/{name}']
      np.testing.assert_allclose(one, eight, rtol=2e-5, atol=2e-6, err_msg=f'{run}: {name}')
    stats = [runs[k] for k in runs if k.startswith(f'{run}/8/batch_stats/')]
    assert max(np.abs(s).max() for s in stats) > 1e-3, 'BatchNorm statistics never moved'
  # uint8 batches normalised on the devices train as the same batches normalised on the host,
  # on one device and on eight. (Rounded pixels make one and eight devices themselves differ
  # beyond the tolerance above, normalised on the host or not: kept out of that comparison.)
  for name in (k.split('/', 1)[1] for k in runs if k.startswith('uint8/')):
    np.testing.assert_allclose(runs[f'uint8/{name}'], runs[f'host_normalised/{name}'], rtol=1e-6)
  # Statistics over groups of 2 are another normalisation: the loss differs from the global one.
  assert abs(runs['group0/8/loss'] - runs['group2/8/loss']) > 1e-4, (
    runs['group0/8/loss'],
    runs['group2/8/loss'],
  )


@pytest.mark.slow
def test_fake_data_runs_without_tensorflow(tmp_path):
  """GPU/TPU benchmark machines often lack TensorFlow: fake data must not import it."""
  code = textwrap.dedent(f"""
    import sys
    sys.modules['tensorflow'] = None  # any import of TensorFlow now fails
    sys.modules['tensorflow_datasets'] = None
    from configs import quickstart
    from resnet_jax import train
    config = quickstart.get_config()
    config.dataset = 'fake'
    config.num_train_steps = 3
    config.eval_batch_size = 8
    config.batch_size = 8
    summary = train.train_and_evaluate(config, {str(tmp_path)!r})
    assert summary['step'] == 3 and summary['eval']['count'] == 8, summary
    print('OK')
  """)
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0 and 'OK' in result.stdout, result.stderr[-3000:]


def _lowered_train_step(config) -> str:
  """The train step's program text for the state and batch `train_and_evaluate` would pass."""
  mesh = train.make_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  model, tx = train.create_model(config), optim.create_optimizer(config)
  state = jax.eval_shape(
    lambda rng: train.create_train_state(model, tx, rng, (1, 8, 8, 3), replicated),
    jax.random.key(config.seed),
  )
  state = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, weak_type=x.weak_type, sharding=replicated),
    state,
  )
  batch = {
    'image': jax.ShapeDtypeStruct((8, 8, 8, 3), np.float32, sharding=data),
    'label': jax.ShapeDtypeStruct((8,), np.int32, sharding=data),
  }
  schedule = optim.create_learning_rate_fn(config, 100, config.num_train_steps)
  lr = optim.learning_rate_table(schedule, config.num_train_steps)[10]
  step = train.jit_train_step(config, mesh)
  return step.lower(state, batch, jax.random.key(config.seed + 1), lr).as_text()


def test_train_step_program_does_not_depend_on_run_length_or_seed():
  """So that the persistent compilation cache serves runs that differ only in length or seed."""
  config = default.get_config()
  config.model, config.dataset, config.image_size, config.batch_size = 'cifar_resnet8', 'fake', 8, 8
  config.schedule, config.warmup = 'cosine', 5  # constants that depend on num_train_steps
  other = config.copy_and_resolve_references()
  config.num_train_steps = 1_000
  other.num_train_steps, other.seed = 123, 7
  assert _lowered_train_step(config) == _lowered_train_step(other)
  other.label_smoothing = 0.1  # a change the program does depend on is seen
  assert _lowered_train_step(config) != _lowered_train_step(other)


@pytest.mark.slow
def test_logged_learning_rate_is_the_schedule_and_the_one_applied(tmp_path):
  import orbax.checkpoint as ocp

  from configs import quickstart

  config = quickstart.get_config()
  config.model, config.dataset, config.batch_size, config.eval_batch_size = (
    'cifar_resnet8',
    'fake',
    8,
    8,
  )
  config.num_train_steps, config.warmup, config.log_every_steps = 12, 4, 3
  config.checkpoint_every_steps = 12
  train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  logged = {r['step']: r['learning_rate'] for r in records if 'learning_rate' in r}
  schedule = optim.create_learning_rate_fn(config, 1_281_167 // 8, 12)
  assert sorted(logged) == [3, 6, 9, 12]
  for step, lr in logged.items():  # the rate of the update that produced `step`
    assert lr == pytest.approx(float(schedule(step - 1)), rel=1e-6)
  assert logged[3] == pytest.approx(0.1 * 2 / 4) and logged[12] > 0
  # Fake batches cost nothing: the run is not input-bound.
  waits = [r['input_wait_fraction'] for r in records if 'input_wait_fraction' in r]
  assert len(waits) == 4 and max(waits) < train.INPUT_BOUND_FRACTION, waits
  tree = ocp.CheckpointManager(tmp_path / 'checkpoints').restore(
    12, args=ocp.args.StandardRestore()
  )
  applied = tree['opt_state']['hyperparams']['learning_rate']
  assert float(applied) == pytest.approx(logged[12], rel=1e-6)


@pytest.mark.slow
def test_slow_input_is_logged_and_warned_about(tmp_path, monkeypatch, caplog):
  """A pipeline that takes 0.3 s per batch starves a step of milliseconds."""
  import time

  from configs import quickstart
  from resnet_jax import fake_data

  fast_batches = fake_data.train_batches

  def slow_batches(*args):
    for batch in fast_batches(*args):
      time.sleep(0.3)
      yield batch

  monkeypatch.setattr(fake_data, 'train_batches', slow_batches)
  config = quickstart.get_config()
  config.model, config.dataset, config.batch_size, config.eval_batch_size = (
    'cifar_resnet8',
    'fake',
    8,
    8,
  )
  config.num_train_steps, config.log_every_steps, config.prefetch = 7, 3, 1
  with caplog.at_level('WARNING'):
    train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  fractions = [r['input_wait_fraction'] for r in records if 'input_wait_fraction' in r]
  assert len(fractions) == 3 and all(f > 0.5 for f in fractions), fractions
  assert 'Input-bound' in caplog.text
