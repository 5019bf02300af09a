"""Optimizers, the weight-decay mask and learning-rate schedules against their definitions."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from configs import (
  cifar10_resnet20,
  cifar_he2016,
  default,
  resnet50,
  resnet50_b4096,
  resnet50_lars_b32k,
)
from conftest import REPO, run_main
from resnet_jax import models, optim, sweep, train
from resnet_jax.models import blocks

IMAGENET_TRAIN = 1_281_167


def _table(config, steps_per_epoch, num_train_steps):
  schedule = optim.create_learning_rate_fn(config, steps_per_epoch, num_train_steps)
  return optim.learning_rate_table(schedule, num_train_steps)


def test_step_schedule_boundaries_are_absolute_with_warmup():
  config = default.get_config()
  config.lr_decay_at = (30, 60)
  config.warmup = 10
  lr = _table(config, steps_per_epoch=1, num_train_steps=90)
  assert lr[0] == 0.0
  assert lr[5] == pytest.approx(0.05)
  assert lr[29] == pytest.approx(0.1)
  assert lr[30] == pytest.approx(0.01)
  assert lr[60] == pytest.approx(0.001)


def test_imagenet_recipe_scales_lr_with_batch_and_decays_by_epoch():
  config = resnet50.get_config()
  config.batch_size = 1024
  lr = _table(config, steps_per_epoch=100, num_train_steps=9000)
  assert lr[0] == pytest.approx(0.4)
  assert lr[2999] == pytest.approx(0.4)
  assert lr[3000] == pytest.approx(0.04)
  assert lr[8000] == pytest.approx(0.0004)
  assert train.num_train_steps(config, steps_per_epoch=100) == 9000


def test_cosine_schedule_ends_at_lr_end():
  """Reaches `lr_end` at step num_train_steps, one after the last update."""
  config = default.get_config()
  config.schedule = 'cosine'
  lr = _table(config, steps_per_epoch=1, num_train_steps=100)
  assert lr[0] == pytest.approx(0.1)
  assert lr[50] == pytest.approx(0.05)
  assert 0 < lr[99] < 1e-4
  assert float(optim.create_learning_rate_fn(config, 1, 100)(100)) == pytest.approx(0, abs=1e-8)
  config.lr_end = 0.001
  assert float(optim.create_learning_rate_fn(config, 1, 100)(100)) == pytest.approx(0.001)


def test_constant_warmup_is_he_2015_recipe_for_resnet110():
  """He 2015, Sec. 4.2: 0.01 for about 400 iterations, then 0.1, /10 at 32k and 48k."""
  config = cifar10_resnet20.get_config()
  config.warmup_constant_steps = 400
  lr = _table(config, steps_per_epoch=390, num_train_steps=64_000)
  np.testing.assert_allclose(lr[:400], 0.01)
  np.testing.assert_allclose(lr[400:32_000], 0.1)
  np.testing.assert_allclose(lr[32_000:48_000], 0.01, rtol=1e-6)
  np.testing.assert_allclose(lr[48_000:], 0.001, rtol=1e-6)


def test_he_2016_sweeps_warm_up_every_run():
  """He 2016, Appendix: "for all CIFAR experiments" lr 0.01 for the first 400 iterations."""
  for name in ('he2016_table1_shortcuts', 'he2016_table2_activations', 'he2016_table3_cifar'):
    base, fixed, points = sweep.load_sweep(os.path.join(REPO, 'experiments', f'{name}.py'))
    assert base == 'configs/cifar_he2016.py'
    assert not any('warmup_constant_steps' in p for p in [fixed, *points])
  config = cifar_he2016.get_config()
  lr = _table(config, steps_per_epoch=390, num_train_steps=64_000)
  np.testing.assert_allclose(lr[:400], 0.01)
  assert lr[400] == pytest.approx(0.1)


def test_table_is_the_schedule_at_every_step():
  config = resnet50_lars_b32k.get_config()
  schedule = optim.create_learning_rate_fn(config, 39, 2983)
  table = optim.learning_rate_table(schedule, 2983)
  assert table.dtype == np.float32 and table.shape == (2983,)
  for step in (0, 1, 976, 977, 2000, 2982):
    assert table[step] == pytest.approx(float(schedule(step)), rel=1e-6, abs=4e-6)  # 31.2 * 2**-23


def test_goyal_b4096_recipe_follows_the_haiku_schedule():
  """Linear warmup from 0 over 5 epochs to 0.1 x 4096/256, then cosine to 0 at the end of 90.

  The formula of the Haiku ImageNet example's `lr_schedule`, with this pipeline's epoch of
  1,281,167 // 4096 = 312 whole batches.
  """
  config = resnet50_b4096.get_config()
  steps_per_epoch = IMAGENET_TRAIN // config.batch_size
  total = train.num_train_steps(config, steps_per_epoch)
  lr = _table(config, steps_per_epoch, total)
  warmup, peak = 5 * steps_per_epoch, 0.1 * 4096 / 256
  assert total == 90 * 312
  for step in (0, 1, 100, warmup - 1, warmup, warmup + 1, 10_000, 20_000, total - 1):
    expected = peak * min(step / warmup, 1.0)
    expected *= 0.5 * (1 + np.cos(np.pi * max(step - warmup, 0) / (total - warmup)))
    assert lr[step] == pytest.approx(expected, rel=1e-5, abs=1e-6), step


def test_mlperf_lars_b32k_recipe_follows_the_reference_schedule():
  """MLPerf's PolynomialDecayWithWarmup: 31.2 reached linearly over 25 epochs (977 steps), then
  (31.2 - 1e-4) * (1 - k / (2983 - 977 + 1))**2 + 1e-4 for the k-th step after warmup."""
  config = resnet50_lars_b32k.get_config()
  total = train.num_train_steps(config, steps_per_epoch=IMAGENET_TRAIN // config.batch_size)
  lr = _table(config, IMAGENET_TRAIN // config.batch_size, total)
  assert total == 2983
  warmup, decay, peak, end = 977, 2983 - 977 + 1, 31.2, 1e-4
  for step in (0, 1, 500, 976, 977, 978, 1500, 2500, 2982):
    if step <= warmup:
      expected = peak * step / warmup
    else:
      expected = (peak - end) * (1 - (step - warmup) / decay) ** 2 + end
    assert lr[step] == pytest.approx(expected, rel=1e-6, abs=4e-6), step  # float32 of 31.2


@pytest.mark.parametrize('nesterov', [False, True])
def test_sgd_matches_pytorch_with_weight_decay(nesterov):
  """torch.optim.SGD: buf = m * buf + (g + wd * p); p -= lr * (g' + m * buf if nesterov else buf),
  with the learning rate changing from step to step, through the shipped train step: a linear
  classifier's gradient of the mean cross-entropy is x.T (softmax(x p) - onehot) / batch."""
  config = default.get_config()
  config.nesterov, config.label_smoothing = nesterov, 0.0
  rng = np.random.default_rng(0)
  params = rng.standard_normal((2, 3)).astype(np.float32)
  batch = {'image': rng.standard_normal((4, 2)).astype(np.float32), 'label': np.array([0, 2, 1, 2])}

  def apply_fn(variables, images, **kwargs):
    del kwargs
    return images @ variables['params']['w'], {'batch_stats': {}}

  state = train.TrainState.create(
    apply_fn=apply_fn, params={'w': params}, batch_stats={}, tx=optim.create_optimizer(config)
  )
  mesh = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])
  step = train.jit_train_step(config, mesh)
  p, buf = params.astype(np.float64), np.zeros((2, 3))
  for lr in (0.1, 0.05):
    state, _ = step(state, batch, jax.random.key(0), np.float32(lr))
    logits = batch['image'] @ p
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    g = batch['image'].T @ (softmax - np.eye(3)[batch['label']]) / 4
    d = g + 1e-4 * p
    buf = 0.9 * buf + d
    p = p - lr * (d + 0.9 * buf if nesterov else buf)
  assert int(state.step) == 2
  np.testing.assert_allclose(state.params['w'], p, rtol=1e-5, atol=1e-7)


