r"""Images/s of the input pipeline per CPU core: training, evaluation, where the time goes, the
batching ceiling, and torchvision's two pipelines on the same images.

    python -m benchmarks.input_pipeline [--folder=DIR] [--threads=N] \
        [--torch_python=/path/to/python-with-torch]

DIR is an image folder, DIR/<split>/<class>/<image> (`resnet_jax.image_folder`), whose 'train'
and 'validation' splits are read; without one, ImageNet-like JPEGs are generated (smooth images
with pixel noise, quality 90, 500 x 375 and 375 x 500 mostly). --threads=N pins the process to N
cores (default: all it may use), so that per-core rates are rates per core. With
--torch_python, `benchmarks/torchvision_pipeline.py` runs right after, in that interpreter (torch
is no dependency of this project), on the same images and cores, so that both tables come from
one time window of the machine. Batches of 128 at 224 px, as ImageNet training feeds them.
"""

import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string('folder', None, 'Image folder with train/ and validation/; generated if unset.')
flags.DEFINE_integer('threads', 0, 'Cores the pipelines may use (0: all).')
flags.DEFINE_integer(
  'images', 1000, 'Training images generated without --folder (and 1/2 as many for validation).'
)
flags.DEFINE_float('seconds', 8.0, 'Seconds each rate is measured for, after a warm-up.')
flags.DEFINE_string('torch_python', None, 'A Python with torch and torchvision, for the reference.')
flags.DEFINE_integer('rounds', 3, 'Rounds of every measurement, in turn; medians are reported.')

BATCH, SIZE = 128, 224
SPLITS = ('train', 'validation')
CLASSES = 10


