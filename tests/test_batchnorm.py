"""BatchNorm as PyTorch trains it: statistics per group of images, and the running variance
updated with the unbiased batch variance; checked against NumPy computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import (
  cifar10_iresnet,
  cifar10_resnet20,
  cifar_he2016,
  default,
  imagenet_he2015,
  iresnet50,
  quickstart,
  resnet50,
  resnet50_b4096,
  resnet50_lars_b32k,
)
from resnet_jax import errors, train
from resnet_jax.models import blocks, create_model

MOMENTUM = 0.9  # weight of the old running statistics (PyTorch's momentum 0.1)


def _variables(features: int, rng: np.random.Generator) -> dict:
  return {
    'params': {
      'scale': rng.uniform(-0.5, 1.5, features).astype(np.float32),
      'bias': rng.normal(0, 0.2, features).astype(np.float32),
    },
    'batch_stats': {
      'mean': rng.normal(0, 1, features).astype(np.float32),
      'var': rng.uniform(0.5, 2, features).astype(np.float32),
    },
  }


def _reference(x: np.ndarray, variables: dict, group_size: int) -> tuple[np.ndarray, dict]:
  """Training-mode output and new running statistics, one group at a time, in float64."""
  x = x.astype(np.float64)
  scale, bias = variables['params']['scale'], variables['params']['bias']
  group_size = group_size or len(x)
  outputs, means, unbiased = [], [], []
  for start in range(0, len(x), group_size):
    group = x[start : start + group_size]
    mean, var = group.mean(axis=(0, 1, 2)), group.var(axis=(0, 1, 2))
    outputs.append((group - mean) / np.sqrt(var + 1e-5) * scale + bias)
    n = group.size // x.shape[-1]
    means.append(mean)
    unbiased.append(var * n / (n - 1))
  old = variables['batch_stats']
  stats = {
    'mean': MOMENTUM * old['mean'] + (1 - MOMENTUM) * np.mean(means, axis=0),
    'var': MOMENTUM * old['var'] + (1 - MOMENTUM) * np.mean(unbiased, axis=0),
  }
  return np.concatenate(outputs), stats


@pytest.mark.parametrize('group_size', [0, 1, 3, 6])
def test_training_matches_per_group_reference(group_size):
  rng = np.random.default_rng(group_size)
  x = (rng.standard_normal((6, 3, 2, 5)) * 2 + 1).astype(np.float32)
  variables = _variables(5, rng)
  norm = blocks.batch_norm(train=True, dtype=jnp.float32, group_size=group_size)()
  y, state = jax.jit(lambda v, x: norm.apply(v, x, mutable=['batch_stats']))(variables, x)
  expected_y, expected_stats = _reference(x, variables, group_size)
  np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)
  for name in ('mean', 'var'):
    np.testing.assert_allclose(state['batch_stats'][name], expected_stats[name], rtol=1e-6)


def test_running_variance_update_is_unbiased():
  """Two images of 2x2, one channel: n = 8 values, so the batch variance enters the running one
  multiplied by 8/7 (PyTorch's update); the biased update would give 1.31 + 0.1 * 5.25."""
  x = np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1)  # mean 3.5, biased variance 5.25
  variables = {
    'params': {'scale': np.ones(1, np.float32), 'bias': np.zeros(1, np.float32)},
    'batch_stats': {'mean': np.zeros(1, np.float32), 'var': np.full(1, 1.5, np.float32)},
  }
  norm = blocks.batch_norm(train=True, dtype=jnp.float32)()
  _, state = norm.apply(variables, x, mutable=['batch_stats'])
  np.testing.assert_allclose(state['batch_stats']['mean'], [0.1 * 3.5], rtol=1e-6)
  np.testing.assert_allclose(state['batch_stats']['var'], [0.9 * 1.5 + 0.1 * 6.0], rtol=1e-6)


def test_evaluation_uses_the_running_statistics():
  rng = np.random.default_rng(7)
  x = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
  variables = _variables(2, rng)
  y = blocks.batch_norm(train=False, dtype=jnp.float32, group_size=2)().apply(variables, x)
  stats, params = variables['batch_stats'], variables['params']
  expected = (x - stats['mean']) / np.sqrt(stats['var'] + 1e-5) * params['scale'] + params['bias']
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_network_groups_equal_separate_batches():
  """A network with bn_group_size=4 on 8 images computes what the network without groups
  computes on each half (the stacked blocks' BatchNorms included), and its running statistics
  are the mean of the two halves'."""
  grouped = create_model('cifar_resnet8', bn_group_size=4)
  whole = create_model('cifar_resnet8')
  x = np.random.default_rng(0).standard_normal((8, 8, 8, 3)).astype(np.float32)
  variables = whole.init(jax.random.key(0), x[:1], train=False)

  def train_step(model, x):
    return model.apply(variables, x, train=True, mutable=['batch_stats'])

  logits, state = jax.jit(lambda x: train_step(grouped, x))(x)
  halves = [jax.jit(lambda x: train_step(whole, x))(h) for h in (x[:4], x[4:])]
  np.testing.assert_allclose(logits, np.concatenate([h[0] for h in halves]), rtol=1e-5, atol=1e-5)
  mean_of_halves = jax.tree.map(lambda a, b: (a + b) / 2, halves[0][1], halves[1][1])
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(mean_of_halves), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_group_that_does_not_divide_a_device_share_names_the_numbers(monkeypatch):
  monkeypatch.setattr(jax, 'device_count', lambda: 8)
  config = default.get_config()
  config.batch_size, config.bn_group_size = 128, 32
  with pytest.raises(errors.ConfigError, match=r'bn_group_size=32 does not divide the 16 images'):
    train.check_bn_group_size(config)
  config.bn_group_size = 8  # two groups per device
  train.check_bn_group_size(config)


@pytest.mark.parametrize(
  'module, group_size',
  [
    (cifar10_resnet20, 64),  # He 2015, Sec. 4.2: 128 images on two GPUs
    (cifar_he2016, 64),  # He 2016, Appendix: "128 on 2 GPUs (64 each)"
    (cifar10_iresnet, 64),  # He 2015's CIFAR recipe (no official CIFAR iResNet script)
    (resnet50, 32),  # official iResNet script: 256 over 8 GPUs' DistributedDataParallel
    (iresnet50, 32),
    (imagenet_he2015, 32),  # He 2015's ImageNet models: 256 on 8 GPUs, 32 per GPU
    (resnet50_b4096, 32),  # Goyal et al. 2017: 32 images per worker
    (resnet50_lars_b32k, 32),  # MLPerf v0.6: 32768 over 1024 TPU cores, local statistics
    (quickstart, 0),  # not a paper recipe: the global batch
  ],
)
def test_configs_set_their_sources_group_size(module, group_size):
  config = module.get_config()
  assert config.bn_group_size == group_size
  assert not group_size or config.batch_size % group_size == 0
