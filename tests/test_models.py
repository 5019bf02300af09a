"""The model zoo: every registry name builds with the published parameter count, the blocks
train and differentiate, stacking is exact, and bad names or options fail clearly."""

import functools
import math
import os
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from resnet_jax import models
from resnet_jax.models import blocks, create_model, list_models, model_options
from resnet_jax.models.network import Stem

# torchvision's ImageNet ResNets (the same in the official iResNet code, which adds 200).
PUBLISHED = {
  18: 11_689_512,
  34: 21_797_672,
  50: 25_557_032,
  101: 44_549_160,
  152: 60_192_808,
  200: 64_673_832,
}
# Counted with PyTorch on the official iResNet code (github.com/iduta/iresnet, models/*.py).
OFFICIAL = {
  'iresnet302': 96_585_512,
  'iresnet404': 124_524_328,
  'iresnet1001': 255_597_864,
  'resgroup50': 24_887_080,
  'resgroup101': 47_813_416,
  'resgroup152': 66_993_960,
  'resgroupfix50': 23_366_440,
  'resgroupfix101': 43_786_024,
  'resgroupfix152': 60_607_272,
}
# Millions of parameters, He 2015 Table 6 (CIFAR-10, option A) and He 2016 Table 4 (bottlenecks).
CIFAR_MILLIONS = {
  'cifar_resnet20': 0.27,
  'cifar_resnet32': 0.46,
  'cifar_resnet44': 0.66,
  'cifar_resnet56': 0.85,
  'cifar_resnet110': 1.7,
  'cifar_resnet1202': 19.4,
  'cifar_preact_resnet110': 1.7,
  'cifar_preact_resnet164': 1.7,
}


def expected_params(name: str) -> int | None:
  """Published or official count; iResNet, ResStage and iResGroup match their baselines."""
  family = name.rstrip('0123456789')
  depth = int(name[len(family) :])
  if name in OFFICIAL:
    return OFFICIAL[name]
  if family in ('resnet', 'resstage', 'iresnet'):
    return PUBLISHED[depth]
  if family in ('iresgroup', 'iresgroupfix'):
    return OFFICIAL[f'{family[1:]}{depth}']
  return None


def image_size(name: str) -> int:
  return 8 if name.startswith('cifar_') else 32


@functools.cache
def shapes(name: str, **overrides):
  """(logits, variables) shapes of `name` on two small images, without computing anything."""
  model = create_model(name, **overrides)
  x = jnp.zeros((2, image_size(name), image_size(name), 3))
  return jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False), x)


def num_params(variables) -> int:
  return sum(x.size for x in jax.tree.leaves(variables['params']))


@pytest.mark.parametrize('name', list_models())
def test_builds_with_published_parameter_count(name):
  logits, variables = shapes(name)
  num_classes = 10 if name.startswith('cifar_') else 1000
  assert logits.shape == (2, num_classes) and logits.dtype == jnp.float32
  assert set(variables) == {'params', 'batch_stats'}
  count = num_params(variables)
  if expected_params(name) is not None:
    assert count == expected_params(name)
  if name in CIFAR_MILLIONS:
    assert round(count / 1e6, 2 if count < 1e6 else 1) == CIFAR_MILLIONS[name]


def test_cifar_preact_resnet1001_weights_match_he_2016():
  # He 2016 gives 10.2M, which counts the convolution and classifier weights; BN adds 0.15M.
  _, variables = shapes('cifar_preact_resnet1001')
  kernels = sum(x.size for k, x in flatten_dict(variables['params']).items() if k[-1] == 'kernel')
  assert round(kernels / 1e6, 1) == 10.2
  assert num_params(variables) == 10_327_706