def _lars_reference(params, grads_per_step, lrs, stacked, excluded):
  """You et al. 2017 as optax composes it, with one trust ratio per block of a stacked leaf."""
  p = traverse_util.flatten_dict(params)
  bufs = {k: np.zeros_like(v) for k, v in p.items()}
  for grads, lr in zip(grads_per_step, lrs, strict=True):
    for k, g in traverse_util.flatten_dict(grads).items():
      if k in excluded:
        update = lr * g
      else:
        u = g + 1e-4 * p[k]
        w_layers, u_layers = (p[k], u) if k in stacked else (p[k][None], u[None])
        scaled = [
          0.001 * np.linalg.norm(w) / np.linalg.norm(v) * v
          for w, v in zip(w_layers, u_layers, strict=True)
        ]
        update = lr * np.stack(scaled).reshape(u.shape)
      bufs[k] = 0.9 * bufs[k] + update
      p[k] = p[k] - bufs[k]
  return p


def test_lars_update_equals_its_formula_per_layer():
  """v = m * v + lr * eta * |w| / |g + wd * w| * (g + wd * w); w -= v, with one ratio per conv
  of a stacked run (leading block axis), and plain momentum SGD for BN parameters and biases."""
  config = resnet50_lars_b32k.get_config()
  config.lars_eps = 0.0
  rng = np.random.default_rng(0)
  params = {
    'run': {'conv': {'kernel': rng.standard_normal((3, 3, 3, 2, 4)).astype(np.float32)}},
    'bn': {'scale': rng.standard_normal((3, 4)).astype(np.float32)},
    'head': {
      'kernel': rng.standard_normal((4, 5)).astype(np.float32),
      'bias': rng.standard_normal(5).astype(np.float32),
    },
  }
  grads = [jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32), params)]
  grads.append(jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32), params))
  lrs = (2.0, 3.0)
  tx = optim.create_optimizer(config)
  state, p = tx.init(params), params
  for g, lr in zip(grads, lrs, strict=True):
    state = optim.set_learning_rate(state, np.float32(lr))
    updates, state = jax.jit(tx.update)(g, state, p)
    p = optax.apply_updates(p, updates)
  excluded = {('bn', 'scale'), ('head', 'bias')}
  expected = _lars_reference(params, grads, lrs, {('run', 'conv', 'kernel')}, excluded)
  for key, value in traverse_util.flatten_dict(p).items():
    np.testing.assert_allclose(value, expected[key], rtol=2e-5, atol=1e-7, err_msg=str(key))


