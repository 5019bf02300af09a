"""The dataset table and what evaluation makes of each example, with the checks of their fields.

No TensorFlow here: `data` and `input_pipeline` both read this table, and the config is checked
against it before TensorFlow is imported.
"""

import dataclasses
import math
from typing import Literal, NamedTuple, get_args

import ml_collections

from resnet_jax import errors
from resnet_jax.config_checks import check_choice, check_ranges

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
  # stay encoded until then. Evaluation resizes and crops as `eval_images` says.
  augmentation: Augmentation
  pad: int = 0
  flip: bool = True
  # Whether the images are read as JPEG bytes and decoded by the crop (ImageNet's files).
  encoded: bool = False

  def __post_init__(self):
    check_choice('augmentation', self.augmentation, get_args(Augmentation))


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


def eval_resize_size(config: ml_collections.ConfigDict) -> int:
  """Shorter side of the image whose centre 'center' and '10crop' evaluation crops."""
  if config.eval_resize_size:
    return config.eval_resize_size
  return round(eval_image_size(config) / config.eval_crop_fraction)


def eval_images(config: ml_collections.ConfigDict) -> tuple[EvalImage, ...]:
  """The images the input pipeline makes of each evaluation example, by `config.eval_protocol`.

  'center': the centre crop. '10crop': the whole central square of the same resized image,
  from which the eval step takes its ten crops. 'multiscale': the image resized to each of
  `config.eval_sizes`, its central square, or with `config.eval_max_aspect` > 1 the whole image
  on a square canvas, so that batches have one shape per size.
  """
  protocol = config.eval_protocol
  check_choice('config.eval_protocol', protocol, EVAL_PROTOCOLS)
  if not 0 < config.eval_crop_fraction <= 1:
    raise errors.ConfigError(
      f'config.eval_crop_fraction={config.eval_crop_fraction} must be in (0, 1]: the share of '
      "the resized image's shorter side that the centre crop keeps (0.875: 224 of 256)."
    )
  size = eval_image_size(config)
  resize = eval_resize_size(config)
  if resize < size:
    raise errors.ConfigError(
      f'config.eval_resize_size={resize} is smaller than the {size}-pixel crop taken from it: '
      'use a resize of at least eval_image_size (or image_size), or 0 for eval_image_size / '
      'eval_crop_fraction.'
    )
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


# `config.crop_sampler`: how the random-resized crop of ImageNet training images is drawn.
CROP_SAMPLERS = ('inception', 'torchvision')

# The data fields: (lowest, highest, whether the lowest is allowed).
RANGES = {
  'batch_size': (1, math.inf, True),
  'eval_batch_size': (1, math.inf, True),
  'image_size': (1, math.inf, True),
  'num_classes': (0, math.inf, True),
  'eval_image_size': (0, math.inf, True),
  'eval_resize_size': (0, math.inf, True),
  'fake_eval_batches': (1, math.inf, True),
  'shuffle_buffer_size': (1, math.inf, True),
  'prefetch': (0, math.inf, True),
  # The per-image policies of `resnet_jax.augment`.
  'randaugment_layers': (0, math.inf, True),
  'randaugment_magnitude': (0, 30, True),
  'random_erasing': (0, 1, True),
}


def validate(config: ml_collections.ConfigDict) -> None:
  """The checks of the data fields that need no TensorFlow; TFDS names are checked on reading."""
  check_ranges(config, RANGES)
  if config.num_classes == 1:
    raise errors.ConfigError(
      "config.num_classes=1 must be at least 2, or 0 for the dataset's number of classes."
    )
  check_name(config)
  check_choice('config.augmentation', config.augmentation, ('', *get_args(Augmentation)))
  check_choice('config.crop_sampler', config.crop_sampler, CROP_SAMPLERS)
  if config.randaugment_layers and config.trivial_augment:
    raise errors.ConfigError(
      'config.randaugment_layers and config.trivial_augment both choose the per-image policy '
      '(a recipe uses one: RandAugment in ResNet strikes back, TrivialAugmentWide in '
      "torchvision's): set randaugment_layers=0 or trivial_augment=False."
    )
  eval_images(config)


def check_name(config: ml_collections.ConfigDict) -> None:
  """`config.dataset` and what it needs beside it; TFDS names are checked on reading."""
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
