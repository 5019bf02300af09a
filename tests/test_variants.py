"""The papers' comparisons as options of the one network: He 2015's plain networks, He 2016's
shortcut variants (Table 1) and unit orderings (Fig. 4), Duta 2020's components on their own.
Each is checked against the paper's definition, and each trains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict
from jax import lax

from resnet_jax import summary
from resnet_jax.models import ACTIVATIONS, blocks, create_model


def num_params(name: str, **options) -> int:
  model = create_model(name, **options)
  size = 8 if name.startswith('cifar_') else 32
  variables = jax.eval_shape(
    lambda x: model.init(jax.random.key(0), x, train=False), jnp.zeros((1, size, size, 3))
  )
  return sum(x.size for x in jax.tree.leaves(variables['params']))


def shortcut_kinds(name: str, **options) -> list[str]:
  model = create_model(name, **options)
  return [
    run.block.keywords.get('shortcut_kind', 'identity') for s in model.stages for run in s.runs
  ]


def test_plain_networks_are_the_resnets_without_shortcuts():
  # He 2015: "the same number of parameters, depth, width, and computational cost" as the ResNet
  # with parameter-free (option A) shortcuts.
  assert num_params('plain34') == num_params('resnet34', shortcut='A') == 21_623_848
  assert num_params('cifar_plain56') == num_params('cifar_resnet56') == 853_018
  assert set(shortcut_kinds('plain18')) == set(shortcut_kinds('cifar_plain110')) == {'none'}
  plain, resnet = create_model('cifar_plain20'), create_model('cifar_resnet20')
  assert summary.count_macs(plain, 32) == summary.count_macs(resnet, 32)


# A basic unit of 4 channels, evaluated with running statistics 0 and 1.
FEATURES = 4


def unit(block_cls, **fields):
  conv = blocks.Conv
  norm = blocks.batch_norm(train=False, dtype=jnp.float32)
  return block_cls(conv=conv, norm=norm, act=jax.nn.relu, features=FEATURES, **fields)


def random_params(module, x, seed=1):
  """Variables of `module` with every parameter random (BN scales and biases too)."""
  variables = module.init(jax.random.key(0), x)
  flat = flatten_dict(variables['params'])
  keys = jax.random.split(jax.random.key(seed), len(flat))
  flat = {
    k: jax.random.normal(key, v.shape) * 0.5 for key, (k, v) in zip(keys, flat.items(), strict=True)
  }
  return {**variables, 'params': unflatten_dict(flat)}


def reference_ops(params):
  """conv(name, y), bn(name, y) of the paper's formulas, from lax and the BN definition."""

  def conv(name, y):
    kernel = params[name]['kernel']
    pad = kernel.shape[0] // 2
    return lax.conv_general_dilated(
      y, kernel, (1, 1), ((pad, pad),) * 2, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )

  def bn(name, y):  # running mean 0, variance 1
    return y / np.sqrt(1 + 1e-5) * params[name]['scale'] + params[name]['bias']

  return conv, bn


# He 2016 Fig. 4, for a unit with input x: the unit's output.
def fig4_reference(activation, params, x):
  conv, bn = reference_ops(params)
  relu = jax.nn.relu
  if activation == 'original':
    return relu(bn('bn2', conv('conv2', relu(bn('bn1', conv('conv1', x))))) + x)
  if activation == 'bn_after_addition':
    return relu(bn('bn2', conv('conv2', relu(bn('bn1', conv('conv1', x)))) + x))
  if activation == 'relu_before_addition':
    return relu(bn('bn2', conv('conv2', relu(bn('bn1', conv('conv1', x)))))) + x
  if activation == 'relu_preactivation':
    return bn('bn2', conv('conv2', relu(bn('bn1', conv('conv1', relu(x)))))) + x
  assert activation == 'full_preactivation'
  return conv('conv2', relu(bn('bn2', conv('conv1', relu(bn('bn1', x)))))) + x