def test_lars_equals_optax_lars_without_stacked_blocks():
  config = resnet50_lars_b32k.get_config()
  config.lars_eps = 0.0
  rng = np.random.default_rng(1)
  params = {
    'conv': {'kernel': rng.standard_normal((3, 3, 2, 4)).astype(np.float32)},
    'bn': {'scale': np.ones(4, np.float32), 'bias': np.zeros(4, np.float32)},
  }
  grads = jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32), params)
  reference = optax.lars(
    1.5,
    weight_decay=1e-4,
    weight_decay_mask=optim.weight_decay_mask,
    trust_ratio_mask=optim.weight_decay_mask,
    momentum=0.9,
  )
  tx = optim.create_optimizer(config)
  state = optim.set_learning_rate(tx.init(params), np.float32(1.5))
  ours, _ = jax.jit(tx.update)(grads, state, params)
  theirs, _ = jax.jit(reference.update)(grads, reference.init(params), params)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def _lamb_config(weight_decay_bn_and_bias: bool):
  config = default.get_config()
  config.optimizer, config.weight_decay = 'lamb', 0.02
  config.weight_decay_bn_and_bias = weight_decay_bn_and_bias
  return config


def _updated(tx, state, params, grads):
  for g in grads:
    updates, state = jax.jit(tx.update)(g, state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_lamb_equals_optax_lamb_without_stacked_blocks():
  rng = np.random.default_rng(2)
  params = {
    'conv': {'kernel': rng.standard_normal((3, 3, 2, 4)).astype(np.float32)},
    'bn': {'scale': np.ones(4, np.float32), 'bias': np.zeros(4, np.float32)},
    'head': {'kernel': rng.standard_normal((4, 5)).astype(np.float32)},
  }
  grads = [
    jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32), params)
    for _ in range(2)
  ]
  tx = optim.create_optimizer(_lamb_config(True))
  ours = _updated(tx, optim.set_learning_rate(tx.init(params), np.float32(0.01)), params, grads)
  reference = optax.lamb(0.01, weight_decay=0.02)
  theirs = _updated(reference, reference.init(params), params, grads)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_lamb_trust_ratio_is_per_block_and_skips_parameters_without_decay():
  """A stacked kernel's blocks each move by lr * |w_block| (the first step's Adam update has
  norm 1 per element); BN parameters, out of weight decay, get the plain Adam step."""
  rng = np.random.default_rng(3)
  params = {
    'run': {'conv': {'kernel': rng.standard_normal((3, 3, 3, 2, 4)).astype(np.float32)}},
    'bn': {'scale': np.ones((3, 4), np.float32)},
  }
  grads = jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32), params)
  config = _lamb_config(False)
  config.weight_decay = 0.0
  tx = optim.create_optimizer(config)
  state = optim.set_learning_rate(tx.init(params), np.float32(0.01))
  updates, _ = jax.jit(tx.update)(grads, state, params)
  kernel, grad = params['run']['conv']['kernel'], grads['run']['conv']['kernel']
  adam = grad / (np.abs(grad) + 1e-6)  # first step: m / sqrt(v) = g / |g|
  for block in range(3):
    ratio = np.linalg.norm(kernel[block]) / np.linalg.norm(adam[block])
    np.testing.assert_allclose(
      updates['run']['conv']['kernel'][block], -0.01 * ratio * adam[block], rtol=1e-5
    )
  np.testing.assert_allclose(
    updates['bn']['scale'],
    -0.01 * grads['bn']['scale'] / (np.abs(grads['bn']['scale']) + 1e-6),
    rtol=1e-5,
  )