def write_folder(root: str, num_train: int, seed: int = 0) -> None:
  """ImageNet-like JPEGs in root/{train,validation}/<class>/: smooth photographs' statistics
  (noise decodes slower than photographs, flat colour faster), 3 in 4 landscape."""
  import tensorflow as tf

  rng = np.random.default_rng(seed)
  for split, count in zip(SPLITS, (num_train, num_train // 2), strict=True):
    for i in range(count):
      height, width = (375, 500) if i % 4 else (500, 375)
      if i % 10 == 9:
        height, width = 333, 500
      small = rng.integers(0, 256, (height // 31 + 1, width // 31 + 1, 3), dtype=np.uint8)
      photo = tf.image.resize(small[None], (height, width), method='bicubic')[0]
      photo = tf.clip_by_value(photo + rng.normal(0, 8, photo.shape), 0, 255)
      folder = os.path.join(root, split, f'class{i % CLASSES}')
      os.makedirs(folder, exist_ok=True)
      jpeg = tf.io.encode_jpeg(tf.cast(photo, tf.uint8), quality=90)
      tf.io.write_file(os.path.join(folder, f'{i:05d}.jpg'), jpeg)


def rate(batches, seconds: float) -> tuple[float, float]:
  """(Images/s, CPU ms per image) of an iterator of batches (dicts with 'image', or arrays),
  after two batches. The CPU time is this process's, all threads: on a loaded machine it is
  what a core of its own would take, where images/s is what the share of the cores it got
  gave."""
  for _ in range(2):
    next(batches)
  count, start, cpu = 0, time.perf_counter(), time.process_time()
  while time.perf_counter() - start < seconds:
    batch = next(batches)
    count += len(batch['image'] if isinstance(batch, dict) else batch)
  return count / (time.perf_counter() - start), 1e3 * (time.process_time() - cpu) / count


def _config(folder: str):
  from configs import resnet50

  config = resnet50.get_config()  # Streamed (config.cache False), ImageNet's augmentation.
  config.update(dataset='folder', data_dir=folder, train_split='train', eval_split='validation')
  config.update(num_classes=CLASSES, image_size=SIZE, batch_size=BATCH, eval_batch_size=BATCH)
  return config


def measure(folder: str, seconds: float) -> dict[str, float]:
  """Images/s of each pipeline (keys as in `markdown`)."""
  import tensorflow as tf

  from resnet_jax import datasets, input_pipeline

  config = _config(folder)
  builder = input_pipeline.get_builder(config)
  spec = input_pipeline.dataset_spec(builder, config)
  (eval_image,) = datasets.eval_images(config)
  rates = {}

  def examples(split):
    """The split's encoded examples in memory, repeated: the steady state, no file reads."""
    return input_pipeline._read(builder, split, spec).cache().repeat()

  def run(ds, fn, batch=True):
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(BATCH, drop_remainder=True) if batch else ds
    return rate(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator(), seconds)

  train = examples('train').enumerate()
  preprocess = input_pipeline._train_preprocess(spec, SIZE, config.crop_sampler)

  def seeded(i, example):
    return tf.stack([tf.constant(0, tf.int64), i]), example

  def decoded(i, example):
    seed = seeded(i, example)[0]
    window = lambda shape: input_pipeline.crop_window(shape, seed, config.crop_sampler)  # noqa: E731
    return input_pipeline._decode_window(example['image'], window)[0]

  # The stages' own costs: each ends in one number per image, not in a batch to copy.
  mean, std = tf.constant(spec.mean), tf.constant(spec.std)
  rates['train decode'] = run(train, lambda i, ex: tf.reduce_max(decoded(i, ex)))
  rates['train decode+resize'] = run(
    train,
    lambda i, ex: tf.reduce_max(tf.image.resize(decoded(i, ex), [SIZE, SIZE], antialias=True)),
  )
  rates['train'] = run(train, lambda i, ex: preprocess(*seeded(i, ex)))
  rates['train, float32 on the host (before)'] = run(
    train, lambda i, ex: (tf.cast(preprocess(*seeded(i, ex))['image'], tf.float32) - mean) / std
  )
  batches = input_pipeline.train_batches(builder, config, BATCH)
  rates[f'train_batches, {builder.info.splits["train"].num_examples}-image folder'] = rate(
    batches, seconds
  )
  batches.close()

  evals = examples('validation')
  window = lambda shape: input_pipeline._center_window(shape, eval_image)[-1]  # noqa: E731
  rates['eval decode'] = run(
    evals, lambda ex: tf.reduce_max(input_pipeline._decode_window(ex['image'], window)[0])
  )
  rates['eval decode+resize'] = run(
    evals,
    lambda ex: tf.reduce_max(input_pipeline._resize_center_crop(ex['image'], eval_image, True)),
  )
  rates['eval'] = run(evals, input_pipeline._eval_preprocess(spec, [eval_image]))

  def whole_image_eval(example):  # Before: the whole image decoded and resized, float32.
    image = tf.io.decode_jpeg(example['image'], channels=3)
    resized = input_pipeline._resize_shorter_side(image, eval_image.resize)
    top, left = tf.unstack((tf.shape(resized)[:2] - eval_image.crop) // 2)
    crop = resized[top : top + eval_image.crop, left : left + eval_image.crop]
    return (crop - mean) / std

  rates['eval, whole image, float32 (before)'] = run(evals, whole_image_eval)
  start_pass, _ = input_pipeline.eval_batches(builder, config, BATCH, [eval_image])
  count, start, cpu = 0, time.perf_counter(), time.process_time()
  for batch in start_pass():
    count += int(batch['mask'].sum())
  rates[f'eval_batches, one pass of {count} images'] = (
    count / (time.perf_counter() - start),
    1e3 * (time.process_time() - cpu) / count,
  )

  image = tf.zeros([SIZE, SIZE, 3], tf.uint8)
  for dtype in (tf.uint8, tf.float32):
    ds = tf.data.Dataset.from_tensors({'image': tf.cast(image, dtype), 'label': 0}).repeat()
    ds = ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)
    rates[f'batching only, {dtype.name}'] = rate(ds.as_numpy_iterator(), seconds)
  return rates


def markdown(rates: dict[str, tuple[float, float]], cores: int) -> str:
  lines = [
    f'{cores} core(s), batches of {BATCH} at {SIZE} px; medians of {FLAGS.rounds} rounds, load '
    f'average {os.getloadavg()[0]:.1f} at the end. img/s: wall clock, what the share of the '
    'cores the pipeline got gave; CPU ms: its CPU time per image, all threads (and worker '
    'processes); img/s per busy core: 1000 / CPU ms.',
    '',
    '| pipeline | img/s | img/s per core | CPU ms per image | img/s per busy core |',
    '|---|---|---|---|---|',
  ]
  for name, (value, cpu_ms) in rates.items():
    lines.append(
      f'| {name} | {value:,.0f} | {value / cores:,.0f} | {cpu_ms:.2f} | {1e3 / cpu_ms:,.0f} |'
    )
  lines += [
    '',
    '| where the time goes, CPU ms per image | decode | resize | rest |',
    '|---|---|---|---|',
  ]
  for which in ('train', 'eval'):
    decode = rates[f'{which} decode'][1]
    resize = rates[f'{which} decode+resize'][1] - decode
    rest = rates[which][1] - decode - resize
    total = decode + resize + rest
    lines.append(
      f'| {which} | {decode:.2f} ({decode / total:.0%}) | {resize:.2f} ({resize / total:.0%}) '
      f'| {rest:.2f} ({rest / total:.0%}) |'
    )
  return '\n'.join(lines)


def main(argv):
  del argv
  if FLAGS.threads:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: FLAGS.threads])
  cores = len(os.sched_getaffinity(0))
  with tempfile.TemporaryDirectory() as tmp:
    folder = FLAGS.folder
    if folder is None:
      folder = os.path.join(tmp, 'images')
      write_folder(folder, FLAGS.images)
    rounds = []
    for _ in range(FLAGS.rounds):  # Ours, then torchvision's: each round sees the same machine.
      rounds.append(measure(folder, FLAGS.seconds))
      if FLAGS.torch_python:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'torchvision_pipeline.py')
        command = [FLAGS.torch_python, script, f'--folder={folder}', f'--seconds={FLAGS.seconds}']
        output = subprocess.run([*command, '--json'], check=True, capture_output=True, text=True)
        rounds[-1] |= json.loads(output.stdout.splitlines()[-1])
  medians = {
    name: tuple(statistics.median(r[name][i] for r in rounds) for i in range(2))
    for name in rounds[0]
  }
  print(markdown(medians, cores), flush=True)


if __name__ == '__main__':
  app.run(main)
