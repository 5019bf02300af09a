"""PyTorch weight import: converted weights give the reference PyTorch logits, for every family.

The fixtures (tests/fixtures/*.npz, made as tests/fixtures/README.md says) hold a state_dict of a
reduced reference model with random weights and BatchNorm statistics, a random input and the
logits the reference PyTorch code computed for it, in eval mode. No PyTorch is needed here.
"""

import dataclasses
import functools
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from resnet_jax import convert, models
from resnet_jax.models import create_model

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
ROOT_ON_PATH = {'PYTHONPATH': os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}

# Reference channel counts divided by 16: stem 4, planes 4, 8, 16, 32.
BASIC = dict(stem=4, features=(4, 8, 16, 32), widths=(4, 8, 16, 32))
BOTTLENECK = dict(stem=4, features=(16, 32, 64, 128), widths=(4, 8, 16, 32))
GROUP = dict(stem=4, features=(8, 16, 32, 64), widths=(16, 32, 64, 128))
TORCHVISION_STAGES = dict(sizes=(3, 2, 1, 1))
IRESNET_STAGES = dict(sizes=(5, 4, 3, 2))  # every kind of ResStage/iResNet stage

# fixture: (registry name, create_model options, reduced `Dims` of the reference model)
CASES = {
  'torchvision_resnet_basic': ('resnet18', {}, BASIC | TORCHVISION_STAGES),
  'torchvision_resnet_bottleneck': ('resnet50', {}, BOTTLENECK | TORCHVISION_STAGES),
  'torchvision_resnext': (
    'resnet50',
    dict(groups=2, width_per_group=32),
    BOTTLENECK | TORCHVISION_STAGES,
  ),
  'resgroup': ('resgroup50', {}, GROUP | TORCHVISION_STAGES),
  'resgroupfix': ('resgroupfix50', dict(groups=8), GROUP | TORCHVISION_STAGES),
  'resstage_basic': ('resstage18', {}, BASIC | IRESNET_STAGES),
  'resstage_bottleneck': ('resstage50', {}, BOTTLENECK | IRESNET_STAGES),
  'iresnet_basic': ('iresnet18', {}, BASIC | IRESNET_STAGES),
  'iresnet_bottleneck': ('iresnet50', {}, BOTTLENECK | IRESNET_STAGES),
  'iresgroup': ('iresgroup50', {}, GROUP | IRESNET_STAGES),
  'iresgroupfix': ('iresgroupfix50', dict(groups=8), GROUP | IRESNET_STAGES),
  'preact_basic': ('preact_resnet18', {}, BASIC | TORCHVISION_STAGES),
  'preact_bottleneck': ('preact_resnet50', {}, BOTTLENECK | TORCHVISION_STAGES),
  'cifar_resnet20_a': ('cifar_resnet20', {}, {}),
  'cifar_resnet14_b': ('cifar_resnet14', dict(shortcut='B'), {}),
  'cifar_resstage_basic': ('cifar_resstage20', dict(base_width=4), {}),
  'cifar_resstage_bottleneck': ('cifar_resstage47', dict(base_width=4), {}),
  'cifar_iresnet_basic': ('cifar_iresnet32', dict(base_width=4), {}),
  'cifar_iresnet_bottleneck': ('cifar_iresnet29', dict(base_width=4), {}),
  'cifar_preact_basic': ('cifar_preact_resnet20', dict(base_width=8, shortcut='B'), {}),
  'cifar_preact_bottleneck': ('cifar_preact_resnet29', dict(base_width=4), {}),
}


def load_fixture(name):
  with np.load(os.path.join(FIXTURES, name + '.npz')) as npz:
    arrays = dict(npz)
  images = arrays.pop('input').astype(np.float32).transpose(0, 2, 3, 1)  # NCHW -> NHWC
  return arrays, images, arrays.pop('logits')


def reference_model(name, **options):
  """The registry model of fixture `name`, with the reference's reduced depth and widths."""
  return reduced_model(*CASES[name], **options)


