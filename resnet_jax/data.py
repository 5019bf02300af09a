"""The configured dataset as the training loop sees it: train batches from any step, eval passes.

TensorFlow is imported only when a TFDS dataset is read, so fake-data runs never need it.
"""

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple, get_args

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding

from resnet_jax import errors, fake_data, normalize

Batch = dict[str, np.ndarray]

# See `resnet_jax.evaluation` and configs/default.py.
EVAL_PROTOCOLS = ('center', '10crop', 'multiscale')


Augmentation = Literal['pad_crop', 'inception_crop']


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How one dataset is normalised and augmented (pixel statistics on the 0..255 scale)."""

  mean: tuple[float, ...]
  std: tuple[float, ...]
  # Training augmentation. 'pad_crop': pad `pad` pixels, random crop back (CIFAR).
  # 'inception_crop': random-resized crop of 8-100% area and 3/4-4/3 aspect, from JPEGs that
  # stay encoded until then. Evaluation resizes and crops as `data.eval_images` says.
  augmentation: Augmentation
  pad: int = 0
  flip: bool = True
  # Whether the images are read as JPEG bytes and decoded by the crop (ImageNet's files).
  encoded: bool = False

  def __post_init__(self):
    valid = get_args(Augmentation)
    if self.augmentation not in valid:
      raise errors.ConfigError(
        f'augmentation={self.augmentation!r} is not one of {", ".join(map(repr, valid))}.'
      )


def _scaled(values: tuple[float, ...]) -> tuple[float, ...]:
  return tuple(v * 255.0 for v in values)


DATASETS = {
  'digits': DatasetSpec(
    # Mirror images of digits are other digits: crop jitter only, no flip.
    _scaled((0.3053,)),
    _scaled((0.3759,)),
    'pad_crop',
    pad=1,
    flip=False,
  ),
  'cifar10': DatasetSpec(
    _scaled((0.4914, 0.4822, 0.4465)), _scaled((0.2470, 0.2435, 0.2616)), 'pad_crop', pad=4
  ),
  'cifar100': DatasetSpec(
    _scaled((0.5071, 0.4865, 0.4409)), _scaled((0.2673, 0.2564, 0.2762)), 'pad_crop', pad=4
  ),
  'imagenet2012': DatasetSpec(
    _scaled((0.485, 0.456, 0.406)), _scaled((0.229, 0.224, 0.225)), 'inception_crop', encoded=True
  ),
}
# `config.dataset` for DIR/<split>/<class>/<image> in `config.data_dir` (`resnet_jax.image_folder`).
FOLDER = 'folder'


def check_dataset_name(config: ml_collections.ConfigDict) -> None:
  """The checks of `config.dataset` that need no TensorFlow; TFDS names are checked on reading."""
  if not config.dataset:
    raise errors.ConfigError(
      f'config.dataset is empty: name a TFDS dataset (e.g. {", ".join(sorted(DATASETS))}), '
      f"'{FOLDER}' with --config.data_dir=DIR for a folder of images, or 'fake'."
    )
  if config.dataset == FOLDER and not config.data_dir:
    raise errors.ConfigError(
      f"config.dataset='{FOLDER}' reads DIR/<split>/<class>/<image>: give the folder as "
      '--config.data_dir=DIR.'
    )
  if config.augmentation and config.augmentation not in get_args(Augmentation):
    raise errors.ConfigError(
      f'config.augmentation={config.augmentation!r} is not one of '
      f"{', '.join(map(repr, get_args(Augmentation)))}, or '' for the dataset's own."
    )


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


class EvalImage(NamedTuple):
  """An image made of each evaluation example: the shorter side resized, the centre cropped.

  `whole`: the whole resized image instead (the longer side centre-cropped to `crop` if
  longer), at the top left of a `crop` x `crop` canvas of zeros, with its height and width.
  """

  resize: int  # Shorter side after an antialiased bilinear resize, pixels.
  crop: int  # Side of the central square kept, pixels.
  whole: bool = False


def eval_image_size(config: ml_collections.ConfigDict) -> int:
  """Side of the images the network classifies in 'center' and '10crop' evaluation."""
  return config.eval_image_size or config.image_size


def eval_images(config: ml_collections.ConfigDict) -> tuple[EvalImage, ...]:
  """The images the input pipeline makes of each evaluation example, by `config.eval_protocol`.

  'center': the centre crop. '10crop': the whole central square of the same resized image,
  from which the eval step takes its ten crops. 'multiscale': the image resized to each of
  `config.eval_sizes`, its central square, or with `config.eval_max_aspect` > 1 the whole image
  on a square canvas, so that batches have one shape per size.
  """
  protocol = config.eval_protocol
  if protocol not in EVAL_PROTOCOLS:
    raise errors.ConfigError(
      f'Unknown config.eval_protocol={protocol!r}; valid protocols: {", ".join(EVAL_PROTOCOLS)}.'
    )
  if not 0 < config.eval_crop_fraction <= 1:
    raise errors.ConfigError(
      f'config.eval_crop_fraction={config.eval_crop_fraction} must be in (0, 1]: the share of '
      "the resized image's shorter side that the centre crop keeps (0.875: 224 of 256)."
    )
  size = eval_image_size(config)
  resize = round(size / config.eval_crop_fraction)
  if protocol == 'center':
    return (EvalImage(resize, size),)
  if protocol == '10crop':
    return (EvalImage(resize, resize),)
  if not config.eval_sizes or min(config.eval_sizes) <= 0:
    raise errors.ConfigError(
      f"config.eval_protocol='multiscale' needs positive image sides in config.eval_sizes, got "
      f'{tuple(config.eval_sizes)}; He 2015 (Table 4) uses '
      "--config.eval_sizes='(224, 256, 384, 480, 640)'."
    )
  if config.eval_max_aspect < 1:
    raise errors.ConfigError(
      f'config.eval_max_aspect={config.eval_max_aspect} must be at least 1: the longest side '
      "'multiscale' keeps, in shorter sides (1: the central square; 2: images up to 2:1 whole)."
    )
  if config.eval_max_aspect == 1:
    return tuple(EvalImage(s, s) for s in config.eval_sizes)
  return tuple(EvalImage(s, round(s * config.eval_max_aspect), True) for s in config.eval_sizes)


class Data:
  """The configured dataset: train batches from any step, eval passes, shapes, epoch length."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.host_batch = config.batch_size // jax.process_count()
    self.host_eval_batch = config.eval_batch_size // jax.process_count()
    self.eval_images = eval_images(config)  # Checked before TensorFlow is imported.
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
