"""The degradation sweep compares like with like: plain and option-A residual networks of equal
depth and equal parameters, one recipe, the same seeds. Expansion only, no training."""

import os

import jax
import jax.numpy as jnp
import pytest
from flax.traverse_util import flatten_dict

from resnet_jax import models, sweep, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPTHS = (8, 20, 32)
SEEDS = (0, 1, 2)


@pytest.fixture
def points(monkeypatch, tmp_path):
  monkeypatch.chdir(REPO)
  return sweep.expand('experiments/degradation_digits.py', str(tmp_path))


def num_params(config) -> int:
  """Parameters of the point's network on the digits' 8x8x1 images, from shapes alone."""
  model = train.create_model(config)
  image = jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 1), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), image)
  return sum(leaf.size for leaf in flatten_dict(variables['params']).values())


def test_points_are_plain_and_residual_at_each_depth_and_seed(points):
  expected = {
    (f'cifar_{family}{depth}', seed)
    for depth in DEPTHS
    for family in ('plain', 'resnet')
    for seed in SEEDS
  }
  assert {(p.config.model, p.config.seed) for p in points} == expected
  assert len(points) == len(expected)


def test_every_point_has_the_same_recipe(points):
  """Only the network and the seed differ: the training budget is part of the comparison."""

  def recipe(point):
    config = point.config.to_dict()
    del config['model'], config['seed']
    return config

  assert all(recipe(p) == recipe(points[0]) for p in points)
  config = points[0].config
  assert config.dataset == 'digits'
  assert (config.num_train_steps, config.log_every_steps) == (250, 25)
  assert not config.model_kwargs  # The registry's own shortcuts: 'none' and He 2015's A.


def test_plain_and_option_a_nets_have_the_same_parameters(points):
  """Option A's shortcuts are identities, zero-padded where the width doubles: no parameters,
  so a plain net and its ResNet differ only in the shortcuts, as in He 2015's Fig. 6."""
  configs = {p.config.model: p.config for p in points if p.config.seed == 0}
  for depth in DEPTHS:
    plain, resnet = configs[f'cifar_plain{depth}'], configs[f'cifar_resnet{depth}']
    assert models.FAMILIES['cifar_plain'].defaults['shortcut'] == 'none'
    assert models.FAMILIES['cifar_resnet'].defaults['shortcut'] == 'A'
    assert num_params(plain) == num_params(resnet)
  assert num_params(configs['cifar_plain8']) < num_params(configs['cifar_plain32'])
