"""Images/s of the training preprocessing with and without each augmentation option.

    python -m benchmarks.augment_rate

The training preprocess of `input_pipeline` (crop, flip, the options, normalisation) on
synthetic examples as `benchmarks.throughput` makes them (a CIFAR-size uint8 image; a 500x375
JPEG cropped to --image_size), batched by --batch. The variants take turns, --seconds each,
for --rounds rounds, so that all see the same machine; the medians of each (images/s and the CPU
time of the process per image) are printed as a Markdown table.
"""

import statistics
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from resnet_jax import augment, input_pipeline

flags.DEFINE_integer('image_size', 224, 'Side of the ImageNet-like training crops.')
flags.DEFINE_integer('batch', 32, 'Batch size.')
flags.DEFINE_float('seconds', 4.0, 'Seconds per measurement.')
flags.DEFINE_integer('rounds', 3, 'Measurements per variant (median reported).')
FLAGS = flags.FLAGS

VARIANTS = {
  'crop + flip': augment.NONE,
  '+ TrivialAugmentWide': augment.Policy(trivial_augment=True),
  '+ RandAugment 2, 9': augment.Policy(randaugment_layers=2, randaugment_magnitude=9),
  '+ random erasing 1.0': augment.Policy(random_erasing=1.0),
  '+ TrivialAugmentWide + erasing 0.1': augment.Policy(trivial_augment=True, random_erasing=0.1),
}


def examples() -> dict[str, tuple[int, tf.Tensor]]:
  """(Training size, example image) of each dataset measured."""
  rng = np.random.default_rng(0)
  small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
  photo = tf.image.resize(small[None], (375, 500), method='bicubic')[0]
  photo = tf.cast(tf.clip_by_value(photo + rng.normal(0, 8, photo.shape), 0, 255), tf.uint8)
  cifar = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  return {
    'cifar10': (32, tf.constant(cifar)),
    'imagenet2012': (FLAGS.image_size, tf.io.encode_jpeg(photo, quality=90)),
  }


def batches(dataset: str, size: int, image: tf.Tensor, policy: augment.Policy):
  spec = input_pipeline.DATASETS[dataset]
  preprocess = input_pipeline._train_preprocess(spec, size, 'inception', policy)  # noqa: SLF001
  ds = tf.data.Dataset.from_tensors({'image': image, 'label': 0}).repeat().enumerate()
  ds = ds.map(
    lambda i, ex: preprocess(tf.stack([tf.constant(0, tf.int64), i]), ex),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  iterator = ds.batch(FLAGS.batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  iterator = iterator.as_numpy_iterator()
  for _ in range(3):
    next(iterator)
  return iterator


def rate(iterator) -> tuple[float, float]:
  """(Images/s, CPU ms per image of this process) over --seconds, after a second that empties
  what the pipeline had buffered while the other variants ran (this loop consumes faster than
  any variant produces). On a shared machine the CPU time is the steadier of the two."""
  start = time.perf_counter()
  while time.perf_counter() - start < 1.0:
    next(iterator)
  count, start, cpu = 0, time.perf_counter(), time.process_time()
  while time.perf_counter() - start < FLAGS.seconds:
    count += next(iterator)['image'].shape[0]
  return count / (time.perf_counter() - start), 1e3 * (time.process_time() - cpu) / count


def main(argv):
  del argv
  lines = [
    '| dataset | px | variant | images/s | relative | CPU ms / image | relative |',
    '|---|---|---|---|---|---|---|',
  ]
  for dataset, (size, image) in examples().items():
    iterators = {name: batches(dataset, size, image, p) for name, p in VARIANTS.items()}
    rates = {name: [] for name in VARIANTS}
    for _ in range(FLAGS.rounds):
      for name, iterator in iterators.items():
        rates[name].append(rate(iterator))
    medians = {k: [statistics.median(x) for x in zip(*v, strict=True)] for k, v in rates.items()}
    base_rate, base_cpu = medians['crop + flip']
    for name, (images_per_s, cpu_ms) in medians.items():
      lines.append(
        f'| {dataset} | {size} | {name} | {images_per_s:,.0f} | {images_per_s / base_rate:.2f} '
        f'| {cpu_ms:.3f} | {cpu_ms / base_cpu:.2f} |'
      )
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