@pytest.mark.parametrize(
  'activation',
  [
    'original',
    'bn_after_addition',
    'relu_before_addition',
    'relu_preactivation',
    'full_preactivation',
  ],
)
def test_he2016_fig4_unit_orderings(activation):
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, FEATURES))
  module = unit(ACTIVATIONS[activation])
  variables = random_params(module, x)
  np.testing.assert_allclose(
    module.apply(variables, x),
    fig4_reference(activation, variables['params'], x),
    rtol=1e-5,
    atol=1e-5,
  )
  # In a network: the same parameters as the original (full pre-activation moves BNs, from
  # the stem to the end); ReLU-only pre-activation ends with a ReLU (the paper's extra
  # activation after the last unit), full pre-activation with BN-ReLU.
  assert num_params('cifar_resnet20', activation=activation) == 269_722
  model = create_model('cifar_resnet20', activation=activation)
  assert model.final_act == (activation in ('relu_preactivation', 'full_preactivation'))
  assert model.final_norm == (activation == 'full_preactivation')


def test_he2016_fig4d_projections_are_preactivated():
  """He 2016, Appendix: "when pre-activation is used, these projection shortcuts are also with
  pre-activation": ReLU-only pre-activation feeds relu(x) to a projection, x to an identity."""
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, FEATURES))
  module = unit(blocks.ReLUPreActBlock, shortcut_kind='conv_bn')
  variables = random_params(module, x)
  params = variables['params']
  conv, bn = reference_ops(params)
  relu = jax.nn.relu
  residual = bn('bn2', conv('conv2', relu(bn('bn1', conv('conv1', relu(x))))))
  expected = residual + bn('shortcut_bn', conv('shortcut_conv', relu(x)))
  np.testing.assert_allclose(module.apply(variables, x), expected, rtol=1e-5, atol=1e-5)
  # In ResNet-164 (option B): every stage's first unit projects what its residual branch sees.
  model = create_model('cifar_resnet164', shortcut='B', activation='relu_preactivation')
  firsts = [s.runs[0].block.keywords['shortcut_kind'] for s in model.stages]
  assert firsts == ['conv_bn'] * 3


def one_layer_reference(activation, params, x):
  """He 2016 Table 3's "ResNet-110(1layer)": each shortcut skips one 3x3 convolution."""
  conv, bn = reference_ops(params)
  if activation == 'original':
    return jax.nn.relu(bn('bn1', conv('conv1', x)) + x)
  return conv('conv1', jax.nn.relu(bn('bn1', x))) + x


@pytest.mark.parametrize('activation', ['original', 'full_preactivation'])
def test_he2016_one_layer_units(activation):
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, FEATURES))
  module = unit(ACTIVATIONS[activation], one_layer=True)
  variables = random_params(module, x)
  np.testing.assert_allclose(
    module.apply(variables, x),
    one_layer_reference(activation, variables['params'], x),
    rtol=1e-5,
    atol=1e-5,
  )
  # 110 layers are 3 x 36 one-layer units: the 108 3x3 convolutions of ResNet-110's 54
  # two-layer units, so the same parameters (1.7 M, option A).
  model = create_model('cifar_resnet110', block='one_layer', activation=activation)
  assert [[run.count for run in s.runs] for s in model.stages] == [[None, 35]] * 3
  assert num_params('cifar_resnet110', block='one_layer', activation=activation) == 1_727_962
  assert num_params('cifar_resnet20', block='one_layer') == num_params('cifar_resnet20')
  with pytest.raises(ValueError, match='depth must be 3n\\+2'):
    create_model('cifar_resnet110', block='one_layer', depth=111)
  with pytest.raises(ValueError, match="block='one_layer'"):
    create_model('cifar_iresnet110', block='one_layer')


def test_he2016_dropout_shortcut_is_not_rescaled():
  """He 2016 Sec. 3.1: dropout "statistically imposes a scale of lambda with an expectation of
  0.5 on the shortcut": kept values are not doubled in training, the test shortcut is 0.5 x."""
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, FEATURES))
  dropped = unit(blocks.ModulatedShortcutBlock, modulation='dropout')
  variables = random_params(dropped, x)
  conv, bn = reference_ops(variables['params'])
  residual = bn('bn2', conv('conv2', jax.nn.relu(bn('bn1', conv('conv1', x)))))
  np.testing.assert_allclose(
    dropped.apply(variables, x), jax.nn.relu(0.5 * x + residual), rtol=1e-5, atol=1e-5
  )
  # Training: h = mask * x, each element kept (not doubled) or zeroed; the residual branch then
  # uses batch statistics, so compare the shortcut through a unit whose branch is zero.
  zero = jax.tree.map(jnp.zeros_like, variables['params'])
  shortcut_only = {**variables, 'params': zero}
  for modulation, kept in (('dropout', 1.0), ('inverted_dropout', 2.0)):
    training = unit(blocks.ModulatedShortcutBlock, modulation=modulation).clone(train=True)
    out, _ = training.apply(
      shortcut_only, jnp.abs(x), rngs={'dropout': jax.random.key(2)}, mutable=['batch_stats']
    )
    ratio = np.asarray(out / jnp.abs(x))
    assert set(np.round(np.unique(ratio), 5)) == {0.0, kept}, modulation
    assert 0.3 < np.mean(ratio == 0) < 0.7


