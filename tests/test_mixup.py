"""Mixup and CutMix of a batch, the sigmoid loss, and the train step with them on and off."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from resnet_jax import mixup, models, optim, train

N, H, W = 8, 12, 16


def _images() -> np.ndarray:
  return np.random.default_rng(0).normal(size=(N, H, W, 3)).astype(np.float32)


@functools.partial(jax.jit, static_argnums=1)
def _mix_many(rngs, mix):
  return jax.vmap(lambda rng: mixup.mix(jnp.asarray(_images()), rng, mix))(rngs)


def _rngs(count: int) -> jax.Array:
  return jax.random.split(jax.random.key(0), count)


def test_mixup_blends_each_image_with_its_mirror_by_the_ratio():
  images = _images()
  mixed, ratio = _mix_many(_rngs(500), mixup.Mix(mixup_alpha=0.2))
  ratio = np.asarray(ratio)
  expected = (
    ratio[:, None, None, None, None] * images
    + (1 - ratio[:, None, None, None, None]) * (images[::-1])
  )
  np.testing.assert_allclose(mixed, expected, rtol=1e-5, atol=1e-5)
  # Beta(0.2, 0.2): mean 1/2, variance 1/(4 (2 alpha + 1)) = 0.179, most mass near 0 and 1.
  assert abs(ratio.mean() - 0.5) < 0.06 and abs(ratio.var() - 1 / 5.6) < 0.03
  assert np.mean((ratio < 0.1) | (ratio > 0.9)) > 0.5


def test_cutmix_box_area_is_one_minus_the_ratio():
  images = _images()
  mixed, ratio = _mix_many(_rngs(500), mixup.Mix(cutmix_alpha=1.0))
  mixed, ratio = np.asarray(mixed), np.asarray(ratio)
  from_other = np.all(mixed == images[::-1], axis=-1) & ~np.all(mixed == images, axis=-1)
  own = np.all(mixed == images, axis=-1)
  assert np.all(from_other | own)
  # The same box in every image of the batch, and its share of the pixels is 1 - ratio.
  np.testing.assert_array_equal(from_other, np.broadcast_to(from_other[:, :1], from_other.shape))
  np.testing.assert_allclose(1 - from_other[:, 0].mean(axis=(1, 2)), ratio, atol=1e-6)
  boxes = from_other[:, 0]
  heights, widths = boxes.any(axis=2).sum(axis=1), boxes.any(axis=1).sum(axis=1)
  np.testing.assert_array_equal(heights * widths, boxes.sum(axis=(1, 2)))
  # Beta(1, 1) is uniform: before clipping the box is sqrt(1 - lambda) of each side, about
  # H W (1 - lambda) pixels; clipping to the image only shrinks it.
  assert 0.4 < ratio.mean() < 0.75


def test_switch_prob_picks_cutmix_that_often():
  images = _images()
  mixed, _ = _mix_many(_rngs(1000), mixup.Mix(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.3))
  # A CutMix batch has pixels that are exactly the image's own or its mirror's.
  cut = np.any(np.all(np.asarray(mixed) == images, axis=-1), axis=(1, 2, 3))
  assert abs(cut.mean() - 0.3) < 0.05


def test_targets_hold_the_ratio_on_the_own_label_and_the_rest_on_the_mirror_label():
  labels = jnp.array([0, 1, 2, 3, 3, 2, 9, 5])
  targets = np.asarray(mixup.targets(labels, mixup.partners(labels), jnp.float32(0.7), 10))
  np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
  assert targets[0, 0] == pytest.approx(0.7) and targets[0, 5] == pytest.approx(0.3)
  assert targets[3, 3] == pytest.approx(1.0)  # mixed with an image of the same class


def test_sigmoid_loss_is_the_mean_binary_cross_entropy_of_smoothed_targets():
  rng = np.random.default_rng(1)
  logits = rng.normal(0, 3, (4, 10)).astype(np.float32)
  labels = np.array([0, 3, 9, 3])
  smoothing = 0.1
  targets = np.full((4, 10), smoothing / 10)
  targets[np.arange(4), labels] += 1 - smoothing
  z = logits.astype(np.float64)
  expected = np.mean(targets * np.log1p(np.exp(-z)) + (1 - targets) * np.log1p(np.exp(z)), axis=1)
  got = train.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), smoothing, 'sigmoid_xent')
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Soft targets (mixup) are taken as they are, then smoothed the same way.
  labels = jnp.asarray(labels)
  soft = np.asarray(mixup.targets(labels, mixup.partners(labels), jnp.float32(0.6), 10))
  soft_smoothed = (1 - smoothing) * soft + smoothing / 10
  expected = np.mean(
    soft_smoothed * np.log1p(np.exp(-z)) + (1 - soft_smoothed) * np.log1p(np.exp(z)), axis=1
  )
  got = train.cross_entropy(jnp.asarray(logits), jnp.asarray(soft), smoothing, 'sigmoid_xent')
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  softmax = train.cross_entropy(jnp.asarray(logits), jnp.asarray(soft), smoothing)
  np.testing.assert_allclose(
    softmax, optax.softmax_cross_entropy(logits, soft_smoothed.astype(np.float32)), rtol=1e-6
  )


def _step_outputs(config, batch):
  model = models.create_model('cifar_resnet8', num_classes=10)
  variables = model.init(jax.random.key(0), batch['image'], train=False)
  state = train.TrainState.create(
    apply_fn=model.apply,
    params=variables['params'],
    batch_stats=variables['batch_stats'],
    tx=optim.create_optimizer(config),
  )
  step = train.jit_train_step(config, train.make_mesh())
  return step(state, batch, jax.random.key(config.seed), np.float32(0.1))


def test_train_step_mixes_and_changes_the_loss_only_when_asked():
  config = default.get_config()
  assert not mixup.from_config(config).active and config.loss == 'softmax_xent'
  rng = np.random.default_rng(2)
  batch = {
    'image': rng.normal(size=(8, 8, 8, 3)).astype(np.float32),
    'label': rng.integers(0, 10, 8).astype(np.int32),
  }
  state, metrics = _step_outputs(config, batch)
  # Off: the loss of the unmixed batch, computed here from the same initial weights.
  model = models.create_model('cifar_resnet8', num_classes=10)
  variables = model.init(jax.random.key(0), batch['image'], train=False)
  logits, _ = model.apply(variables, batch['image'], train=True, mutable=['batch_stats'])
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
  assert float(metrics['loss']) == pytest.approx(float(expected), rel=1e-5)
  # A switch probability with both alphas 0 mixes nothing: the same bits.
  config.mixup_switch_prob = 0.9
  _, same = _step_outputs(config, batch)
  assert float(same['loss']) == float(metrics['loss'])
  config.mixup_alpha, config.cutmix_alpha, config.loss = 0.2, 1.0, 'sigmoid_xent'
  _, mixed = _step_outputs(config, batch)
  assert float(mixed['loss']) != float(metrics['loss'])


def test_top1_of_mixed_batches_counts_the_images_own_labels():
  labels = jnp.arange(8, dtype=jnp.int32)

  def predicts_the_mirror_label(variables, images, **kwargs):
    del kwargs
    logits = 10.0 * jax.nn.one_hot(labels[::-1], 10) + 0.0 * variables['params']['w']
    return logits + 0.0 * images.mean(), {'batch_stats': {}}

  state = train.TrainState.create(
    apply_fn=predicts_the_mirror_label,
    params={'w': jnp.zeros(())},
    batch_stats={},
    tx=optim.create_optimizer(default.get_config()),
  )
  batch = {'image': jnp.asarray(_images()), 'label': labels}
  step = jax.jit(functools.partial(train.train_step, label_smoothing=0.0, mix=mixup.Mix(1.0)))
  ratios = []
  for seed in range(6):
    _, metrics = step(state, batch, jax.random.key(seed), np.float32(0.1))
    assert float(metrics['top1']) == 0.0
    # The step's draw (keyed by seed and step 0): the mirror's share is the larger at times.
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0), 1)
    ratios.append(float(mixup.mix(batch['image'], key, mixup.Mix(1.0))[1]))
  assert min(ratios) < 0.5 < max(ratios)


@pytest.mark.slow
def test_mixing_on_eight_devices_equals_one_device(tmp_path):
  """The pairs span devices (image i with image N - 1 - i); the draws are the same anywhere."""
  import eight_devices

  runs = eight_devices.run('train_mixed', tmp_path / 'runs.npz')
  names = sorted(k.split('/', 1)[1] for k in runs if k.startswith('1/'))
  assert len(names) > 20
  for name in names:
    np.testing.assert_allclose(runs[f'1/{name}'], runs[f'8/{name}'], rtol=2e-5, atol=2e-6)
  losses = [float(runs[f'8/loss{i}']) for i in range(3)]
  assert len(set(losses)) == 3