def test_cifar_resstage_and_iresnet_match_resnet_parameters():
  # Same convolutions, BNs moved between positions (the improved shortcut pools, no weights).
  for depth in (20, 56, 164):
    resnet_count = num_params(shapes(f'cifar_resnet{depth}', shortcut='B')[1])
    assert num_params(shapes(f'cifar_resstage{depth}')[1]) == resnet_count
    assert num_params(shapes(f'cifar_iresnet{depth}')[1]) == resnet_count


def test_any_valid_cifar_depth():
  def blocks_and_features(name, **options):
    stages = create_model(name, **options).stages
    return [s.num_blocks for s in stages], [s.features for s in stages]

  # 9n+2, >= 164: bottlenecks, 4x the width at the output.
  assert blocks_and_features('cifar_iresnet2000') == ([222] * 3, [64, 128, 256])
  # 6n+2 only: basic blocks.
  assert blocks_and_features('cifar_iresnet20', depth=3002) == ([500] * 3, [16, 32, 64])
  # 6n+2 and 9n+2, < 164: basic blocks.
  assert blocks_and_features('cifar_preact_resnet110') == ([18] * 3, [16, 32, 64])
  assert blocks_and_features('cifar_resnet56', block='bottleneck') == ([6] * 3, [64, 128, 256])
  logits, variables = shapes('cifar_iresnet3002')
  assert logits.shape == (2, 10)
  kernel = variables['params']['stage2']['middle']['conv1']['kernel']
  assert kernel.shape == (497, 3, 3, 32, 32)


def test_parameter_tree_layout():
  """Names follow the PyTorch references; runs of identical blocks are stacked."""
  params = shapes('iresnet50')[1]['params']
  assert set(params) == {'stem_conv', 'stem_bn', 'stage1', 'stage2', 'stage3', 'stage4', 'head'}
  assert set(params['stage1']) == {'start', 'first_middle', 'end'}  # 3 blocks
  assert params['stage3']['middle']['conv2']['kernel'].shape == (3, 3, 3, 256, 256)  # 6 blocks
  assert set(params['stage1']['start']) == {
    *('conv1', 'conv2', 'conv3', 'bn1', 'bn2', 'bn3'),
    *('shortcut_conv', 'shortcut_bn'),
  }
  assert set(params['stage1']['first_middle']) == {'conv1', 'conv2', 'conv3', 'bn1', 'bn2'}
  assert set(params['stage3']['middle']) == {'conv1', 'conv2', 'conv3', 'bn0', 'bn1', 'bn2'}
  assert set(params['stage1']['end']) == {'conv1', 'conv2', 'conv3', 'bn0', 'bn1', 'bn2', 'bn3'}
  params = shapes('iresnet18')[1]['params']  # two-block stages: the end block has no bn0
  assert set(params['stage1']) == {'start', 'end'}
  assert set(params['stage1']['end']) == {'conv1', 'conv2', 'bn1', 'bn2'}
  assert 'shortcut_conv' not in params['stage1']['start']  # max-pool only
  params = shapes('resnet18')[1]['params']
  assert params['stage2']['first']['shortcut_conv']['kernel'].shape == (1, 1, 64, 128)
  assert params['stage2']['rest']['conv1']['kernel'].shape == (1, 3, 3, 128, 128)
  assert params['head']['kernel'].shape == (512, 1000)


def test_cifar_shortcut_options():
  def shortcut_convs(variables):
    return sorted(
      {'/'.join(k[:-1]) for k in flatten_dict(variables['params']) if 'shortcut' in k[-2]}
    )

  assert shortcut_convs(shapes('cifar_resnet20')[1]) == []  # option A: parameter-free
  assert shortcut_convs(shapes('cifar_resnet20', shortcut='B')[1]) == [
    'stage2/first/shortcut_bn',
    'stage2/first/shortcut_conv',
    'stage3/first/shortcut_bn',
    'stage3/first/shortcut_conv',
  ]
  assert len(shortcut_convs(shapes('cifar_resnet20', shortcut='C')[1])) == 2 * 6