def table1_reference(modulation, params, x, options):
  """He 2016 Fig. 2: relu(a * h(x) + b * F(x)), h(x) = x, g(x) = sigmoid(conv1x1(x) + b_g)."""
  conv, bn = reference_ops(params)
  residual = bn('bn2', conv('conv2', jax.nn.relu(bn('bn1', conv('conv1', x)))))
  if modulation == 'constant_scaling':
    a, b = options['shortcut_scale'], options['residual_scale']
  else:
    g = jax.nn.sigmoid(conv('gate_conv', x) + params['gate_bias'])
    a, b = 1 - g, g if modulation == 'exclusive_gating' else 1
  return jax.nn.relu(a * x + b * residual)


@pytest.mark.parametrize(
  'modulation, options',
  [
    ('constant_scaling', dict(shortcut_scale=0.5, residual_scale=1.0)),
    ('constant_scaling', dict(shortcut_scale=0.5, residual_scale=0.5)),
    ('exclusive_gating', dict(gate_bias_init=-6.0)),
    ('shortcut_only_gating', dict(gate_bias_init=0.0)),
  ],
)
def test_he2016_table1_shortcut_modulations(modulation, options):
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, FEATURES))
  module = unit(blocks.ModulatedShortcutBlock, modulation=modulation, **options)
  variables = random_params(module, x)
  np.testing.assert_allclose(
    module.apply(variables, x),
    table1_reference(modulation, variables['params'], x, options),
    rtol=1e-5,
    atol=1e-5,
  )
  if 'gate_bias_init' in options:  # the paper's bias initialisation, in every gate
    init = module.init(jax.random.key(0), x)['params']['gate_bias']
    np.testing.assert_array_equal(init, np.full(FEATURES, options['gate_bias_init']))


