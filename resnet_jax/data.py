"""The configured dataset as the training loop sees it: train batches from any step, eval passes.

TensorFlow is imported only when a TFDS dataset is read, so fake-data runs never need it.
"""

import itertools
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding

from resnet_jax import datasets, fake_data, normalize

Batch = dict[str, np.ndarray]


def known_num_classes(config: ml_collections.ConfigDict) -> int:
  """`config.num_classes`, or fake data's number; 0 where only the dataset can tell."""
  if not config.num_classes and config.dataset == 'fake':
    return fake_data.NUM_CLASSES
  return config.num_classes


def with_num_classes(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with `num_classes=0` replaced by the dataset's number of classes.

  A copy: the run's config.json, summary and checkpoints then record the number it trained with.
  'fake' data has `fake_data.NUM_CLASSES`.
  """
  if config.num_classes:
    return config
  if config.dataset == 'fake':
    num_classes = known_num_classes(config)
  else:
    from resnet_jax import input_pipeline  # Imported here: it imports TensorFlow.

    num_classes = input_pipeline.num_classes(input_pipeline.get_builder(config))
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.num_classes = num_classes
  return resolved


class EvalData(NamedTuple):
  """One evaluation split as this process reads it.

  Every process runs `num_steps` batches per pass; examples past the end of its slice are
  padding with mask 0, so mask-weighted metrics count every example of the split once.
  """

  start_pass: Callable[[], Iterator[Batch]]
  num_steps: int


class Data:
  """The configured dataset: train batches from any step, eval passes, shapes, epoch length."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.host_batch = config.batch_size // jax.process_count()
    self.host_eval_batch = config.eval_batch_size // jax.process_count()
    self.eval_images = datasets.eval_images(config)  # Checked before TensorFlow is imported.
    if config.dataset == 'fake':
      self.pipeline = self.builder = None
      self.num_train_examples = fake_data.NUM_TRAIN_EXAMPLES
      self.pixel_stats = (
        (fake_data.MEAN,) * fake_data.CHANNELS,
        (fake_data.STD,) * fake_data.CHANNELS,
      )
    else:
      from resnet_jax import input_pipeline  # Imported here: it imports TensorFlow.

      self.pipeline = input_pipeline
      self.builder = input_pipeline.get_builder(config)
      self.num_train_examples = input_pipeline.num_train_examples(self.builder, config)
      spec = input_pipeline.dataset_spec(self.builder, config)
      self.pixel_stats = spec.mean, spec.std
    # Height, width, channels of one training image.
    self.image_shape = (config.image_size, config.image_size, len(self.pixel_stats[0]))

  def normalization(self, dtype: str = 'float32') -> normalize.Normalization:
    """How the steps make the network's input of this dataset's uint8 batches."""
    return normalize.Normalization(*self.pixel_stats, dtype)

  @property
  def steps_per_epoch(self) -> int:
    return max(self.num_train_examples // self.config.batch_size, 1)

  def train(self, start_step: int) -> Iterator[Batch]:
    if self.pipeline is None:
      return fake_data.train_batches(self.config, self.host_batch, start_step)
    return self.pipeline.train_batches(self.builder, self.config, self.host_batch, start_step)

  def eval(self) -> EvalData:
    if self.pipeline is None:
      batches = fake_data.eval_batches(self.config, self.host_eval_batch, self.eval_images)
    else:
      batches = self.pipeline.eval_batches(
        self.builder, self.config, self.host_eval_batch, self.eval_images
      )
    return EvalData(*batches)


def to_global(batch: Batch, sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles each process's slice into one global array sharded over the mesh."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def prefetch(iterator: Iterator, size: int) -> Iterator:
  """Keeps `size` batches on their way to the devices while the current step runs."""
  queue = list(itertools.islice(iterator, size))
  for item in iterator:
    queue.append(item)
    yield queue.pop(0)
  yield from queue
