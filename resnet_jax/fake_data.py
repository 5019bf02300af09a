"""Synthetic batches of the configured shape, for throughput runs and tests without TensorFlow."""

from collections.abc import Callable, Iterator

import ml_collections
import numpy as np

# Nominal epoch length (ImageNet's), so that epoch-based schedules behave as on ImageNet.
NUM_TRAIN_EXAMPLES = 1_281_167
# Evaluation on fake data covers this many batches per pass.
NUM_EVAL_STEPS = 2
# Fake batches are RGB.
CHANNELS = 3


def _batch(config: ml_collections.ConfigDict, batch_size: int, seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  size = config.image_size
  return {
    'image': rng.standard_normal((batch_size, size, size, CHANNELS), dtype=np.float32),
    'label': rng.integers(0, config.num_classes, (batch_size,), dtype=np.int32),
  }


def train_batches(
  config: ml_collections.ConfigDict, host_batch_size: int, start_step: int = 0
) -> Iterator[dict[str, np.ndarray]]:
  """The same random batch forever: the host costs nothing, so the device sets the pace."""
  del start_step  # Every step sees the same batch.
  batch = _batch(config, host_batch_size, config.seed)
  while True:
    yield batch


def eval_batches(
  config: ml_collections.ConfigDict, host_batch_size: int
) -> tuple[Callable[[], Iterator[dict[str, np.ndarray]]], int]:
  batch = _batch(config, host_batch_size, config.seed + 1)
  batch['mask'] = np.ones((host_batch_size,), np.float32)
  return (lambda: iter([batch] * NUM_EVAL_STEPS)), NUM_EVAL_STEPS