@pytest.mark.slow
def test_he2016_table1_gates_and_dropout_in_resnet110():
  # A gate per unit: a 1x1 convolution (with the unit's stride) and its bias; 54 units.
  gate_params = 16 * 16 * 18 + (16 * 32 + 32 * 32 * 17) + (32 * 64 + 64 * 64 * 17) + 16 * 18
  gate_params += 32 * 18 + 64 * 18
  baseline = num_params('cifar_resnet110')
  assert baseline == 1_727_962
  for modulation in ('exclusive_gating', 'shortcut_only_gating'):
    assert num_params('cifar_resnet110', modulation=modulation) == baseline + gate_params
  for modulation in ('constant_scaling', 'dropout', 'inverted_dropout'):
    assert num_params('cifar_resnet110', modulation=modulation) == baseline
  # 1x1 convolutional shortcut: He 2015's option C, a projection in every unit.
  assert set(shortcut_kinds('cifar_resnet110', shortcut='C')) == {'conv_bn'}
  # Inverted dropout (0.5) on the shortcut: the identity at test, random in training.
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, FEATURES))
  dropped, plain = (
    unit(blocks.ModulatedShortcutBlock, modulation='inverted_dropout'),
    unit(blocks.PostActBlock),
  )
  variables = random_params(plain, x)
  np.testing.assert_allclose(dropped.apply(variables, x), plain.apply(variables, x), atol=1e-6)
  training = dropped.clone(train=True)
  out = training.apply(variables, x, rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(out, plain.apply(variables, x), atol=1e-3)


def test_bad_variant_options_are_clear_errors():
  with pytest.raises(ValueError, match="modulation='gating' is not one of None, 'constant_"):
    create_model('cifar_resnet20', modulation='gating')
  with pytest.raises(ValueError, match="activation='preact' is not one of 'original'"):
    create_model('cifar_resnet20', activation='preact')
  with pytest.raises(ValueError, match="shortcut='A' is not one of 'B', 'improved'"):
    create_model('iresnet50', shortcut='A')


def test_duta2020_components_separately():
  # The improved shortcut alone, on a post-activation ResNet: iResNet's shortcuts and stem
  # (no max-pool: stage 1 strides through its shortcut's), the ResNet's blocks.
  improved = create_model('resnet50', shortcut='improved')
  assert shortcut_kinds('resnet50', shortcut='improved')[::2] == ['pool_conv_bn'] * 4
  assert not improved.stem.pool and [s.strides for s in improved.stages] == [2, 2, 2, 2]
  assert num_params('resnet50', shortcut='improved') == 25_557_032
  assert summary.count_macs(improved, 224) == summary.count_macs(create_model('iresnet50'), 224)
  # ResStage organisation with and without the improved shortcut.
  assert num_params('resstage50', shortcut='improved') == num_params('iresnet50')
  assert shortcut_kinds('resstage50', shortcut='improved') == shortcut_kinds('iresnet50')
  assert shortcut_kinds('iresnet50', shortcut='B') == shortcut_kinds('resstage50')
  # On CIFAR, where there is no stem max-pool to move.
  assert shortcut_kinds('cifar_resnet20', shortcut='improved')[::2] == [
    'identity',
    'pool_conv_bn',
    'pool_conv_bn',
  ]


def test_cifar_preact_shortcuts_follow_the_authors_code():
  # fb.resnet.torch's CIFAR default (A) for ResNet-110; resnet-1k-layers' projections for 164.
  assert 'conv' not in shortcut_kinds('cifar_preact_resnet110')
  assert num_params('cifar_preact_resnet110') == 1_727_962
  assert shortcut_kinds('cifar_preact_resnet164')[::2] == ['conv', 'conv', 'conv']
  assert num_params('cifar_preact_resnet164') == 1_703_258


# Every variant on CIFAR layouts of 4 channels and 8 x 8 images.
VARIANTS = {
  'plain': ('cifar_plain8', {}),
  'constant_scaling': ('cifar_resnet8', dict(modulation='constant_scaling', residual_scale=0.5)),
  'exclusive_gating': ('cifar_resnet8', dict(modulation='exclusive_gating')),
  'shortcut_only_gating': ('cifar_resnet8', dict(modulation='shortcut_only_gating')),
  'dropout_shortcut': ('cifar_resnet8', dict(modulation='dropout')),
  'inverted_dropout_shortcut': ('cifar_resnet8', dict(modulation='inverted_dropout')),
  'conv_shortcut': ('cifar_resnet8', dict(shortcut='C')),
  'bn_after_addition': ('cifar_resnet8', dict(activation='bn_after_addition')),
  'relu_before_addition': ('cifar_resnet8', dict(activation='relu_before_addition')),
  'relu_preactivation': ('cifar_resnet8', dict(activation='relu_preactivation')),
  'relu_preactivation_projections': (
    'cifar_resnet8',
    dict(activation='relu_preactivation', shortcut='B'),
  ),
  'one_layer_units': ('cifar_resnet11', dict(block='one_layer')),
  'full_preactivation': ('cifar_resnet8', dict(activation='full_preactivation')),
  'improved_shortcut': ('cifar_resnet8', dict(shortcut='improved')),
  'resstage': ('cifar_resstage14', {}),
  'resstage_improved': ('cifar_resstage14', dict(shortcut='improved')),
}


@pytest.mark.slow
@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_variant_trains(variant):
  """Six shipped train steps (momentum SGD, the papers' optimizer) lower the loss."""
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from configs import quickstart
  from resnet_jax import optim, train

  name, options = VARIANTS[variant]
  model = create_model(name, base_width=4, **options)
  config = quickstart.get_config()
  config.weight_decay, config.label_smoothing = 0.0, 0.0
  mesh = train.make_mesh()
  tx = optim.create_optimizer(config)
  state = train.create_train_state(
    model, tx, jax.random.key(1), (1, 8, 8, 3), NamedSharding(mesh, P())
  )
  step = train.jit_train_step(config, mesh)
  batch = {'image': jax.random.normal(jax.random.key(0), (8, 8, 8, 3)), 'label': jnp.arange(8) % 10}
  losses = []
  for _ in range(6):
    state, metrics = step(state, batch, jax.random.key(2), np.float32(0.1))
    losses.append(float(metrics['loss']))
  assert int(state.step) == 6 and not bool(metrics['nonfinite'])
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
