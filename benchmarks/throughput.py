"""Train-step and forward throughput of registry models, side by side with PyTorch.

  python -m benchmarks.throughput --models=resnet50,iresnet50,cifar_resnet56 --batch=8 \
      --image_size=128 --dtype=float32

Measures the project's real train step (`train.jit_train_step`: optimizer, BatchNorm update,
sharding over every device JAX sees) and the eval forward pass: compile time, median step time
over `--steps` timed steps after warm-up, images/s, peak device memory, and utilisation = model
FLOPs per step (2 x MACs from `resnet_jax.summary`, training = 3 x forward) / step time / the
dense matrix-multiply rate measured in the same run. When PyTorch and torchvision import, the
same is measured for torchvision's model of the same name (channels_last; bfloat16 autocast on
GPU when --dtype=bfloat16), with the ratio ours/PyTorch. `--pipeline` adds the images/s the
TFDS augmentation delivers on this host (needs TensorFlow). Prints a Markdown table and writes
JSON to benchmarks/results/<device>_<date>.json.
"""

import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from configs import default
from resnet_jax import summary, train

FLAGS = flags.FLAGS
flags.DEFINE_list('models', ['resnet50', 'iresnet50', 'cifar_resnet56'], 'Registry names.')
flags.DEFINE_integer('batch', 8, 'Global batch size.')
# --image_size (0: 32 for cifar_* models, else 224) is defined by resnet_jax.summary.
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
flags.DEFINE_integer('steps', 20, 'Timed steps per measurement (after warm-up).')
flags.DEFINE_integer('warmup', 3, 'Untimed steps after compilation.')
flags.DEFINE_bool('torch', True, 'Also measure torchvision models when PyTorch is importable.')
flags.DEFINE_bool('pipeline', False, 'Also measure the TFDS input pipeline (needs TensorFlow).')
flags.DEFINE_string('output_dir', os.path.join(os.path.dirname(__file__), 'results'), 'JSON dir.')


def _median_seconds(fn: Callable[[], object], steps: int, warmup: int) -> float:
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_flops_per_second(dtype: jnp.dtype) -> float:
  """Dense matrix-multiply rate of the first device, the yardstick of utilisation."""
  n = 2048 if jax.default_backend() == 'cpu' else 8192
  a = jnp.ones((n, n), dtype)
  matmul = jax.jit(lambda a: a @ a)
  seconds = _median_seconds(lambda: matmul(a), steps=10, warmup=2)
  return 2 * n**3 / seconds


def _peak_memory_bytes() -> int | None:
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get('peak_bytes_in_use')


def measure_jax(name: str, batch: int, image_size: int, dtype: str) -> dict:
  config = default.get_config()
  config.model = name
  config.num_classes = 10 if name.startswith('cifar') else 1000
  config.dtype = dtype
  config.batch_size = batch
  model = train.create_model(config)
  mesh = train.make_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  data_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  tx = train.create_optimizer(config, optax.constant_schedule(0.1))
  shape = (batch, image_size, image_size, 3)
  state = train.create_train_state(model, tx, jax.random.key(0), (1, *shape[1:]), replicated)
  rng = np.random.default_rng(0)
  batch_arrays = jax.device_put(
    {
      'image': rng.standard_normal(shape, dtype=np.float32),
      'label': rng.integers(0, config.num_classes, (batch,), dtype=np.int32),
    },
    data_sharding,
  )
  dropout_rng = jax.random.key(1)

  step = train.jit_train_step(config, mesh)
  start = time.perf_counter()
  compiled = step.lower(state, batch_arrays, dropout_rng).compile()
  train_compile = time.perf_counter() - start
  holder = {'state': state}

  def train_once():
    holder['state'], metrics = compiled(holder['state'], batch_arrays, dropout_rng)
    return metrics

  train_seconds = _median_seconds(train_once, FLAGS.steps, FLAGS.warmup)
  forward = jax.jit(
    lambda s, x: s.apply_fn({'params': s.params, 'batch_stats': s.batch_stats}, x, train=False)
  )
  start = time.perf_counter()
  forward_compiled = forward.lower(holder['state'], batch_arrays['image']).compile()
  forward_compile = time.perf_counter() - start
  forward_seconds = _median_seconds(
    lambda: forward_compiled(holder['state'], batch_arrays['image']), FLAGS.steps, FLAGS.warmup
  )
  macs = summary.count_macs(model, image_size)
  return {
    'train_compile_s': train_compile,
    'forward_compile_s': forward_compile,
    'train_step_s': train_seconds,
    'forward_step_s': forward_seconds,
    'train_flops': 3 * 2 * macs * batch,
    'forward_flops': 2 * macs * batch,
    'peak_memory_bytes': _peak_memory_bytes(),
  }


