"""The train step, schedules, evaluation and the errors a user can hit."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest

from configs import default, resnet50
from conftest import REPO
from resnet_jax import data, evaluation, train


def test_step_schedule_boundaries_are_absolute_with_warmup():
  config = default.get_config()
  config.lr_decay_at = (30, 60)
  config.warmup = 10
  fn = train.create_learning_rate_fn(config, steps_per_epoch=1, num_train_steps=90)
  assert float(fn(0)) == 0.0
  assert float(fn(5)) == pytest.approx(0.05)
  assert float(fn(29)) == pytest.approx(0.1)
  assert float(fn(30)) == pytest.approx(0.01)
  assert float(fn(60)) == pytest.approx(0.001)


def test_imagenet_recipe_scales_lr_with_batch_and_decays_by_epoch():
  config = resnet50.get_config()
  config.batch_size = 1024
  fn = train.create_learning_rate_fn(config, steps_per_epoch=100, num_train_steps=9000)
  assert float(fn(0)) == pytest.approx(0.4)
  assert float(fn(2999)) == pytest.approx(0.4)
  assert float(fn(3000)) == pytest.approx(0.04)
  assert float(fn(8000)) == pytest.approx(0.0004)
  assert train.num_train_steps(config, steps_per_epoch=100) == 9000


def test_cosine_schedule_ends_at_zero():
  config = default.get_config()
  config.schedule = 'cosine'
  fn = train.create_learning_rate_fn(config, steps_per_epoch=1, num_train_steps=100)
  assert float(fn(0)) == pytest.approx(0.1)
  assert float(fn(50)) == pytest.approx(0.05)
  assert float(fn(100)) == pytest.approx(0.0, abs=1e-7)


def test_optimizer_matches_pytorch_sgd_with_weight_decay():
  """torch.optim.SGD: buf = m * buf + (g + wd * p); p -= lr * buf."""
  config = default.get_config()
  tx = train.create_optimizer(config, optax.constant_schedule(0.1))
  params = np.array([1.0, -2.0], np.float32)
  grads = [np.array([0.5, 0.25], np.float32), np.array([-1.0, 2.0], np.float32)]
  state = tx.init(params)
  p, buf = params.copy(), np.zeros(2, np.float32)
  for g in grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    buf = 0.9 * buf + (g + 1e-4 * p)
    p = p - 0.1 * buf
  np.testing.assert_allclose(params, p, rtol=1e-6)


def test_depth_override_changes_model_name():
  config = default.get_config()
  config.model, config.depth = 'cifar_resnet20', 110
  assert train.model_name(config) == 'cifar_resnet110'
  config.model = 'resnet'
  with pytest.raises(ValueError, match='ending in a depth'):
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
  with pytest.raises(train.NonFiniteLossError, match='last good checkpoint'):
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
  start_pass, num_steps = input_pipeline.eval_batches(builder, config, 64, data.eval_images(config))
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
  state = train.create_train_state(model, optax.sgd(0.1), jax.random.key(0), (1, 8, 8, 1), sharding)
  metrics = evaluation.evaluate(
    state,
    evaluation.jit_eval_step(config, mesh),
    data.EvalData(start_pass, num_steps),
    jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')),
  )
  assert metrics['count'] == 360
  assert 0.0 <= metrics['top1'] <= metrics['top5'] <= 1.0


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


_DATA_PARALLEL_CHECK = """
import jax, numpy as np, optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from configs import quickstart
from resnet_jax import train

assert jax.device_count() == 8
config = quickstart.get_config()
model = train.create_model(config)
tx = train.create_optimizer(config, optax.constant_schedule(0.1))
rng = np.random.default_rng(0)
batches = [
  {'image': rng.standard_normal((32, 8, 8, 1), dtype=np.float32),
   'label': rng.integers(0, 10, 32).astype(np.int32)} for _ in range(3)]

def run(devices):
  mesh = Mesh(np.array(devices), ('data',))
  repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  state = train.create_train_state(model, tx, jax.random.key(0), (1, 8, 8, 1), repl)
  step = train.jit_train_step(config, mesh)
  for b in batches:
    state, metrics = step(state, jax.device_put(b, data), jax.random.key(1))
  return jax.device_get((state.params, state.batch_stats, metrics['loss']))

one, eight = run(jax.devices()[:1]), run(jax.devices())
for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight)):
  np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
stats = jax.tree.leaves(eight[1])
assert any(np.abs(s).max() > 1e-3 for s in stats), 'BatchNorm statistics never moved'
print('EQUAL')
"""


@pytest.mark.slow
def test_eight_devices_equal_one_device_for_the_global_batch():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8')
  result = subprocess.run(
    [sys.executable, '-c', textwrap.dedent(_DATA_PARALLEL_CHECK)],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0 and 'EQUAL' in result.stdout, result.stderr[-3000:]


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
