"""RandAugment, TrivialAugmentWide and random erasing of training images, in tf.data.

The operations, magnitude bins and rounding are torchvision's (`transforms.RandAugment`,
`TrivialAugmentWide`, `RandomErasing`), on uint8 images before normalisation, and are tested
against torchvision's outputs. Every draw is a stateless TF op keyed by the example's seed, so a
resumed run augments each example exactly as the uninterrupted run did. Neither Keras's layers
nor TF Model Garden's policies can be keyed that way, nor have torchvision's definitions
(benchmarks/NOTES.md, section on augmentation).
"""

import dataclasses
import math

import ml_collections
import numpy as np
import tensorflow as tf

# torchvision's operations, in its order (the index a policy draws).
OPS = (
  'Identity',
  'ShearX',
  'ShearY',
  'TranslateX',
  'TranslateY',
  'Rotate',
  'Brightness',
  'Color',
  'Contrast',
  'Sharpness',
  'Posterize',
  'Solarize',
  'AutoContrast',
  'Equalize',
)
SIGNED = frozenset(OPS[1:10])
# Magnitude bins of both policies (torchvision's default `num_magnitude_bins`).
NUM_BINS = 31


@dataclasses.dataclass(frozen=True)
class Policy:
  """The augmentation of `config` (configs/default.py documents the fields)."""

  randaugment_layers: int = 0
  randaugment_magnitude: int = 9
  trivial_augment: bool = False
  random_erasing: float = 0.0

  @property
  def active(self) -> bool:
    return bool(self.randaugment_layers or self.trivial_augment or self.random_erasing)


# No augmentation beyond the crop and flip.
NONE = Policy()


def policy(config: ml_collections.ConfigDict) -> Policy:
  """`config`'s fields, checked by `datasets.validate`."""
  return Policy(
    config.randaugment_layers,
    config.randaugment_magnitude,
    config.trivial_augment,
    config.random_erasing,
  )


def magnitudes(op: str, wide: bool, height: int, width: int) -> np.ndarray:
  """The NUM_BINS magnitudes of `op` (one for the operations without), torchvision's tables:
  RandAugment's, or TrivialAugmentWide's (`wide`) wider ranges."""
  linear = {
    'ShearX': 0.99 if wide else 0.3,
    'ShearY': 0.99 if wide else 0.3,
    'TranslateX': 32.0 if wide else 150.0 / 331.0 * width,
    'TranslateY': 32.0 if wide else 150.0 / 331.0 * height,
    'Rotate': 135.0 if wide else 30.0,
    'Brightness': 0.99 if wide else 0.9,
    'Color': 0.99 if wide else 0.9,
    'Contrast': 0.99 if wide else 0.9,
    'Sharpness': 0.99 if wide else 0.9,
  }
  if op in linear:
    return np.linspace(0.0, linear[op], NUM_BINS, dtype=np.float32)
  bins = np.arange(NUM_BINS, dtype=np.float32)
  if op == 'Posterize':  # Bits kept: 8 down to 2 (wide) or 4.
    return 8 - np.round(bins / np.float32((NUM_BINS - 1) / (6 if wide else 4)))
  if op == 'Solarize':  # Threshold.
    return np.linspace(255.0, 0.0, NUM_BINS, dtype=np.float32)
  return np.zeros(1, np.float32)


def _blend(image: tf.Tensor, other: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """factor * image + (1 - factor) * other, clipped and truncated to uint8 as torchvision's
  `_blend` (1 - factor in float64, as Python computes it there)."""
  ratio = tf.cast(factor, tf.float32)
  rest = tf.cast(1.0 - tf.cast(factor, tf.float64), tf.float32)
  blended = ratio * tf.cast(image, tf.float32) + rest * tf.cast(other, tf.float32)
  return tf.cast(tf.clip_by_value(blended, 0.0, 255.0), tf.uint8)


def _grey(image: tf.Tensor) -> tf.Tensor:
  """torchvision's luma of an RGB uint8 image, truncated to uint8, (H, W, 1)."""
  r, g, b = tf.unstack(tf.cast(image, tf.float32), axis=-1)
  return tf.cast(0.2989 * r + 0.587 * g + 0.114 * b, tf.uint8)[..., None]


def _transform(image: tf.Tensor, matrix: list) -> tf.Tensor:
  """Nearest-neighbour resampling with fill 0: output pixel (x, y) takes input pixel
  (a x + b y + c, d x + e y + f) of `matrix` [a, b, c, d, e, f] (pixel centres at integers)."""
  transform = tf.cast(tf.stack([*matrix, 0.0, 0.0]), tf.float32)[None]
  return tf.raw_ops.ImageProjectiveTransformV3(
    images=image[None],
    transforms=transform,
    output_shape=tf.shape(image)[:2],
    fill_value=0.0,
    interpolation='NEAREST',
    fill_mode='CONSTANT',
  )[0]


def _shear(image: tf.Tensor, shear: tf.Tensor, axis: int) -> tf.Tensor:
  """torchvision's shear by `shear` (the tangent) about the top left corner of the image."""
  # Input x = output x + shear * y in corner coordinates, whose pixel centres are at i + 0.5.
  if axis == 0:
    return _transform(image, [1.0, shear, 0.5 * shear, 0.0, 1.0, 0.0])
  return _transform(image, [1.0, 0.0, 0.0, shear, 1.0, 0.5 * shear])


def _translate(image: tf.Tensor, pixels: tf.Tensor, axis: int) -> tf.Tensor:
  shift = -tf.cast(tf.cast(pixels, tf.int32), tf.float32)  # int(): truncated towards zero
  if axis == 0:
    return _transform(image, [1.0, 0.0, shift, 0.0, 1.0, 0.0])
  return _transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, shift])