def reduced_model(model_name, model_options, reduced, **options):
  """The registry model `model_name` with `model_options`, its `Dims` replaced by `reduced`."""
  family_name, depth = models.parse_name(model_name)
  family = models.FAMILIES[family_name]
  if reduced:
    full_dims = family.dims

    @functools.wraps(full_dims)
    def reduced_dims(*args, **kwargs):
      dims = full_dims(*args, **kwargs)
      stem = dataclasses.replace(dims.stem, features=reduced['stem'])
      return dataclasses.replace(dims, **reduced | {'stem': stem})

    family = dataclasses.replace(family, dims=reduced_dims)
  return family.network(family_name, depth, num_classes=10, **model_options, **options)


def relative_error(a, b):
  return float(np.abs(a - b).max() / np.abs(b).max())


# The fast tier (`-m "not slow"`) checks one network of each block kind and layout; the full
# suite checks every fixture.
FAST_CASES = {
  'torchvision_resnet_basic',
  'cifar_resnet20_a',
  'preact_bottleneck',
  'cifar_iresnet_basic',
}


@pytest.mark.parametrize(
  'name', [n if n in FAST_CASES else pytest.param(n, marks=pytest.mark.slow) for n in sorted(CASES)]
)
def test_converted_weights_give_reference_logits(name):
  state_dict, images, expected = load_fixture(name)
  # Unrolled and run op by op: the fastest way here for one small batch; the parameter tree is
  # the same as the default stacked (scanned) model's, which the tests below run.
  model = reference_model(name, unroll=True)
  variables = convert.convert_state_dict(model, state_dict)
  assert relative_error(np.asarray(model.apply(variables, images, train=False)), expected) < 1e-4


def test_scanned_model_gives_reference_logits():
  state_dict, images, expected = load_fixture('iresnet_bottleneck')
  model = reference_model('iresnet_bottleneck')
  variables = convert.convert_state_dict(model, state_dict)
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  assert relative_error(np.asarray(logits), expected) < 1e-4


def test_official_inplace_relu_is_what_the_reference_computes():
  """The fixtures can tell the official in-place ReLU from the paper's form."""
  state_dict, images, expected = load_fixture('iresnet_basic')
  model = reference_model('iresnet_basic', official_inplace_relu=False, unroll=True)
  variables = convert.convert_state_dict(model, state_dict)
  assert relative_error(np.asarray(model.apply(variables, images, train=False)), expected) > 1e-2


def test_from_torch_state_dict_builds_the_registry_model():
  state_dict, images, expected = load_fixture('cifar_resnet20_a')
  variables = convert.from_torch_state_dict('cifar_resnet20', state_dict)
  logits = create_model('cifar_resnet20').apply(variables, images, train=False)
  assert relative_error(np.asarray(logits), expected) < 1e-4


def test_stacked_blocks_keep_their_order():
  state_dict, _, _ = load_fixture('iresnet_bottleneck')
  variables = convert.convert_state_dict(reference_model('iresnet_bottleneck'), state_dict)
  middle = variables['params']['stage1']['middle']['conv2']['kernel']
  assert middle.shape[0] == 2
  for i, block in enumerate((2, 3)):
    torch_kernel = state_dict[f'layer1.{block}.conv2.weight'].astype(np.float32)
    np.testing.assert_array_equal(middle[i], torch_kernel.transpose(2, 3, 1, 0))
  var = variables['batch_stats']['stage1']['end']['bn3']['var']
  np.testing.assert_array_equal(var, state_dict['layer1.4.bn3.running_var'].astype(np.float32))


def test_dataparallel_prefix_wrapping_and_num_batches_tracked_are_accepted():
  state_dict, _, _ = load_fixture('cifar_resnet14_b')
  prefixed = {'module.' + k: v for k, v in state_dict.items()}
  assert any(k.endswith('num_batches_tracked') for k in prefixed)
  model = reference_model('cifar_resnet14_b')
  a = convert.convert_state_dict(model, prefixed)
  b = convert.convert_state_dict(model, state_dict)
  assert jax.tree.all(jax.tree.map(np.array_equal, a, b))


