"""The recipe configs of later papers: each passes main's checks as written, and trains a few
steps on fake data with its options on (mixup, EMA, LAMB, the sigmoid loss; the per-image
augmentations are tf.data's, which fake data skips)."""

import importlib
import math

import numpy as np
import pytest

from resnet_jax import train

# Config -> (recipe, published ResNet-50 top-1 its docstring cites, if any).
RECIPES = {
  'resnet50_tv2': ('torchvision_v2', '80.858%'),
  'iresnet50_tv2': ('torchvision_v2', None),
  'resnet50_rsb_a3': ('rsb_a3', '78.1%'),
  'iresnet50_rsb_a3': ('rsb_a3', None),
}


def _config(name):
  return importlib.import_module(f'configs.{name}').get_config()


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_configs_pass_the_checks_and_cite_their_source(name):
  config = _config(name)
  recipe, published = RECIPES[name]
  assert config.recipe == recipe
  train.check_config(config)
  train.create_model(config)
  if published:
    assert published in importlib.import_module(f'configs.{name}').__doc__


def test_the_recipes_train_and_test_at_their_published_sizes():
  tv2, a3 = _config('resnet50_tv2'), _config('resnet50_rsb_a3')
  assert (tv2.image_size, tv2.eval_image_size, tv2.eval_resize_size) == (176, 224, 232)
  assert (a3.image_size, a3.eval_image_size, a3.eval_resize_size) == (160, 224, 235)
  assert a3.eval_resize_size == math.floor(224 / 0.95)  # timm: floor(img_size / crop_pct).
  # torchvision's EMA: decay 0.99998 adjusted for 8 GPUs x 128 images, every 32 steps, 600 epochs.
  assert tv2.ema_every_steps == 32
  assert tv2.ema_decay == pytest.approx(1 - (1 - 0.99998) * 8 * 128 * 32 / 600, abs=1e-6)
  assert (a3.optimizer, a3.loss, a3.learning_rate, a3.batch_size) == (
    'lamb',
    'sigmoid_xent',
    8e-3,
    2048,
  )


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_trains_a_few_steps_on_fake_data(name, tmp_path):
  config = _config(name)
  config.update(
    dataset='fake',
    image_size=32,
    eval_image_size=32,
    eval_resize_size=36,
    batch_size=8,
    eval_batch_size=8,
    bn_group_size=4,
    num_train_steps=2,
    num_epochs=0,
    log_every_steps=1,
  )
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['step'] == 2 and summary['config']['recipe'] == RECIPES[name][0]
  assert np.isfinite(summary['eval']['loss'])
  if config.ema_decay:
    assert np.isfinite(summary['ema_eval']['loss'])
