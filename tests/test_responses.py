"""He 2015 Fig. 7's layer responses: the right tensors, counted and computed as the paper does."""

import csv
import os
import shutil

import flax
import jax
import numpy as np
import pytest

from resnet_jax import errors, models, report, responses, train
from resnet_jax.models.blocks import Conv


def _images(n=4):
  return jax.random.normal(jax.random.key(1), (n, 8, 8, 3))


def _init(model):
  # Compiled as one program: initialising op by op takes twice as long on CPU.
  return jax.jit(lambda rng, x: model.init(rng, x, train=False))(jax.random.key(0), _images(1))


@pytest.mark.parametrize(
  'name', [pytest.param('cifar_resnet14', marks=pytest.mark.slow), 'cifar_plain14']
)
def test_one_response_per_3x3_layer(name):
  """6n+1 for depth 6n+2: the 3x3 stem and both 3x3 convolutions of each of the 6 blocks."""
  model = models.create_model(name)
  layers = responses.response_layers(model)
  assert len(layers) == 13
  assert layers[:4] == ['stem_bn', 'stage1/first/bn1', 'stage1/first/bn2', 'stage1/rest/0/bn1']
  assert layers[-1] == 'stage3/rest/0/bn2'
  std = responses.layer_responses(model, _init(model), _images())
  assert list(std) == layers
  assert all(v > 0 for v in std.values())


def test_bottlenecks_respond_at_their_3x3_and_7x7_stems_not_at_all():
  layers = responses.response_layers(models.create_model('resnet50'))
  assert len(layers) == 16
  assert layers[0] == 'stage1/first/bn2'


@pytest.mark.parametrize('name', ['cifar_preact_resnet110', 'cifar_iresnet20'])
def test_networks_without_the_papers_tensor_are_refused(name):
  with pytest.raises(errors.ConfigError, match='names no tensor'):
    responses.response_layers(models.create_model(name))


@pytest.mark.slow
def test_each_response_is_the_bn_formula_on_its_conv_output():
  """Against BN computed by hand, with random running statistics and affine parameters, from
  the convolutions' outputs; a stacked run (stage*/rest) is unstacked in block order."""
  model = models.create_model('cifar_resnet14', num_classes=10)
  variables = _init(model)
  keys = iter(jax.random.split(jax.random.key(2), 1000))

  def uniform(x, low, high):
    return jax.random.uniform(next(keys), x.shape, x.dtype, low, high)

  flat_stats = flax.traverse_util.flatten_dict(variables['batch_stats'])
  flat_stats = {
    k: uniform(v, -1, 1) if k[-1] == 'mean' else uniform(v, 0.5, 2) for k, v in flat_stats.items()
  }
  flat_params = flax.traverse_util.flatten_dict(variables['params'])
  affine = {'scale': (0.5, 1.5), 'bias': (-1, 1)}
  flat_params = {
    k: uniform(v, *affine[k[-1]]) if k[-1] in affine else v for k, v in flat_params.items()
  }
  variables = {
    'params': flax.traverse_util.unflatten_dict(flat_params),
    'batch_stats': flax.traverse_util.unflatten_dict(flat_stats),
  }
  images = _images()

  apply = jax.jit(
    lambda variables, images: model.apply(
      variables,
      images,
      train=False,
      capture_intermediates=lambda module, _: isinstance(module, Conv),
      mutable=['intermediates'],
    )
  )
  _, state = apply(variables, images)
  convs = flax.traverse_util.flatten_dict(state['intermediates'])
  got = responses.layer_responses(model, variables, images)
  assert len(got) == 13
  for name, value in got.items():
    parts = name.split('/')
    index = int(parts.pop(-2)) if len(parts) == 4 else None
    bn = tuple(parts)
    conv = bn[:-1] + (bn[-1].replace('bn', 'conv'),) if bn != ('stem_bn',) else ('stem_conv',)
    x = convs[(*conv, '__call__')][0]
    mean, var = flat_stats[(*bn, 'mean')], flat_stats[(*bn, 'var')]
    scale, bias = flat_params[(*bn, 'scale')], flat_params[(*bn, 'bias')]
    if index is not None:
      x, mean, var, scale, bias = (a[index] for a in (x, mean, var, scale, bias))
    x, mean, var, scale, bias = (np.asarray(a, np.float64) for a in (x, mean, var, scale, bias))
    expected = np.std((x - mean) / np.sqrt(var + 1e-5) * scale + bias)
    assert value == pytest.approx(expected, rel=1e-5), name


@pytest.mark.slow
def test_zero_initialised_residual_branches_respond_with_zero():
  """With `zero_init_residual`, every block's last BN outputs exactly 0 before the addition:
  the captured tensor is that BN's output, not the sum or the ReLU after it."""
  model = models.create_model('cifar_resnet14', zero_init_residual=True)
  std = responses.layer_responses(model, _init(model), _images())
  assert [v for k, v in std.items() if k.endswith('bn2')] == [0.0] * 6
  assert all(v > 0 for k, v in std.items() if not k.endswith('bn2'))


@pytest.mark.slow
def test_stacked_and_unrolled_runs_agree():
  images = _images()
  looped = models.create_model('cifar_resnet20', unroll=1)
  unrolled = models.create_model('cifar_resnet20', unroll=True)
  variables = _init(looped)
  a = responses.layer_responses(looped, variables, images)
  b = responses.layer_responses(unrolled, variables, images)
  assert list(a) == list(b)
  np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=1e-5)


@pytest.mark.slow
def test_report_writes_responses_of_trained_runs(digits_config, tmp_path, capsys):
  """A ResNet-8 and a plain-8 trained 20 steps, and a run whose checkpoints are gone."""
  for model in ('cifar_resnet8', 'cifar_plain8'):
    digits_config.model = model
    train.train_and_evaluate(digits_config, str(tmp_path / model))
  shutil.copytree(tmp_path / 'cifar_plain8', tmp_path / 'no_checkpoints')
  shutil.rmtree(tmp_path / 'no_checkpoints' / 'checkpoints')

  written = report.write_report(str(tmp_path), responses=True, response_images=100)
  assert 'no_checkpoints skipped' in capsys.readouterr().out
  assert os.path.getsize(tmp_path / 'responses.png') > 10_000
  assert str(tmp_path / 'responses.csv') in written
  with open(tmp_path / 'responses.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 14  # 7 responses (a 3x3 stem and 3 basic blocks) for each of two runs.
  assert [r['plain'] for r in rows] == ['True'] * 7 + ['False'] * 7
  assert {r['step'] for r in rows} == {'20'}

  run = responses.run_responses(str(tmp_path / 'cifar_resnet8'), images=np.zeros((2, 8, 8, 1)))
  resnet_rows = [float(r['std']) for r in rows if r['model'] == 'cifar_resnet8']
  assert run.step == 20 and len(run.std) == 7
  assert list(run.std.values()) != pytest.approx(resnet_rows)  # The given images were used.
