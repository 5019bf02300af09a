"""Gradient accumulation (`config.grad_accum_steps`): the accumulated step against the step on
the whole batch."""

import functools
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from conftest import REPO
from resnet_jax import errors, grad_accum, optim, train
from resnet_jax.models import blocks


class NoBatchNorm(nn.Module):
  """Convolution, ReLU, pooling and a classifier: no layer mixes the images of a batch. Its
  'batch_stats' only count calls, so that it has the collection as every network of the zoo."""

  @nn.compact
  def __call__(self, x, train: bool):
    calls = self.variable('batch_stats', 'calls', jnp.zeros, (), jnp.float32)
    if train and not self.is_initializing():
      calls.value += 1
    x = nn.relu(nn.Conv(6, (3, 3))(x))
    return nn.Dense(10)(x.mean(axis=(1, 2)))


class TinyBatchNorm(nn.Module):
  """A convolution and the project's BatchNorm before the classifier: compiles in a moment."""

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(blocks.BatchNorm(use_running_average=not train)(nn.Conv(6, (3, 3))(x)))
    return nn.Dense(10)(x.mean(axis=(1, 2)))


def _config(optimizer: str) -> default.ml_collections.ConfigDict:
  config = default.get_config()
  config.optimizer, config.nesterov = optimizer, optimizer == 'sgd'
  return config


def _steps(model, config, accum, batches, rng=0):
  tx = optim.create_optimizer(config)
  variables = model.init(jax.random.key(rng), batches[0]['image'][:1], train=False)
  state = train.TrainState.create(
    apply_fn=model.apply, params=variables['params'], batch_stats=variables['batch_stats'], tx=tx
  )
  step = jax.jit(functools.partial(train.train_step, label_smoothing=0.1, grad_accum_steps=accum))
  for batch in batches:
    state, metrics = step(state, batch, jax.random.key(1), np.float32(0.05))
  return state, metrics


def _batches(n=2, size=8, side=6):
  rng = np.random.default_rng(0)
  return [
    {
      'image': rng.standard_normal((size, side, side, 3), dtype=np.float32),
      'label': rng.integers(0, 10, size).astype(np.int32),
    }
    for _ in range(n)
  ]


@pytest.mark.parametrize(('optimizer', 'accum'), [('sgd', 2), ('sgd', 4), ('adamw', 8)])
def test_without_batchnorm_equals_the_large_batch_step(optimizer, accum):
  batches = _batches()
  whole, whole_metrics = _steps(NoBatchNorm(), _config(optimizer), 1, batches)
  accumulated, metrics = _steps(NoBatchNorm(), _config(optimizer), accum, batches)
  assert int(accumulated.step) == 2  # optimizer steps, not micro-batches
  for a, b in zip(jax.tree.leaves(accumulated.params), jax.tree.leaves(whole.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(metrics['loss'], whole_metrics['loss'], rtol=1e-5)
  assert metrics['top1'] == whole_metrics['top1']
  # The statistics were updated once per micro-batch.
  assert float(accumulated.batch_stats['calls']) == 2 * accum


def test_batchnorm_statistics_are_per_micro_batch():
  """The accumulated loss is the mean of the losses of each micro-batch alone in training mode."""
  model = TinyBatchNorm()
  batch = _batches(1)[0]
  variables = model.init(jax.random.key(0), batch['image'][:1], train=False)
  state = train.TrainState.create(
    apply_fn=model.apply, tx=optim.create_optimizer(_config('sgd')), **variables
  )
  step = functools.partial(train.train_step, label_smoothing=0.0, grad_accum_steps=2)
  _, metrics = jax.jit(step)(state, batch, jax.random.key(1), np.float32(0.0))
  halves = []
  for half in (slice(0, 8, 2), slice(1, 8, 2)):  # `grad_accum.split`'s micro-batches
    logits, _ = model.apply(variables, batch['image'][half], train=True, mutable=['batch_stats'])
    halves.append(train.cross_entropy(logits, batch['label'][half], 0.0).mean())
  np.testing.assert_allclose(metrics['loss'], np.mean(halves), rtol=1e-5)
  whole, _ = model.apply(variables, batch['image'], train=True, mutable=['batch_stats'])
  assert not np.isclose(metrics['loss'], train.cross_entropy(whole, batch['label'], 0.0).mean())


def test_split_and_merge_keep_every_image_once():
  x = np.arange(24).reshape(12, 2)
  micro = grad_accum.split(jnp.asarray(x), 3)
  assert micro.shape == (3, 4, 2)
  np.testing.assert_array_equal(micro[1, :, 0], [2, 8, 14, 20])  # every third image from 1
  np.testing.assert_array_equal(grad_accum.merge(micro), x)


def test_micro_batches_that_do_not_divide_are_a_config_error():
  config = default.get_config()
  config.batch_size, config.grad_accum_steps = 12, 5
  with pytest.raises(errors.ConfigError, match='grad_accum_steps=5 does not split the 12 images'):
    grad_accum.check(config)
  config.grad_accum_steps, config.bn_group_size = 3, 3  # micro-batches of 4: not groups of 3
  with pytest.raises(errors.ConfigError, match='whole BatchNorm groups of 3'):
    grad_accum.check(config)


@pytest.mark.slow
def test_eight_devices_accumulate_as_one_device():
  """Micro-batches take images from every device's shard: the same step on 8 devices as on 1,
  BatchNorm included."""
  code = """
import jax, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from configs import quickstart
from resnet_jax import optim, train
config = quickstart.get_config()
config.grad_accum_steps = 2
rng = np.random.default_rng(0)
batch = {'image': rng.standard_normal((32, 8, 8, 1), dtype=np.float32),
         'label': rng.integers(0, 10, 32).astype(np.int32)}
results = []
for n in (1, 8):
  mesh = Mesh(np.array(jax.devices()[:n]), ('data',))
  model, tx = train.create_model(config), optim.create_optimizer(config)
  state = train.create_train_state(model, tx, jax.random.key(0), (1, 8, 8, 1),
                                   NamedSharding(mesh, P()))
  step = train.jit_train_step(config, mesh)
  state, metrics = step(state, jax.device_put(batch, NamedSharding(mesh, P('data'))),
                        jax.random.key(1), np.float32(0.1))
  results.append(jax.device_get((state.params, state.batch_stats, metrics)))
for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), strict=True):
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
print('OK')
"""
  env = os.environ | {'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  result = subprocess.run(
    [sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, env=env
  )
  assert result.returncode == 0 and 'OK' in result.stdout, result.stderr[-3000:]
