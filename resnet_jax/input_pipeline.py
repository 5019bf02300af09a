"""TFDS / tf.data input pipelines for any TFDS image dataset, image folders and the digits.

Training data is a pure function of (seed, step): each epoch is shuffled with a seed derived
from (seed, epoch) and every example is augmented with stateless random ops keyed by its
position, so a resumed run sees exactly the batches the uninterrupted run would have seen, with
no iterator state to save. Cached datasets give every process the same global order, of which
each takes its rows; streamed ones (ImageNet) give each process its own slice of the files.
Evaluation covers every example exactly once: each process reads its slice, the last batch
padded and masked.

This is the only module that imports TensorFlow.
"""

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from resnet_jax import (
  augment,
  digits_dataset,  # noqa: F401  (registers the 'digits' TFDS builder)
  errors,
  image_folder,
)
from resnet_jax.config_checks import check_choice
from resnet_jax.datasets import CROP_SAMPLERS, DATASETS, FOLDER, DatasetSpec, EvalImage, check_name

# TensorFlow must never take the accelerator memory that JAX needs.
tf.config.set_visible_devices([], 'GPU')


class DatasetNotPreparedError(errors.DataError):
  pass


def find_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The builder of `config.dataset`, checked against the config, not prepared: its features
  and class names are known without the data (except a folder's)."""
  check_name(config)
  if config.dataset == FOLDER:
    builder = image_folder.builder(config.data_dir, (config.train_split, config.eval_split))
  else:
    try:
      builder = tfds.builder(config.dataset, data_dir=config.data_dir or None)
    except tfds.core.registered.DatasetNotFoundError as error:
      raise errors.DataError(
        f'Unknown dataset {config.dataset!r}: it is no TFDS dataset '
        f'({str(error).splitlines()[0]}). Name one of `tfds.list_builders()`, one of '
        f"{', '.join(sorted(DATASETS))}, '{FOLDER}' for a folder of images, or 'fake'."
      ) from None
  check_features(builder, config)
  return builder


def get_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The TFDS builder of `config.dataset`, prepared now unless that needs a manual step."""
  builder = find_builder(config)
  if config.dataset == FOLDER or builder.is_prepared():
    return builder
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    manual_dir = os.path.join(builder._data_dir_root, 'downloads', 'manual')  # noqa: SLF001
    raise DatasetNotPreparedError(
      f'Dataset {config.dataset!r} is not prepared in the TFDS data directory '
      f'{builder._data_dir_root!r} and needs a manual download. Download the files (for '  # noqa: SLF001
      f'imagenet2012: ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org), '
      f'put them in {manual_dir!r}, then run `tfds build {config.dataset} '
      f'--data_dir={builder._data_dir_root}` once (or pass --config.data_dir=DIR where it is '  # noqa: SLF001
      'already prepared).'
    )
  # tqdm's bars are carriage returns and escape codes in a log file: bars on a terminal only.
  tfds.display_progress_bar(sys.stderr.isatty())
  try:
    builder.download_and_prepare()
  except FileExistsError:
    # Another process (a parallel sweep point, another host) finished preparing it first.
    builder = tfds.builder(config.dataset, data_dir=config.data_dir or None)
    if not builder.is_prepared():
      raise
  return builder


def feature_names(builder: tfds.core.DatasetBuilder) -> tuple[str, str]:
  """The (image, label) features: the supervised keys, else the only Image and ClassLabel."""
  features = builder.info.features
  keys = builder.info.supervised_keys
  if isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys):
    image, label = keys
  else:
    images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    image, label = (
      (images[0] if len(images) == 1 else None),
      (labels[0] if len(labels) == 1 else None),
    )
  if not (
    isinstance(dict(features.items()).get(image), tfds.features.Image)
    and _class_label(dict(features.items()).get(label)) is not None
  ):
    raise errors.DataError(
      f'Dataset {builder.name!r} is no image classification dataset this project can read: it '
      f'needs one Image feature and one ClassLabel feature (or supervised keys naming them), '
      f'and has {dict(features)}.'
    )
  return image, label


def _class_label(feature) -> tfds.features.ClassLabel | None:
  """The ClassLabel of a label feature: itself, or that of a sequence of labels (several right
  answers per image, as ImageNet ReaL's)."""
  if isinstance(feature, tfds.features.Sequence):
    feature = feature.feature
  return feature if isinstance(feature, tfds.features.ClassLabel) else None


def num_classes(builder: tfds.core.DatasetBuilder) -> int:
  return _class_label(builder.info.features[feature_names(builder)[1]]).num_classes


def class_names(builder: tfds.core.DatasetBuilder) -> list[str]:
  return list(_class_label(builder.info.features[feature_names(builder)[1]]).names)


def check_features(builder: tfds.core.DatasetBuilder, config: ml_collections.ConfigDict) -> None:
  """Raises DataError if `num_classes` or `image_size` disagree with the dataset's metadata.

  A classifier with too few outputs trains silently on one-hot vectors of zeros for the labels
  it lacks; one with too many wastes outputs. The built-in crop-augmented datasets (CIFAR,
  digits) keep their own image size, so `image_size` must be that size; other datasets' images
  are resized to it.
  """
  wrong = []
  classes = num_classes(builder)
  if config.num_classes and config.num_classes != classes:
    wrong.append(f'config.num_classes={config.num_classes}, but it has {classes} classes')
  height, width, _ = builder.info.features[feature_names(builder)[0]].shape
  spec = dataset_spec(builder, config)
  if config.dataset in DATASETS and spec.augmentation == 'pad_crop' and config.image_size != height:
    wrong.append(
      f'config.image_size={config.image_size}, but its images are {height}x{width} and are '
      'trained at that size'
    )
  if wrong:
    raise errors.DataError(
      f'The config does not match dataset {config.dataset!r}: {"; ".join(wrong)}. Set '
      f"--config.num_classes={classes} (or 0, the dataset's number)"
      + (f' --config.image_size={height}' if len(wrong) > 1 or 'image_size' in wrong[0] else '')
      + ', or choose the dataset these values are meant for.'
    )


# The functions that tf.data traces branch on Python values only, so AutoGraph's rewriting of
# their source (0.2-0.3 s of each start) would change nothing.
_not_converted = tf.autograph.experimental.do_not_convert


# Images of at most this many pixels a side are small: 'pad_crop' rather than 'inception_crop'.
SMALL_IMAGE = 64
_IMAGENET = DATASETS['imagenet2012']


def dataset_spec(
  builder: tfds.core.DatasetBuilder, config: ml_collections.ConfigDict
) -> DatasetSpec:
  """How `config.dataset` is normalised and augmented.

  The built-in datasets keep their own statistics; others use ImageNet's (their mean for
  grey-level images). `config.augmentation` and `config.flip` override the dataset's choice.
  """
  image = builder.info.features[feature_names(builder)[0]]
  if config.dataset in DATASETS:
    spec = DATASETS[config.dataset]
  else:
    height, width, channels = image.shape
    fixed = height is not None and width is not None
    if fixed:
      small = max(height, width) <= SMALL_IMAGE
    else:  # Variable sizes are large images, except in a folder, whose sizes are unknown here.
      small = config.dataset == FOLDER and config.image_size <= SMALL_IMAGE
    mean, std = _IMAGENET.mean, _IMAGENET.std
    if channels == 1:
      mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
    side = min(height, width) if fixed else config.image_size
    spec = DatasetSpec(mean, std, 'pad_crop' if small else 'inception_crop', pad=max(side // 8, 1))
  if config.augmentation:
    pad = spec.pad or max(config.image_size // 8, 1)
    spec = dataclasses.replace(spec, augmentation=config.augmentation, pad=pad)
  # A folder's JPEGs too (and its PNGs, decoded whole: `_decode_window`).
  jpeg = image.encoding_format == 'jpeg' or config.dataset == FOLDER
  encoded = spec.augmentation == 'inception_crop' and jpeg
  if len(spec.mean) == 1 and encoded:  # JPEGs are decoded to RGB.
    spec = dataclasses.replace(spec, mean=spec.mean * 3, std=spec.std * 3)
  return dataclasses.replace(spec, encoded=encoded, flip=spec.flip and config.flip)


def _to_uint8(image: tf.Tensor) -> tf.Tensor:
  """The pixels the pipeline ships: a resize's float output rounded back to uint8 (the devices
  normalise them, `resnet_jax.normalize`); uint8 images as they are."""
  if image.dtype == tf.uint8:
    return image
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


# Both samplers keep 8-100% of the area with an aspect ratio (width / height) of 3/4 to 4/3.
_AREA_RANGE = (0.08, 1.0)
_RATIO_RANGE = (3 / 4, 4 / 3)
_ATTEMPTS = 10


def crop_window(shape: tf.Tensor, seed: tf.Tensor, sampler: str) -> tf.Tensor:
  """[top, left, height, width] of a random-resized crop of an image of `shape` (H, W, ...).

  'inception': TF's `sample_distorted_bounding_box`, the whole image if no draw fits.
  'torchvision': `RandomResizedCrop.get_params` of torchvision, as its ImageNet reference
  scripts and the official iResNet script train; the whole image only where its aspect ratio
  is within 3/4-4/3, else its central crop of the nearest allowed ratio. Both are stateless:
  the window is a function of `seed` alone.
  """
  if sampler == 'inception':
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape,
      bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
      seed=seed,
      area_range=_AREA_RANGE,
      aspect_ratio_range=_RATIO_RANGE,
      max_attempts=_ATTEMPTS,
      use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]])
  check_choice('config.crop_sampler', sampler, CROP_SAMPLERS)
  return _torchvision_window(shape, seed)


def _torchvision_window(shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """torchvision's algorithm with its ten attempts drawn at once and the first that fits kept.

  Each attempt draws the area (a share of H * W) and the log of the aspect ratio uniformly, in
  float32 as torch does; the sides are round(sqrt(area * ratio)) and round(sqrt(area / ratio)),
  rounded half to even as Python's `round`; the offsets are uniform integers.
  """
  height, width = shape[0], shape[1]
  area_seed, ratio_seed, top_seed, left_seed = tf.unstack(
    tf.random.experimental.stateless_split(seed, 4)
  )
  h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
  share = tf.random.stateless_uniform([_ATTEMPTS], area_seed, *_AREA_RANGE, tf.float32)
  log_low, log_high = np.log(np.array(_RATIO_RANGE, np.float32))
  log_ratio = tf.random.stateless_uniform([_ATTEMPTS], ratio_seed, log_low, log_high, tf.float32)
  area = h * w * tf.cast(share, tf.float64)
  ratio = tf.cast(tf.exp(log_ratio), tf.float64)
  crop_w = tf.cast(tf.round(tf.sqrt(area * ratio)), tf.int32)
  crop_h = tf.cast(tf.round(tf.sqrt(area / ratio)), tf.int32)
  fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
  first = tf.reduce_min(tf.where(fits, tf.range(_ATTEMPTS), _ATTEMPTS))
  # No attempt fits: the central crop, its aspect ratio clamped to the allowed range.
  low, high = _RATIO_RANGE
  in_ratio = w / h
  central_w = tf.where(in_ratio > high, tf.cast(tf.round(h * high), tf.int32), width)
  central_h = tf.where(in_ratio < low, tf.cast(tf.round(w / low), tf.int32), height)
  found = first < _ATTEMPTS
  index = tf.minimum(first, _ATTEMPTS - 1)
  crop_h = tf.where(found, crop_h[index], central_h)
  crop_w = tf.where(found, crop_w[index], central_w)
  top = tf.random.stateless_uniform([], top_seed, 0, height - crop_h + 1, tf.int32)
  left = tf.random.stateless_uniform([], left_seed, 0, width - crop_w + 1, tf.int32)
  top = tf.where(found, top, (height - crop_h) // 2)
  left = tf.where(found, left, (width - crop_w) // 2)
  return tf.stack([top, left, crop_h, crop_w])


def _decode_window(data: tf.Tensor, window_of: Callable) -> tuple[tf.Tensor, tf.Tensor]:
  """(The window `window_of(shape)`, [top, left, height, width], of an encoded RGB image, and
  the image's height and width): of a JPEG only the window is decoded, TF reads the shape
  without decoding; other formats (the PNGs of an image folder) are decoded whole, then cut."""

  def jpeg():
    shape = tf.io.extract_jpeg_shape(data)
    return tf.io.decode_and_crop_jpeg(data, window_of(shape), channels=3), shape[:2]

  def other():
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    top, left, height, width = tf.unstack(window_of(tf.shape(image)))
    return image[top : top + height, left : left + width], tf.shape(image)[:2]

  return tf.cond(tf.io.is_jpeg(data), jpeg, other)


def _random_resized_crop(image: tf.Tensor, size: int, seed: tf.Tensor, sampler: str, encoded: bool):
  """The `crop_window` of an image resized to `size` x `size`; of encoded bytes (`encoded`),
  decoding only the crop."""
  if encoded:
    image, _ = _decode_window(image, lambda shape: crop_window(shape, seed, sampler))
  else:
    top, left, height, width = tf.unstack(crop_window(tf.shape(image), seed, sampler))
    image = image[top : top + height, left : left + width]
  return tf.image.resize(image, [size, size], method='bilinear', antialias=True)


def _resize_shorter_side(image: tf.Tensor, side: int) -> tf.Tensor:
  """The shorter side resized to `side`; an image that already has that size (CIFAR at its own
  size) is left untouched."""
  if image.shape[:2] == (side, side):
    return image
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  new_shape = tf.cast(tf.round(shape * side / tf.reduce_min(shape)), tf.int32)
  return tf.image.resize(image, new_shape, method='bilinear', antialias=True)


def _center_window(shape: tf.Tensor, eval_image: EvalImage):
  """(scale, offset of the crop in the resized image, first input pixel it reads, the window
  [top, left, height, width] of the input pixels it reads) of the central `eval_image.crop`
  square of an image of `shape` (H, W, ...) resized to `eval_image.resize` on its shorter side."""
  in_size = tf.cast(shape[:2], tf.float32)
  out_size = tf.round(in_size * eval_image.resize / tf.reduce_min(in_size))
  scale = out_size / in_size
  offset = tf.floor((out_size - eval_image.crop) / 2)
  # Output pixel o reads input pixels within `support` of (o + 0.5) / scale - 0.5.
  support = tf.maximum(1 / scale, 1.0)
  first = tf.maximum(tf.floor((offset + 0.5) / scale - 0.5 - support), 0.0)
  end = (offset + eval_image.crop - 0.5) / scale - 0.5 + support
  last = tf.minimum(tf.math.ceil(end) + 1, in_size)
  return scale, offset, first, tf.cast(tf.concat([first, last - first], 0), tf.int32)


def _resize_center_crop(image: tf.Tensor, eval_image: EvalImage, encoded: bool = False):
  """The shorter side resized to `eval_image.resize`, then the central `eval_image.crop` square.

  Only the crop's pixels are computed, from the input pixels they read (of encoded bytes,
  `encoded`, only those are decoded): the antialiased bilinear resize of the whole image, with
  its scale and alignment, over the window of `_center_window`. An image that has the resized
  size already (CIFAR at its own size) is only cropped.
  """
  crop = eval_image.crop
  if not encoded and image.shape[:2] == (eval_image.resize, eval_image.resize):
    start = (eval_image.resize - crop) // 2
    return image[start : start + crop, start : start + crop]
  if encoded:
    image, shape = _decode_window(image, lambda shape: _center_window(shape, eval_image)[-1])
  else:
    shape = tf.shape(image)
    top, left, height, width = tf.unstack(_center_window(shape, eval_image)[-1])
    image = image[top : top + height, left : left + width]
  scale, offset, first, _ = _center_window(shape, eval_image)
  resized = tf.raw_ops.ScaleAndTranslate(
    images=image[None],
    size=[crop, crop],
    scale=scale,
    translation=first * scale - offset,
    kernel_type='triangle',  # tf.image.resize's antialiased 'bilinear'
    antialias=True,
  )[0]
  return tf.ensure_shape(resized, [crop, crop, 3 if encoded else image.shape[-1]])


def _train_preprocess(
  spec: DatasetSpec, size: int, crop_sampler: str, policy: augment.Policy = augment.NONE
) -> Callable:
  check_choice('config.crop_sampler', crop_sampler, CROP_SAMPLERS)

  @_not_converted
  def preprocess(seed, example):
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if spec.augmentation == 'inception_crop':
      image = _random_resized_crop(example['image'], size, crop_seed, crop_sampler, spec.encoded)
    else:
      image = example['image']
      if image.shape[:2] != (size, size):  # Another size, or sizes that vary: resized first.
        image = _resize_center_crop(image, EvalImage(size, size))
      padded = tf.pad(image, [[spec.pad, spec.pad], [spec.pad, spec.pad], [0, 0]])
      image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_seed)
    if spec.flip:
      image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    image = _to_uint8(image)
    if policy.active:  # Its own draws: the crop and flip stay those of a run without it.
      augment_seed = tf.random.experimental.stateless_fold_in(seed, 1)
      image = augment.apply(image, augment_seed, policy, spec.mean)
    return {'image': image, 'label': tf.cast(example['label'], tf.int32)}

  return preprocess


def center_crop(image: tf.Tensor, eval_image: EvalImage) -> tf.Tensor:
  """One decoded image, uint8, as 'center' evaluation classifies it (prediction, export)."""
  return _to_uint8(_resize_center_crop(image, eval_image))


def _whole_image(image: tf.Tensor, eval_image: EvalImage):
  """(The resized image, its longer side centre-cropped to at most `eval_image.crop`, at the top
  left of a `crop` x `crop` canvas of zeros; its height and width)."""
  resized = _resize_shorter_side(image, eval_image.resize)
  crop = eval_image.crop
  shape = tf.shape(resized)[:2]
  size = tf.minimum(shape, crop)
  top, left = tf.unstack((shape - size) // 2)
  kept = _to_uint8(resized[top : top + size[0], left : left + size[1]])
  canvas = tf.pad(kept, [[0, crop - size[0]], [0, crop - size[1]], [0, 0]])
  return tf.ensure_shape(canvas, [crop, crop, image.shape[-1]]), size


def _eval_preprocess(spec: DatasetSpec, eval_images: Sequence[EvalImage]) -> Callable:
  @_not_converted
  def preprocess(example):
    image = example['image']
    if eval_images[0].whole:
      if spec.encoded:  # Read undecoded, as for training.
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
      images, sizes = zip(*(_whole_image(image, e) for e in eval_images), strict=True)
    elif len(eval_images) == 1:  # Decodes only the window it keeps.
      images = (_to_uint8(_resize_center_crop(image, eval_images[0], spec.encoded)),)
    else:  # Central squares at several sizes: one decode.
      if spec.encoded:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
      images = tuple(_to_uint8(_resize_center_crop(image, e)) for e in eval_images)
    batch = {
      'image': images[0] if len(images) == 1 else images,
      'label': tf.cast(example['label'], tf.int32),
      'mask': tf.constant(1.0),
    }
    if eval_images[0].whole:
      batch['size'] = sizes[0] if len(sizes) == 1 else sizes
    return batch

  return preprocess


def _read(builder: tfds.core.DatasetBuilder, split, spec: DatasetSpec, file_seed=None):
  """Reads a split as {'image', 'label'} examples; JPEGs stay encoded so that the crop decodes
  only what it keeps."""
  image, label = feature_names(builder)
  decoders = {image: tfds.decode.SkipDecoding()} if spec.encoded else None
  # An image folder is one list of files, shuffled (without a seed) only if asked to.
  shuffle_files = file_seed is not None and not isinstance(builder, tfds.ImageFolder)
  read_config = tfds.ReadConfig(shuffle_seed=file_seed) if shuffle_files else None
  ds = builder.as_dataset(
    split=split,
    shuffle_files=shuffle_files,
    decoders=decoders,
    read_config=read_config,
  )
  if isinstance(builder.info.features[label], tfds.features.Sequence):
    # Several labels per image (possibly none): a multi-hot row of the classes.
    classes = num_classes(builder)
    return ds.map(
      lambda example: {
        'image': example[image],
        'label': tf.minimum(
          tf.reduce_sum(tf.one_hot(example[label], classes, dtype=tf.int32), axis=0), 1
        ),
      }
    )
  if (image, label) != ('image', 'label') or isinstance(builder, tfds.ImageFolder):
    ds = ds.map(lambda example: {'image': example[image], 'label': example[label]})
  return ds


def _process_split(builder: tfds.core.DatasetBuilder, split: str, drop_remainder: bool):
  """(What `_read` reads, a function that keeps this process's part of it): the process's
  slice of the split, or for image folders, which read whole splits only, every n-th example."""
  if not isinstance(builder, tfds.ImageFolder):
    return tfds.split_for_jax_process(split, drop_remainder=drop_remainder), lambda ds: ds
  count, index = jax.process_count(), jax.process_index()
  return split, lambda ds: ds.shard(count, index)


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
  """Shuffle and augmentation seed of one epoch of one stream of examples."""
  entropy = [seed, epoch, stream]
  return int(np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0])


def train_batches(
  builder: tfds.core.DatasetBuilder,
  config: ml_collections.ConfigDict,
  host_batch_size: int,
  start_step: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields this process's training batches forever, starting at `start_step`.

  With `config.cache` (datasets that fit in host memory) every process holds the whole split
  and takes its rows of each global batch, so the global batches are a function of
  (seed, step) alone: a run restored on another number of processes trains on exactly the
  batches it would have seen. So are splits that fit in `config.shuffle_buffer_size`, which
  the shuffle holds in memory anyway: one pipeline then serves many epochs, where streaming
  would rebuild it and refill the shuffle buffer every epoch (every 7 steps of a 1,000-image
  folder). Otherwise (ImageNet) each process streams its own part of the files, and the order
  also depends on the number of processes.
  """
  num_examples = builder.info.splits[config.train_split].num_examples
  if config.cache or num_examples <= config.shuffle_buffer_size:
    return _global_order_batches(builder, config, host_batch_size, start_step)
  return _per_process_batches(builder, config, host_batch_size, start_step)


def _check_epoch(num_examples: int, batch_size: int, which: str) -> int:
  steps_per_epoch = num_examples // batch_size
  if steps_per_epoch == 0:
    raise errors.ConfigError(
      f'The {which} batch size {batch_size} is larger than the {num_examples} training '
      'examples it is drawn from; lower --config.batch_size.'
    )
  return steps_per_epoch


# Epochs per tf.data pipeline of a cached dataset: building one costs about as much as a small
# dataset's epoch (the digits: 22 steps), so one pipeline serves many epochs.
_EPOCHS_PER_PIPELINE = 100


def _without_autotune_thread(ds: tf.data.Dataset) -> tf.data.Dataset:
  """`ds` without tf.data's autotuning model and its background thread: deleting an iterator
  that had trained for a while waited on it, 0.02-15 s at the end of a digits run on a busy
  2-core machine (0.01-0.02 s without it), with the workdir still locked. AUTOTUNE parallelism
  then stays at its default, the number of cores."""
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.with_options(options)


def _global_order_batches(builder, config, host_batch_size, start_step):
  spec = dataset_spec(builder, config)
  num_examples = builder.info.splits[config.train_split].num_examples
  global_batch = host_batch_size * jax.process_count()
  steps_per_epoch = _check_epoch(num_examples, global_batch, 'global')
  epoch_length = steps_per_epoch * global_batch
  epoch, offset = divmod(start_step, steps_per_epoch)
  cached = _read(builder, config.train_split, spec).cache()
  preprocess = _train_preprocess(
    spec, config.image_size, config.crop_sampler, augment.policy(config)
  )
  process = jax.process_index()
  while True:
    first_epoch = epoch

    @_not_converted
    def one_epoch(epoch, epoch_seed, first_epoch=first_epoch, offset=offset):
      ds = cached.shuffle(num_examples, seed=epoch_seed, reshuffle_each_iteration=False)
      # Position i in the epoch's order: row i % global_batch of global batch i // global_batch.
      ds = tf.data.Dataset.zip(tf.data.Dataset.range(epoch_length), ds.take(epoch_length))
      first = tf.constant(offset * global_batch, tf.int64)
      ds = ds.skip(tf.where(epoch == first_epoch, first, tf.constant(0, tf.int64)))
      ds = ds.filter(lambda i, ex: (i % global_batch) // host_batch_size == process)
      return ds.map(lambda i, ex: (tf.stack([epoch_seed, i]), ex))

    epochs = list(range(first_epoch, first_epoch + _EPOCHS_PER_PIPELINE))
    seeds = [_epoch_seed(config.seed, e, 0) for e in epochs]
    ds = tf.data.Dataset.from_tensor_slices(
      (tf.constant(epochs, tf.int64), tf.constant(seeds, tf.int64))
    )
    ds = ds.flat_map(one_epoch).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    # Every epoch gives this process a whole number of batches, so none straddles two epochs.
    ds = ds.batch(host_batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    yield from _without_autotune_thread(ds).as_numpy_iterator()
    epoch, offset = first_epoch + _EPOCHS_PER_PIPELINE, 0


def _per_process_batches(builder, config, host_batch_size, start_step):
  spec = dataset_spec(builder, config)
  split, shard = _process_split(builder, config.train_split, drop_remainder=True)
  num_examples = builder.info.splits[config.train_split].num_examples // jax.process_count()
  steps_per_epoch = _check_epoch(num_examples, host_batch_size, 'per-process')
  epoch, offset = divmod(start_step, steps_per_epoch)
  preprocess = _train_preprocess(
    spec, config.image_size, config.crop_sampler, augment.policy(config)
  )
  while True:
    epoch_seed = _epoch_seed(config.seed, epoch, jax.process_index())
    ds = shard(_read(builder, split, spec, file_seed=epoch_seed)).take(num_examples)
    ds = ds.shuffle(config.shuffle_buffer_size, seed=epoch_seed, reshuffle_each_iteration=False)
    first = offset * host_batch_size
    ds = ds.skip(first).enumerate(start=first)
    ds = ds.map(
      lambda i, ex, s=epoch_seed: preprocess(tf.stack([tf.constant(s, tf.int64), i]), ex),
      num_parallel_calls=tf.data.AUTOTUNE,
    )
    ds = ds.batch(host_batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    yield from _without_autotune_thread(ds).as_numpy_iterator()
    epoch, offset = epoch + 1, 0


def eval_batches(
  builder: tfds.core.DatasetBuilder,
  config: ml_collections.ConfigDict,
  host_batch_size: int,
  eval_images: Sequence[EvalImage],
) -> tuple[Callable[[], Iterator[dict[str, np.ndarray]]], int]:
  """Returns (a function that starts a pass over this process's eval slice, steps per pass).

  Each example becomes the `eval_images` of `datasets.eval_images(config)`: batch['image'] is one
  array, or a tuple of arrays (one per size) for multi-scale evaluation. All processes run the
  same number of steps; examples past the end are zero images with mask 0, so metrics weighted
  by the mask count every example exactly once.
  """
  spec = dataset_spec(builder, config)
  split, shard = _process_split(builder, config.eval_split, drop_remainder=False)
  if builder.info.splits:
    total = builder.info.splits[config.eval_split].num_examples
  else:  # A split of unknown size (tfds.testing.mock_data): counted.
    total = int(builder.as_dataset(split=config.eval_split).cardinality())
  num_steps = math.ceil(math.ceil(total / jax.process_count()) / host_batch_size)
  ds = shard(_read(builder, split, spec)).map(
    _eval_preprocess(spec, eval_images), num_parallel_calls=tf.data.AUTOTUNE
  )
  if config.cache:
    ds = ds.cache()
  padding = tf.data.Dataset.from_tensors(
    tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), ds.element_spec)
  ).repeat()
  ds = ds.concatenate(padding).take(num_steps * host_batch_size)
  ds = ds.batch(host_batch_size).prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator, num_steps


def num_train_examples(builder: tfds.core.DatasetBuilder, config: ml_collections.ConfigDict) -> int:
  return builder.info.splits[config.train_split].num_examples
