"""Synthetic batches of the configured shape, for throughput runs and tests without TensorFlow."""

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ml_collections
import numpy as np

# Nominal epoch length (ImageNet's), so that epoch-based schedules behave as on ImageNet.
NUM_TRAIN_EXAMPLES = 1_281_167
# Fake batches are RGB.
CHANNELS = 3
# Classes of fake labels when `config.num_classes` is 0 (from the dataset): the default before
# 0 was, so that throughput commands that set no number measure what they measured.
NUM_CLASSES = 10
# Fake pixels are uniform over 0..255, uint8 as the input pipeline's: these are their statistics.
MEAN, STD = 127.5, float(np.sqrt((256**2 - 1) / 12))


def _images(rng: np.random.Generator, batch_size: int, size: int) -> np.ndarray:
  return rng.integers(0, 256, (batch_size, size, size, CHANNELS), dtype=np.uint8)


def _labels(rng: np.random.Generator, config: ml_collections.ConfigDict, batch_size: int):
  return rng.integers(0, config.num_classes or NUM_CLASSES, (batch_size,), dtype=np.int32)


def train_batches(
  config: ml_collections.ConfigDict, host_batch_size: int, start_step: int = 0
) -> Iterator[dict[str, np.ndarray]]:
  """The same random batch forever: the host costs nothing, so the device sets the pace."""
  del start_step  # Every step sees the same batch.
  rng = np.random.default_rng(config.seed)
  batch = {
    'image': _images(rng, host_batch_size, config.image_size),
    'label': _labels(rng, config, host_batch_size),
  }
  while True:
    yield batch


def eval_batches(
  config: ml_collections.ConfigDict, host_batch_size: int, images: Sequence[Any]
) -> tuple[Callable[[], Iterator[dict[str, Any]]], int]:
  """`config.fake_eval_batches` copies of one batch with an image of each size in `images`.

  `images` are `datasets.EvalImage`s; a throughput run needs only a short evaluation.
  """
  rng = np.random.default_rng(config.seed + 1)
  views = tuple(_images(rng, host_batch_size, image.crop) for image in images)
  batch = {
    'image': views[0] if len(views) == 1 else views,
    'label': _labels(rng, config, host_batch_size),
    'mask': np.ones((host_batch_size,), np.float32),
  }
  if any(image.whole for image in images):  # Whole images that fill their canvas.
    sizes = tuple(np.full((host_batch_size, 2), image.crop, np.int32) for image in images)
    batch['size'] = sizes[0] if len(sizes) == 1 else sizes
  num_steps = config.fake_eval_batches
  return (lambda: iter([batch] * num_steps)), num_steps
