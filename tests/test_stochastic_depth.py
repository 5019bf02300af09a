"""Stochastic depth (`config.stochastic_depth_rate`, Huang et al. 2016) in every block family."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_models import SMALL_NETWORKS, images, small_network

from configs import default
from resnet_jax import errors, models, train
from resnet_jax.models.blocks import ResidualBlock


def test_rates_rise_linearly_with_the_block_index():
  """p_l = l / L * p_L over the network's L blocks, across stages; none when off."""
  model = models.create_model('cifar_resnet20', stochastic_depth_rate=0.45)  # 3 stages of 3
  rates = model.drop_rates()
  assert [len(r) for r in rates] == [3, 3, 3]
  np.testing.assert_allclose(sum(rates, ()), [0.05 * i for i in range(1, 10)])
  assert models.create_model('cifar_resnet20').drop_rates() == [(), (), ()]


class Branch(ResidualBlock):
  """A block whose branch is its input, to look at `drop_path` alone."""

  @nn.compact
  def __call__(self, y, rate):
    return self.drop_path(y, rate)


@pytest.mark.parametrize('traced', [False, True])
def test_branch_keeps_its_expected_value_and_drops_whole_images(traced):
  block = Branch(conv=None, norm=None, act=None, features=3, train=True)
  y = jnp.ones((20_000, 2, 2, 3))
  rate = 0.3

  def apply(rate):
    return block.apply({}, y, rate, rngs={'dropout': jax.random.key(0)})

  out = np.asarray(jax.jit(apply)(jnp.float32(rate)) if traced else apply(rate))
  per_image = out.reshape(len(out), -1)
  assert np.all(per_image == per_image[:, :1])  # an image's branch is kept or dropped whole
  np.testing.assert_allclose(np.unique(per_image), [0, 1 / (1 - rate)], rtol=1e-6)
  kept = np.mean(per_image[:, 0] > 0)
  assert abs(kept - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / len(out))
  assert abs(out.mean() - 1) < 0.02
  evaluated = Branch(conv=None, norm=None, act=None, features=3, train=False)
  np.testing.assert_array_equal(evaluated.apply({}, y, rate), y)


# Post-activation (original, He 2016's other orderings and shortcut modulations), pre-activation,
# bottlenecks (grouped), one-layer units and ResStage/iResNet start, middle and end blocks.
FAMILIES = {
  **{kind: kind for kind in SMALL_NETWORKS},
  'bn_after_addition': dict(activation='bn_after_addition'),
  'relu_before_addition': dict(activation='relu_before_addition'),
  'relu_preactivation': dict(activation='relu_preactivation'),
  'exclusive_gating': dict(modulation='exclusive_gating'),
  'one_layer': dict(block='one_layer', depth=5),
}


def _network(family, rate):
  options = FAMILIES[family]
  if isinstance(options, str):
    return small_network(options, stochastic_depth_rate=rate)
  options = dict(num_classes=5, base_width=4, stochastic_depth_rate=rate) | options
  return models.create_model('cifar_resnet8', **options)


# The fast tier runs one CIFAR layout per block kind; the full suite every family.
FAST_FAMILIES = {'cifar_resnet_A', 'cifar_preact_resnet', 'cifar_iresnet'}


@pytest.mark.parametrize(
  'family',
  [f if f in FAST_FAMILIES else pytest.param(f, marks=pytest.mark.slow) for f in sorted(FAMILIES)],
)
def test_every_family_drops_in_training_and_is_the_identity_at_evaluation(family):
  x = images(batch=8, size=16)
  plain, dropped = _network(family, 0.0), _network(family, 0.8)
  variables = jax.jit(lambda x: plain.init(jax.random.key(0, impl='rbg'), x, train=False))(x)

  def both(model, train):
    return jax.jit(
      lambda v, x: model.apply(
        v, x, train=train, mutable=['batch_stats'], rngs={'dropout': jax.random.key(1)}
      )[0]
    )(variables, x)

  np.testing.assert_array_equal(both(dropped, False), both(plain, False))
  assert not np.allclose(both(dropped, True), both(plain, True), atol=1e-4)


@pytest.mark.slow
def test_scanned_blocks_draw_as_unrolled_ones():
  """A stacked run scans over its blocks' rates: looped (unroll=1), unrolled and recomputed
  (remat) it gives the same numbers, here iResNet's run of three middle blocks."""
  x = images()
  model = small_network('iresnet', stochastic_depth_rate=0.7)
  variables = model.init(jax.random.key(0), x, train=False)

  def train_logits(**options):
    net = small_network('iresnet', stochastic_depth_rate=0.7, **options)
    return jax.jit(
      lambda v: net.apply(
        v, x, train=True, mutable=['batch_stats'], rngs={'dropout': jax.random.key(2)}
      )[0]
    )(variables)

  reference = train_logits(unroll=1)
  for options in (dict(unroll=True), dict(unroll=2, remat=True)):
    np.testing.assert_allclose(train_logits(**options), reference, rtol=1e-5, atol=1e-6)


def test_invalid_rates_are_config_errors():
  with pytest.raises(errors.ConfigError, match=r'stochastic_depth_rate=1.0 must be in \[0, 1\)'):
    models.create_model('cifar_resnet20', stochastic_depth_rate=1.0)
  config = default.get_config()
  config.stochastic_depth_rate = -0.1
  with pytest.raises(errors.ConfigError, match='stochastic_depth_rate=-0.1 must be in'):
    train.check_config(config)
  plain = models.create_model('cifar_plain20', stochastic_depth_rate=0.2)
  with pytest.raises(errors.ConfigError, match='plain networks'):
    jax.eval_shape(
      lambda x: plain.init(
        {'params': jax.random.key(0), 'dropout': jax.random.key(1)}, x, train=True
      ),
      jnp.zeros((2, 8, 8, 3)),
    )