# Small networks of every block type and layout (plan function, dims, options), on 16 px images.
def tiny_dims(sizes, bottleneck, cifar=False):
  return models.Dims(
    stem=Stem(8, 3, 1, pool=False) if cifar else Stem(8),
    sizes=sizes,
    features=(8, 16),
    widths=(4, 8),
    groups=(1, 2),
    strides=(1, 2),
    bottleneck=bottleneck,
  )


SMALL_NETWORKS = {
  'resnet': (models.resnet, tiny_dims((1, 2), True), {}),
  'resnet_v1_C': (models.resnet, tiny_dims((1, 2), True), dict(stride_in_1x1=True, shortcut='C')),
  'cifar_resnet_A': (models.resnet, tiny_dims((2, 2), False, cifar=True), dict(shortcut='A')),
  'preact_resnet': (models.preact_resnet, tiny_dims((2, 2), True), {}),
  'cifar_preact_resnet': (models.preact_resnet, tiny_dims((2, 2), False, cifar=True), {}),
  'resstage': (models.resstage, tiny_dims((2, 4), True), {}),
  'iresnet': (models.resstage, tiny_dims((3, 6), True), dict(shortcut='improved')),
  'cifar_iresnet': (
    models.resstage,
    tiny_dims((2, 3), False, cifar=True),
    dict(shortcut='improved'),
  ),
}


def small_network(kind: str, **overrides):
  plan, dims, options = SMALL_NETWORKS[kind]
  return plan(dims, num_classes=5, **options, **overrides)


def images(batch: int = 4, size: int = 16, channels: int = 3, seed: int = 0) -> jax.Array:
  return jax.random.normal(jax.random.key(seed), (batch, size, size, channels))


def jitted(kind: str, **overrides) -> types.SimpleNamespace:
  """Compiled init / eval / train / grad functions of a small network, compiled once per test run.

  Init uses the 'rbg' PRNG, which XLA:CPU compiles several times faster than threefry.
  """
  return _jitted(kind, tuple(sorted(overrides.items())))


@functools.cache
def _jitted(kind, overrides):
  model = small_network(kind, **dict(overrides))

  def train(variables, x, rngs=None):
    return model.apply(variables, x, train=True, mutable=['batch_stats'], rngs=rngs)

  def loss_and_grads(variables, x):
    def loss_fn(params):
      logits, state = train({'params': params, 'batch_stats': variables['batch_stats']}, x)
      return jnp.mean(logits**2), (logits, state)

    return jax.value_and_grad(loss_fn, has_aux=True)(variables['params'])

  return types.SimpleNamespace(
    model=model,
    init=jax.jit(lambda x: model.init(jax.random.key(0, impl='rbg'), x, train=False)),
    evaluate=jax.jit(lambda variables, x: model.apply(variables, x, train=False)),
    train=jax.jit(train),
    loss_and_grads=jax.jit(loss_and_grads),
  )


# The fast tier runs the CIFAR layouts (one per block kind); the full suite every network.
FAST_KINDS = {'cifar_resnet_A', 'cifar_preact_resnet', 'cifar_iresnet'}


@pytest.mark.parametrize(
  'kind',
  [
    k if k in FAST_KINDS else pytest.param(k, marks=pytest.mark.slow)
    for k in SMALL_NETWORKS
    if k != 'resnet'
  ],
)
def test_forward_backward(kind):
  net = jitted(kind)
  x = images()
  variables = net.init(x)
  (loss, (logits, state)), grads = net.loss_and_grads(variables, x)
  assert logits.shape == (4, 5) and np.isfinite(loss)
  # Every parameter takes part: each gradient is finite and somewhere non-zero.
  for path, grad in flatten_dict(grads).items():
    assert np.all(np.isfinite(grad)) and np.any(grad != 0), path
  # Training updated every BatchNorm's running statistics.
  old, new = flatten_dict(variables['batch_stats']), flatten_dict(state['batch_stats'])
  assert old.keys() == new.keys()
  assert all(not np.allclose(old[k], new[k]) for k in old if k[-1] == 'mean')