def _rotate(image: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
  """Counter-clockwise by `degrees` about the image centre, the corners cut off."""
  angle = degrees * (math.pi / 180.0)
  cos, sin = tf.cos(angle), tf.sin(angle)
  height, width = (tf.cast(s, tf.float32) for s in tf.unstack(tf.shape(image)[:2]))
  cx, cy = (width - 1) / 2, (height - 1) / 2
  return _transform(
    image, [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy]
  )


def _sharpness(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """Blend with the image smoothed by [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (rounded), whose
  border pixels are the image's own."""
  channels = image.shape[-1]
  kernel = np.ones((3, 3), np.float32)
  kernel[1, 1] = 5.0
  kernel = np.tile((kernel / kernel.sum())[:, :, None, None], (1, 1, channels, 1))
  pixels = tf.cast(image, tf.float32)[None]
  smooth = tf.round(tf.nn.depthwise_conv2d(pixels, kernel, [1, 1, 1, 1], 'VALID')[0])
  inner = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  rows, cols = tf.range(height)[:, None, None], tf.range(width)[None, :, None]
  border = (rows == 0) | (rows == height - 1) | (cols == 0) | (cols == width - 1)
  degenerate = tf.where(border, tf.cast(image, tf.float32), inner)
  return _blend(image, degenerate, factor)


def _autocontrast(image: tf.Tensor) -> tf.Tensor:
  """Each channel stretched to 0..255; a constant channel unchanged."""
  pixels = tf.cast(image, tf.float32)
  low = tf.reduce_min(pixels, axis=(0, 1))
  high = tf.reduce_max(pixels, axis=(0, 1))
  constant = high == low
  # 255 times the reciprocal, as torch divides a number by a tensor (254 instead of 255 else).
  scale = tf.where(constant, 1.0, 255.0 * tf.math.reciprocal(tf.where(constant, 1.0, high - low)))
  low = tf.where(constant, 0.0, low)
  return tf.cast(tf.clip_by_value((pixels - low) * scale, 0.0, 255.0), tf.uint8)


def _equalize_channel(channel: tf.Tensor) -> tf.Tensor:
  """PIL's histogram equalisation of one uint8 channel, as torchvision's `_scale_channel`."""
  values = tf.cast(channel, tf.int32)
  histogram = tf.math.bincount(tf.reshape(values, [-1]), minlength=256, maxlength=256)
  # The step leaves out the count of the last value present.
  last = tf.reduce_max(tf.where(histogram > 0, tf.range(256), 0))
  step = (tf.reduce_sum(histogram) - histogram[last]) // 255
  safe_step = tf.maximum(step, 1)
  lut = (tf.cumsum(histogram) + safe_step // 2) // safe_step
  lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
  return tf.where(step == 0, channel, tf.cast(tf.gather(lut, values), tf.uint8))


def _equalize(image: tf.Tensor) -> tf.Tensor:
  return tf.stack([_equalize_channel(c) for c in tf.unstack(image, axis=-1)], axis=-1)


def apply_op(image: tf.Tensor, index: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
  """Operation OPS[index] with its (signed) magnitude, on a uint8 (H, W, C) image, C 1 or 3."""
  image = tf.convert_to_tensor(image)
  magnitude = tf.cast(magnitude, tf.float32)
  factor = 1.0 + tf.cast(magnitude, tf.float64)
  rgb = image.shape[-1] == 3
  branches = {
    'Identity': lambda: image,
    'ShearX': lambda: _shear(image, magnitude, 0),
    'ShearY': lambda: _shear(image, magnitude, 1),
    'TranslateX': lambda: _translate(image, magnitude, 0),
    'TranslateY': lambda: _translate(image, magnitude, 1),
    'Rotate': lambda: _rotate(image, magnitude),
    'Brightness': lambda: _blend(image, tf.zeros_like(image), factor),
    # torchvision leaves grey-level images as they are.
    'Color': lambda: _blend(image, _grey(image), factor) if rgb else image,
    'Contrast': lambda: _blend(
      image, tf.reduce_mean(tf.cast(_grey(image) if rgb else image, tf.float32)), factor
    ),
    'Sharpness': lambda: _sharpness(image, factor),
    'Posterize': lambda: tf.bitwise.bitwise_and(
      image, tf.cast(256 - 2 ** (8 - tf.cast(magnitude, tf.int32)), tf.uint8)
    ),
    'Solarize': lambda: tf.where(tf.cast(image, tf.float32) >= magnitude, 255 - image, image),
    'AutoContrast': lambda: _autocontrast(image),
    'Equalize': lambda: _equalize(image),
  }
  return tf.switch_case(tf.cast(index, tf.int32), [branches[op] for op in OPS])


def _tables(wide: bool, height: int, width: int) -> tuple[tf.Tensor, tf.Tensor]:
  """(Magnitudes of every operation, NUM_BINS x len(OPS); whether each is signed)."""
  table = np.stack([np.resize(magnitudes(op, wide, height, width), NUM_BINS) for op in OPS], 1)
  return tf.constant(table), tf.constant([op in SIGNED for op in OPS])


def _random_op(image: tf.Tensor, seed: tf.Tensor, bin_index, wide: bool) -> tf.Tensor:
  """One operation drawn uniformly, at magnitude bin `bin_index`, its sign drawn if signed."""
  op_seed, sign_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  height, width = image.shape[0], image.shape[1]
  table, signed = _tables(wide, height, width)
  index = tf.random.stateless_uniform([], op_seed, 0, len(OPS), tf.int32)
  magnitude = table[bin_index, index]
  negative = signed[index] & (tf.random.stateless_uniform([], sign_seed, 0, 2, tf.int32) == 1)
  return apply_op(image, index, tf.where(negative, -magnitude, magnitude))


def erase(image: tf.Tensor, seed: tf.Tensor, probability: float, fill: tf.Tensor) -> tf.Tensor:
  """torchvision's RandomErasing(p=probability): with that probability, a rectangle of 2-33% of
  the area and aspect ratio (height / width) 0.3-3.3 set to `fill`, the first of 10 draws that
  fits strictly inside the image; none if none fits."""
  apply_seed, area_seed, ratio_seed, top_seed, left_seed = tf.unstack(
    tf.random.experimental.stateless_split(seed, 5)
  )
  height, width = image.shape[0], image.shape[1]
  share = tf.random.stateless_uniform([10], area_seed, 0.02, 0.33)
  log_ratio = tf.random.stateless_uniform([10], ratio_seed, math.log(0.3), math.log(3.3))
  area = tf.cast(height * width, tf.float32) * share
  h = tf.cast(tf.round(tf.sqrt(area * tf.exp(log_ratio))), tf.int32)
  w = tf.cast(tf.round(tf.sqrt(area / tf.exp(log_ratio))), tf.int32)
  fits = (h < height) & (w < width)
  first = tf.minimum(tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32), 9)
  h, w = h[first], w[first]
  top = tf.random.stateless_uniform([], top_seed, 0, height - h + 1, tf.int32)
  left = tf.random.stateless_uniform([], left_seed, 0, width - w + 1, tf.int32)
  apply = (tf.random.stateless_uniform([], apply_seed) < probability) & fits[first]
  rows, cols = tf.range(height)[:, None, None], tf.range(width)[None, :, None]
  inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w) & apply
  return tf.where(inside, tf.cast(fill, image.dtype), image)


def apply(image: tf.Tensor, seed: tf.Tensor, policy: Policy, mean: tuple[float, ...]) -> tf.Tensor:
  """`policy` on one training image of static height and width, after crop and flip; the
  uint8 result (a float image is rounded to uint8 first, the pixels torchvision augments).
  Erased pixels take the `mean` colour, 0 after normalisation as torchvision's recipe erases."""
  if image.dtype != tf.uint8:
    image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
  policy_seed, erase_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  if policy.trivial_augment:
    bin_seed, op_seed = tf.unstack(tf.random.experimental.stateless_split(policy_seed, 2))
    bin_index = tf.random.stateless_uniform([], bin_seed, 0, NUM_BINS, tf.int32)
    image = _random_op(image, op_seed, bin_index, wide=True)
  if policy.randaugment_layers:
    layer_seeds = tf.random.experimental.stateless_split(policy_seed, policy.randaugment_layers)
    for layer_seed in tf.unstack(layer_seeds):
      image = _random_op(image, layer_seed, policy.randaugment_magnitude, wide=False)
  if policy.random_erasing:
    fill = tf.constant(np.round(mean), tf.float32)
    image = erase(image, erase_seed, policy.random_erasing, fill)
  return image
