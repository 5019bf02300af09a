"""Input pipelines: shapes, dtypes and value ranges; augmentation in training only."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import cifar10_resnet20, resnet50
from resnet_jax import input_pipeline


def _first(iterator):
  return next(iter(iterator))


def test_digits_batches_have_documented_shapes_and_ranges(digits_config):
  builder = input_pipeline.get_builder(digits_config)
  assert builder.info.splits['train'].num_examples == 1437
  assert builder.info.splits['test'].num_examples == 360
  batch = _first(input_pipeline.train_batches(builder, digits_config, 32))
  assert batch['image'].shape == (32, 8, 8, 1) and batch['image'].dtype == np.float32
  assert batch['label'].shape == (32,) and batch['label'].dtype == np.int32
  # Normalised pixels: 0 maps to -mean/std, 255 to (255 - mean)/std.
  spec = input_pipeline.DATASETS['digits']
  low, high = -spec.mean[0] / spec.std[0], (255 - spec.mean[0]) / spec.std[0]
  assert low - 1e-4 <= batch['image'].min() and batch['image'].max() <= high + 1e-4
  assert set(batch['label']) <= set(range(10))


def test_augmentation_in_training_only(digits_config):
  builder = input_pipeline.get_builder(digits_config)
  start_pass, _ = input_pipeline.eval_batches(builder, digits_config, 360)
  first, second = _first(start_pass()), _first(start_pass())
  np.testing.assert_array_equal(first['image'], second['image'])  # eval is deterministic
  # Training: the same pipeline without augmentation would reproduce raw images exactly.
  train = _first(input_pipeline.train_batches(builder, digits_config, 1437))
  raw = tfds.as_numpy(builder.as_dataset(split='train', batch_size=-1))
  spec = input_pipeline.DATASETS['digits']
  raw_images = (raw['image'].astype(np.float32) - spec.mean[0]) / spec.std[0]
  raw_set = {img.tobytes() for img in raw_images}
  shifted = sum(img.tobytes() not in raw_set for img in train['image'])
  assert shifted > 0.5 * len(train['image'])  # random crops move most images


def test_training_order_is_a_function_of_the_step(digits_config):
  builder = input_pipeline.get_builder(digits_config)
  straight = input_pipeline.train_batches(builder, digits_config, 64)
  batches = [next(straight) for _ in range(25)]  # 22 steps per epoch: crosses an epoch
  resumed = input_pipeline.train_batches(builder, digits_config, 64, start_step=21)
  for expected in batches[21:]:
    got = next(resumed)
    np.testing.assert_array_equal(got['image'], expected['image'])
    np.testing.assert_array_equal(got['label'], expected['label'])
  assert not np.array_equal(batches[0]['label'], batches[22]['label'])  # reshuffled per epoch


@pytest.mark.parametrize('config_module', [cifar10_resnet20, resnet50], ids=['cifar10', 'imagenet'])
def test_tfds_mock_data(config_module, tmp_path, monkeypatch):
  # Mocked builders know nothing of the disk: call them prepared (ImageNet's needs manual steps).
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'is_prepared', lambda self: True)
  config = config_module.get_config()
  config.data_dir = str(tmp_path)
  config.image_size = 32 if config.dataset == 'cifar10' else 64
  channels = 3
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    builder = input_pipeline.get_builder(config)
    # Mocked builders know no split sizes; give them the mocked ones.
    splits = [config.train_split, config.eval_split]
    builder.info.set_splits(
      tfds.core.SplitDict(
        [tfds.core.SplitInfo(name=s, shard_lengths=[40], num_bytes=0) for s in splits]
      )
    )
    train = _first(input_pipeline.train_batches(builder, config, 8))
    start_pass, num_steps = input_pipeline.eval_batches(builder, config, 16)
    evals = list(start_pass())
  size = config.image_size
  assert train['image'].shape == (8, size, size, channels) and train['image'].dtype == np.float32
  assert np.isfinite(train['image']).all() and np.abs(train['image']).max() < 5
  assert len(evals) == num_steps == 3
  assert evals[0]['image'].shape == (16, size, size, channels)
  assert sum(b['mask'].sum() for b in evals) == 40