@pytest.mark.parametrize(
  'change, message',
  [
    (
      lambda sd: sd.pop('layer2.0.bn1.running_var'),
      'missing from the state_dict (1): '
      'layer2.0.bn1.running_var (for batch_stats/stage2/first/bn1/var)',
    ),
    (
      lambda sd: sd.update({'layer2.0.conv3.weight': sd['layer2.0.conv2.weight']}),
      'no place for (1): layer2.0.conv3.weight',
    ),
    (
      lambda sd: sd.update({'fc.weight': np.zeros((100, 64), np.float16)}),
      'fc.weight (100, 64) does not fit params/head/kernel (64, 10) (PyTorch shape (10, 64))',
    ),
    (
      lambda sd: sd.update({'layer1.0.conv1.weight': sd['layer1.0.conv2.weight'][:, :, :1]}),
      'layer1.0.conv1.weight (16, 16, 1, 3) does not fit params/stage1/first/conv1/kernel',
    ),
  ],
  ids=['missing', 'extra', 'wrong_shape', 'wrong_kernel'],
)
def test_bad_state_dicts_are_named(change, message):
  state_dict, _, _ = load_fixture('cifar_resnet14_b')
  change(state_dict)
  with pytest.raises(ValueError, match='does not fit this ResNet') as error:
    convert.convert_state_dict(reference_model('cifar_resnet14_b'), state_dict)
  assert message in str(error.value)


def test_stacked_block_with_wrong_shape_is_named():
  state_dict, _, _ = load_fixture('iresnet_basic')
  state_dict['layer1.3.conv1.weight'] = state_dict['layer1.3.conv1.weight'][:2]
  with pytest.raises(
    ValueError,
    match=r'layer1\.3\.conv1\.weight \(2, 4, 3, 3\) does not fit '
    r'params/stage1/middle/conv1/kernel \(2, 3, 3, 4, 4\)',
  ):
    convert.convert_state_dict(reference_model('iresnet_basic'), state_dict)


def test_wrong_model_lists_the_problems():
  state_dict, _, _ = load_fixture('cifar_resnet20_a')
  with pytest.raises(ValueError, match='missing from the state_dict') as error:
    convert.from_torch_state_dict('cifar_resnet32', state_dict)
  # 2 more blocks in each of 3 stages, each with 2 convolutions and 2 BNs of 4 tensors.
  assert 'missing from the state_dict (60): layer1.3.bn1.bias' in str(error.value)
  assert 'no place for' not in str(error.value)


@pytest.mark.slow
def test_cli_writes_a_restorable_checkpoint(tmp_path):
  state_dict, images, expected = load_fixture('cifar_resnet14_b')
  checkpoint = tmp_path / 'resnet14.npz'
  np.savez(checkpoint, **state_dict)
  output = tmp_path / 'converted'
  command = [
    sys.executable,
    '-m',
    'resnet_jax.convert',
    '--model=cifar_resnet14',
    f'--checkpoint={checkpoint}',
    f'--output={output}',
    '--option=shortcut=B',
  ]
  result = subprocess.run(command, capture_output=True, text=True, env=os.environ | ROOT_ON_PATH)
  assert result.returncode == 0, result.stderr
  assert '--config.init_from=' in result.stdout
  variables = ocp.StandardCheckpointer().restore(output)
  assert set(variables) == {'params', 'batch_stats'}
  logits = create_model('cifar_resnet14', shortcut='B').apply(variables, images, train=False)
  assert relative_error(np.asarray(logits), expected) < 1e-4
  with pytest.raises(FileExistsError, match='already exists'):
    convert.convert_checkpoint('cifar_resnet14', str(checkpoint), str(output), shortcut='B')


def test_pytorch_files_without_pytorch_say_what_to_do(tmp_path, monkeypatch):
  path = tmp_path / 'weights.pth'
  path.write_bytes(b'')
  monkeypatch.setitem(sys.modules, 'torch', None)
  with pytest.raises(ImportError, match='needs PyTorch.*pip install torch.*np.savez'):
    convert.load_state_dict(str(path))