def test_quickstart_layout_takes_8x8_grey_images():
  logits, variables = jax.eval_shape(
    lambda x: create_model('cifar_resnet20').init_with_output(jax.random.key(0), x, train=False),
    jnp.zeros((4, 8, 8, 1)),
  )
  assert variables['params']['stem_conv']['kernel'].shape == (3, 3, 1, 16)
  assert logits.shape == (4, 10)


@pytest.mark.slow
def test_unroll_and_remat_give_identical_results():
  # Stage 2 has a run of three stacked middle blocks: unroll=2 leaves a remainder.
  x = images()
  variables = jitted('iresnet').init(x)
  (_, (logits, state)), grads = jitted('iresnet').loss_and_grads(variables, x)
  for options in (dict(unroll=1), dict(unroll=True), dict(unroll=2, remat=True)):
    (_, (logits2, state2)), grads2 = jitted('iresnet', **options).loss_and_grads(variables, x)
    np.testing.assert_allclose(logits2, logits, rtol=1e-5, atol=1e-6)
    for a, b in zip(
      jax.tree.leaves((state2, grads2)), jax.tree.leaves((state, grads)), strict=True
    ):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_batchnorm_train_and_eval_modes():
  net = jitted('cifar_resnet_A')
  x = images(batch=4)
  variables = net.init(x)
  # Eval: running statistics, so each image's logits do not depend on the rest of the batch.
  logits = net.evaluate(variables, x)
  np.testing.assert_allclose(net.evaluate(variables, x[::-1])[::-1], logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    net.evaluate(variables, x.at[2:].multiply(3.0))[:2], logits[:2], rtol=1e-5, atol=1e-6
  )
  # Train: batch statistics, so they do; and the running averages move with momentum 0.9.
  train_logits, state = net.train(variables, x)
  other_logits, _ = net.train(variables, x.at[2:].multiply(3.0))
  assert not np.allclose(other_logits[:2], train_logits[:2], atol=1e-3)
  y = blocks.Conv(8, 3).apply({'params': variables['params']['stem_conv']}, x)
  stats = state['batch_stats']['stem_bn']
  np.testing.assert_allclose(stats['mean'], 0.1 * y.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * y.var(axis=(0, 1, 2)), rtol=1e-4)


def test_initialisation_follows_pytorch_references():
  model = create_model('cifar_resnet20')
  init = jax.jit(lambda x: model.init(jax.random.key(0, impl='rbg'), x, train=False))
  params = init(images(batch=1, size=8))['params']
  kernel = params['stage3']['rest']['conv1']['kernel']  # 2 x 3 x 3 x 64 x 64, fan-out 576
  assert abs(float(jnp.std(kernel)) / math.sqrt(2 / 576) - 1) < 0.01
  assert abs(float(jnp.mean(kernel))) < 1e-3
  bound = 1 / math.sqrt(64)  # PyTorch nn.Linear: uniform in +-1/sqrt(fan_in)
  head = params['head']
  assert float(jnp.abs(head['kernel']).max()) <= bound
  assert float(jnp.std(head['kernel'])) > 0.5 * bound
  assert float(jnp.abs(head['bias']).max()) <= bound and float(jnp.std(head['bias'])) > 0
  bn = params['stage2']['rest']['bn1']
  assert np.all(bn['scale'] == 1) and np.all(bn['bias'] == 0)


@pytest.mark.slow
def test_zero_init_residual():
  x = images()
  params = jitted('cifar_resnet_A', zero_init_residual=True).init(x)['params']
  # Post-activation: the last BN of every block.
  assert np.all(params['stage1']['first']['bn2']['scale'] == 0)
  assert np.all(params['stage1']['rest']['bn2']['scale'] == 0)
  assert np.all(params['stage1']['rest']['bn1']['scale'] == 1)
  params = jitted('iresnet', zero_init_residual=True).init(x)['params']
  # ResStage: only the start block's branch ends with a BN; the end block's acts after the sum.
  assert np.all(params['stage2']['start']['bn3']['scale'] == 0)
  assert np.all(params['stage2']['end']['bn3']['scale'] == 1)
  assert np.all(params['stage2']['middle']['bn2']['scale'] == 1)