def measure_torch(name: str, batch: int, image_size: int, dtype: str) -> dict | None:
  """torchvision's model of the same name, in a subprocess: TensorFlow and PyTorch must not
  share a process, nor XLA's and PyTorch's thread pools a core. None without torchvision."""
  command = [
    sys.executable,
    '-m',
    'benchmarks.torch_reference',
    f'--model={name}',
    f'--batch={batch}',
    f'--image_size={image_size}',
    f'--dtype={dtype}',
    f'--steps={FLAGS.steps}',
    f'--warmup={FLAGS.warmup}',
  ]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(command, cwd=root, capture_output=True, text=True)
  if result.returncode:
    raise RuntimeError(f'The PyTorch reference failed:\n{result.stderr[-3000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def measure_pipeline(batch: int) -> dict:
  """Images/s of the training augmentation on synthetic CIFAR-sized and ImageNet-sized data."""
  import tensorflow as tf

  from resnet_jax import input_pipeline

  rng = np.random.default_rng(0)
  results = {}
  cases = {
    # CIFAR: 32x32 uint8 images, pad-4 random crop and flip.
    'cifar10': (tf.constant(rng.integers(0, 256, (1024, 32, 32, 3), dtype=np.uint8)), 32),
    # ImageNet: JPEGs of its typical 500x375 size, random-resized crop to 224 and flip.
    'imagenet2012': (
      tf.stack(
        [tf.io.encode_jpeg(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)) for _ in range(64)]
      ),
      224,
    ),
  }
  for dataset, (images, size) in cases.items():
    preprocess = input_pipeline._train_preprocess(input_pipeline.DATASETS[dataset], size)  # noqa: SLF001
    examples = tf.data.Dataset.from_tensor_slices({'image': images, 'label': tf.zeros(len(images))})
    ds = examples.repeat().enumerate()
    ds = ds.map(
      lambda i, ex, preprocess=preprocess: preprocess(tf.stack([tf.constant(0, tf.int64), i]), ex),
      num_parallel_calls=tf.data.AUTOTUNE,
    )
    iterator = iter(ds.batch(batch).prefetch(tf.data.AUTOTUNE).as_numpy_iterator())
    for _ in range(5):
      next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5.0:
      count += len(next(iterator)['label'])
    results[dataset] = count / (time.perf_counter() - start)
  return results


def _image_size(name: str) -> int:
  return FLAGS.image_size or summary.default_image_size(name)


def _format_bytes(n: int | None) -> str:
  return f'{n / 2**30:.2f} GiB' if n else 'n/a'


def main(argv):
  del argv
  device = jax.devices()[0]
  rate = matmul_flops_per_second(jnp.dtype(FLAGS.dtype))
  print(
    f'\n{jax.device_count()} x {device.device_kind} ({jax.default_backend()}), '
    f'batch {FLAGS.batch}, {FLAGS.dtype}; dense matmul rate {rate / 1e12:.3f} TFLOP/s\n'
  )
  rows = []
  print(
    '| model | px | train compile s | train img/s | fwd img/s | train util | peak mem '
    '| torch train img/s | torch fwd img/s | train ratio | fwd ratio |'
  )
  print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for name in FLAGS.models:
    size = _image_size(name)
    ours = measure_jax(name, FLAGS.batch, size, FLAGS.dtype)
    theirs = measure_torch(name, FLAGS.batch, size, FLAGS.dtype) if FLAGS.torch else None
    row = {'model': name, 'image_size': size, 'batch': FLAGS.batch, 'jax': ours, 'torch': theirs}
    row['train_images_per_s'] = FLAGS.batch / ours['train_step_s']
    row['forward_images_per_s'] = FLAGS.batch / ours['forward_step_s']
    row['train_utilisation'] = ours['train_flops'] / ours['train_step_s'] / rate
    torch_cells = ['—', '—', '—', '—']
    if theirs:
      row['train_ratio'] = theirs['train_step_s'] / ours['train_step_s']
      row['forward_ratio'] = theirs['forward_step_s'] / ours['forward_step_s']
      torch_cells = [
        f'{FLAGS.batch / theirs["train_step_s"]:.1f}',
        f'{FLAGS.batch / theirs["forward_step_s"]:.1f}',
        f'{row["train_ratio"]:.2f}',
        f'{row["forward_ratio"]:.2f}',
      ]
    rows.append(row)
    print(
      f'| {name} | {size} | {ours["train_compile_s"]:.1f} | {row["train_images_per_s"]:.1f} '
      f'| {row["forward_images_per_s"]:.1f} | {row["train_utilisation"]:.1%} '
      f'| {_format_bytes(ours["peak_memory_bytes"])} | ' + ' | '.join(torch_cells) + ' |',
      flush=True,
    )
  result = {
    'date': datetime.datetime.now().isoformat(timespec='seconds'),
    'device': device.device_kind,
    'device_count': jax.device_count(),
    'backend': jax.default_backend(),
    'jax': jax.__version__,
    'dtype': FLAGS.dtype,
    'matmul_flops_per_s': rate,
    'rows': rows,
  }
  if FLAGS.pipeline:
    result['pipeline_images_per_s'] = measure_pipeline(FLAGS.batch)
    print('\nInput pipeline (training augmentation, this host):')
    for dataset, value in result['pipeline_images_per_s'].items():
      print(f'- {dataset}: {value:.0f} img/s')
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  kind = device.device_kind.replace(' ', '_').replace('/', '_')
  path = os.path.join(FLAGS.output_dir, f'{kind}_{datetime.date.today().isoformat()}.json')
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)
  print(f'\nWrote {path}')


if __name__ == '__main__':
  app.run(main)