def _batchnorm_and_bias_paths(name, **kwargs):
  """Parameter paths of every BatchNorm module (found by intercepting their calls) and biases."""
  model = models.create_model(name, num_classes=10, **kwargs)
  batchnorms = set()

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, blocks.BatchNorm):
      batchnorms.add(context.module.path)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
  flat = traverse_util.flatten_dict(variables['params'])
  excluded = {k for k in flat if k[:-1] in batchnorms or k[-1] == 'bias'}
  return variables['params'], excluded, batchnorms


@pytest.mark.parametrize('name', ['cifar_resnet8', 'cifar_resnet20', 'resnet18', 'cifar_iresnet20'])
def test_weight_decay_mask_excludes_exactly_batchnorm_and_biases(name):
  """Stacked runs of blocks (cifar_resnet20, resnet18) have 2-D BatchNorm parameters."""
  params, excluded, batchnorms = _batchnorm_and_bias_paths(name)
  mask = traverse_util.flatten_dict(optim.weight_decay_mask(params))
  assert {k for k, decayed in mask.items() if not decayed} == excluded
  assert len(batchnorms) >= 7 and any(k[-1] == 'kernel' for k in mask)
  assert all(mask[k] for k in mask if k[-1] == 'kernel')


@pytest.mark.parametrize('optimizer', optim.OPTIMIZERS)
def test_masked_parameters_get_no_weight_decay(optimizer):
  """With zero gradients only weight decay moves a parameter: masked ones must stay put."""
  config = default.get_config()
  config.optimizer, config.weight_decay, config.weight_decay_bn_and_bias = optimizer, 0.1, False
  params = {
    'conv': {'kernel': np.ones((1, 1, 2, 2), np.float32)},
    'bn': {'scale': np.ones(2, np.float32), 'bias': np.ones(2, np.float32)},
  }
  tx = optim.create_optimizer(config)
  state = optim.set_learning_rate(tx.init(params), np.float32(0.1))
  updates, _ = tx.update(jax.tree.map(np.zeros_like, params), state, params)
  assert np.all(updates['bn']['scale'] == 0) and np.all(updates['bn']['bias'] == 0)
  assert np.all(updates['conv']['kernel'] < 0)


@pytest.mark.parametrize(
  ('field', 'value', 'valid'),
  [
    ('schedule', 'linear', "'step', 'cosine', 'constant', 'polynomial'"),
    ('optimizer', 'adam', "'sgd', 'lars', 'adamw', 'lamb'"),
    ('schedule_unit', 'epoch', "'steps', 'epochs'"),
  ],
)
def test_invalid_choice_lists_the_valid_ones(field, value, valid):
  config = default.get_config()
  config[field] = value
  with pytest.raises(ValueError, match=f'config.{field}={value!r}.*{valid}'):
    optim.create_learning_rate_fn(config, 1, 10)
  with pytest.raises(ValueError, match=valid):
    optim.create_optimizer(config)


def test_invalid_dtype_lists_the_valid_ones():
  config = default.get_config()
  config.dtype = 'float16'
  with pytest.raises(ValueError, match="config.dtype='float16'.*'auto', 'float32', 'bfloat16'"):
    train.compute_dtype(config)


@pytest.mark.slow
@pytest.mark.parametrize('recipe', [resnet50_b4096, resnet50_lars_b32k])
def test_large_batch_recipe_trains_three_steps_on_fake_data(recipe, tmp_path):
  """The recipe's optimizer, schedule and dtype at a tiny image size and batch; ResNet-18 for
  ResNet-50 to halve the compile time (ResNet-50's structure is tested in test_models.py)."""
  config = recipe.get_config()
  config.model = 'resnet18'
  config.dataset, config.image_size, config.batch_size, config.eval_batch_size = 'fake', 32, 8, 8
  config.bn_group_size = 4  # The recipe's groups of 32, scaled down with the batch.
  config.num_train_steps, config.num_epochs, config.log_every_steps = 3, 0, 1
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['step'] == 3 and summary['dtype'] == 'bfloat16'
  assert np.isfinite(summary['eval']['loss'])


@pytest.mark.slow
def test_main_reports_an_invalid_optimizer_in_one_paragraph(tmp_path):
  result = run_main(tmp_path / 'run', '--config.optimizer=adam', check=False)
  assert result.returncode == 1
  assert "config.optimizer='adam' is not one of 'sgd'" in result.stderr
  assert 'Traceback' not in result.stderr