@pytest.mark.slow
def test_official_inplace_relu_changes_the_first_middle_identity():
  x = images()
  official, paper = jitted('iresnet'), jitted('iresnet', official_inplace_relu=False)
  variables = official.init(x)
  paper_shapes = jax.eval_shape(paper.init, x)
  assert jax.tree.structure(paper_shapes) == jax.tree.structure(variables)
  a, b = official.evaluate(variables, x), paper.evaluate(variables, x)
  assert not np.allclose(a, b, atol=1e-3)


@pytest.mark.slow
def test_bfloat16_compute_with_float32_parameters():
  x = images()
  net = jitted('resstage', dtype=jnp.bfloat16)
  variables = net.init(x)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits, state = net.train(variables, x)
  assert logits.dtype == jnp.float32
  assert {leaf.dtype for leaf in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32)}
  reference, _ = jitted('resstage').train(variables, x)
  assert not np.array_equal(logits, reference)
  np.testing.assert_allclose(logits, reference, atol=0.05 * float(jnp.abs(reference).max()))


@pytest.mark.slow
def test_dropout_before_the_classifier():
  x = images()
  net = jitted('resnet', dropout_rate=0.5)
  variables = net.init(x)
  plain = jitted('resnet').evaluate(variables, x)
  np.testing.assert_array_equal(net.evaluate(variables, x), plain)
  train = [net.train(variables, x, {'dropout': jax.random.key(s)})[0] for s in (0, 1)]
  assert not np.allclose(train[0], train[1])


def test_dropout_trains_under_explicit_sharding_with_linens_mask():
  """blocks.Dropout draws nn.Dropout's mask, and also takes an input sharded on a mesh."""
  x = images(batch=8).reshape(8, -1)
  rngs = {'dropout': jax.random.key(3)}
  ours = blocks.Dropout(0.5, deterministic=False).apply({}, x, rngs=rngs)
  np.testing.assert_array_equal(ours, nn.Dropout(0.5, deterministic=False).apply({}, x, rngs=rngs))
  mesh = jax.make_mesh((1,), ('data',), axis_types=(jax.sharding.AxisType.Explicit,))
  with jax.set_mesh(mesh):
    sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.P('data')))
    apply = jax.jit(lambda x, module: module.apply({}, x, rngs=rngs), static_argnums=1)
    np.testing.assert_array_equal(apply(sharded, blocks.Dropout(0.5, deterministic=False)), ours)
    with pytest.raises(Exception, match='sharding'):  # google/flax#5209: drop blocks.Dropout
      apply(sharded, nn.Dropout(0.5, deterministic=False))


def test_padding_is_symmetric_like_pytorch():
  """Stride-2 3x3 convolution and max-pool sample the grid as PyTorch (padding 1 each side)."""
  x = np.arange(1 * 6 * 6 * 1, dtype=np.float32).reshape(1, 6, 6, 1) - 10
  conv = blocks.Conv(1, 3, strides=2, kernel_init=jax.nn.initializers.ones)
  y = conv.apply(conv.init(jax.random.key(0), x), x)
  padded = np.pad(x[0, :, :, 0], 1)
  want = [[padded[i : i + 3, j : j + 3].sum() for j in (0, 2, 4)] for i in (0, 2, 4)]
  np.testing.assert_array_equal(y[0, :, :, 0], want)
  pooled = blocks.max_pool(jnp.asarray(x))
  padded = np.pad(x[0, :, :, 0], 1, constant_values=-np.inf)
  want = [[padded[i : i + 3, j : j + 3].max() for j in (0, 2, 4)] for i in (0, 2, 4)]
  np.testing.assert_array_equal(pooled[0, :, :, 0], want)


@pytest.mark.parametrize(
  'name, overrides, message',
  [
    ('resnet51', {}, 'valid depths: 18, 34, 50, 101, 152, 200'),
    ('vgg16', {}, 'Unknown model .* Valid names: resnet18'),
    ('resnet', {}, 'Unknown model'),
    ('cifar_resnet21', {}, 'depth must be 6n\\+2'),
    ('cifar_iresnet8', {}, 'n >= 2 blocks per stage'),
    ('cifar_resnet20', {'block': 'wide'}, "block='wide' is not one of"),
    ('cifar_resnet20', {'shortcut': 'D'}, "shortcut='D' is not one of"),
    ('resnet50', {'zero_init': True}, 'no option zero_init. Valid options: .*zero_init_residual'),
    ('preact_resnet50', {'zero_init_residual': True}, 'no option zero_init_residual'),
    ('iresnet50', {'shortcut': 'A'}, "shortcut='A' is not one of 'B', 'improved'"),
    ('resnet18', {'groups': 32}, 'basic blocks, which support only groups=1'),
    ('iresnet50', {'depth': 60}, 'iresnet has no depth 60'),
  ],
)
def test_bad_names_and_options_are_clear_errors(name, overrides, message):
  with pytest.raises(ValueError, match=message):
    create_model(name, **overrides)


def test_model_options_lists_what_create_model_accepts():
  options = model_options('iresnet50')
  for option in ('num_classes', 'dtype', 'dropout_rate', 'zero_init_residual', 'groups'):
    assert option in options
  assert 'official_inplace_relu' in options and 'stage_sizes' not in options
  assert 'zero_init_residual' not in model_options('cifar_preact_resnet164')


@pytest.mark.parametrize(
  'block, field, value',
  [
    (blocks.StageBlock, 'position', 'midle'),
    (blocks.PreActBlock, 'preact', 'shard'),
    (blocks.PostActBlock, 'shortcut_kind', 'conv_nb'),
  ],
)
def test_misspelt_block_options_are_errors(block, field, value):
  norm = blocks.batch_norm(train=False, dtype=jnp.float32)
  with pytest.raises(ValueError, match=f"{field}='{value}' is not one of '"):
    block(conv=blocks.Conv, norm=norm, act=jax.nn.relu, features=8, **{field: value})


def docs_block_example() -> str:
  """The Python example of docs/models.md's section 'How a network is built'."""
  with open(os.path.join(os.path.dirname(__file__), '..', 'docs', 'models.md')) as f:
    text = f.read()
  section = text[text.index('## How a network is built') :]
  start = section.index('```python\n') + len('```python\n')
  return section[start : section.index('\n```', start)]


@pytest.mark.slow
def test_docs_new_block_is_one_class_and_one_plan_line(monkeypatch):
  monkeypatch.setattr(models, 'FAMILIES', dict(models.FAMILIES))
  namespace = {}
  exec(docs_block_example(), namespace)  # noqa: S102 (the docs' own example)
  model = namespace['model']
  assert [s.num_blocks for s in model.stages] == [3, 3, 3]
  x = images(batch=2, size=8)
  variables = jax.jit(lambda x: model.init(jax.random.key(0, impl='rbg'), x, train=False))(x)
  reference = num_params(shapes('cifar_resnet20')[1])
  assert num_params(variables) == reference + 9  # one alpha per block
  alpha = variables['params']['stage2']['rest']['alpha']
  assert alpha.shape == (2,) and np.all(alpha == 0)

  def loss(params):
    logits, _ = model.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
    return jnp.mean(logits**2)

  grads = jax.jit(jax.grad(loss))(variables['params'])
  assert np.all(grads['stage2']['rest']['alpha'] != 0)
