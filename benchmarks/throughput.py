r"""Throughput of the project's train step and eval forward, side by side with PyTorch.

    python -m benchmarks.throughput --models=resnet50,iresnet50,cifar_resnet56 \
        --batch=8 --image_size=128 --dtype=float32

For each model: compile time, median step time over `--steps` steps after `--warmup`, images/s,
memory, and utilisation = model FLOPs per step (2 x the MACs of `resnet_jax.summary`; training
counts 3x the forward) / step time / the dense matmul rate measured in the same run. The train
step is `resnet_jax.train.train_step` (optimizer, BatchNorm update, sharding as in `main`), the
eval step `resnet_jax.evaluation.eval_step`. When torch and torchvision import and torchvision
has a model of the same name, its train step (SGD with momentum and weight decay, channels_last, AMP
bfloat16 on GPU when --dtype=bfloat16) and eval forward run in alternation with ours, step for
step, so that both see the same machine; the ratio is PyTorch's time / ours (> 1: we are faster).
When TensorFlow imports, the input pipeline's augmentation is measured too. Prints a Markdown
table; writes JSON to benchmarks/results/<device kind>_<date>_<time>.json.
"""

import datetime
import json
import os
import platform
import statistics
import sys
import time

# PyTorch is optional. It must be imported before TensorFlow (which resnet_jax.train loads through
# clu when it is installed): the other order crashes in torch's import of triton.
try:
  import torch
  import torchvision
except ImportError:
  torch = torchvision = None

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks.train_steps import JaxModel
from resnet_jax import host_memory, summary

flags.DEFINE_list('models', ['resnet50', 'iresnet50', 'cifar_resnet56'], 'Registry names.')
flags.DEFINE_integer('batch', 8, 'Global batch size.')
flags.DEFINE_integer('image_size', 0, 'Image side; 0: 32 for cifar_* models, else 224.')
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
flags.DEFINE_integer('steps', 20, 'Timed steps per measurement (median reported).')
flags.DEFINE_integer('warmup', 3, 'Untimed steps before timing.')
flags.DEFINE_enum(
  'torch', 'auto', ['auto', 'on', 'off'], 'Measure torchvision (auto: if importable).'
)
flags.DEFINE_bool('pipeline', True, 'Measure the input pipeline (needs TensorFlow).')
flags.DEFINE_string('output_dir', 'benchmarks/results', 'Where the JSON goes (empty: nowhere).')
FLAGS = flags.FLAGS


def _median_ms(times: list[float]) -> float:
  return 1e3 * statistics.median(times)


def matmul_rate(dtype: str) -> float:
  """Dense matrix-multiply FLOP/s of the first device, float32 or bfloat16, best of 10."""
  n = 4096 if jax.default_backend() == 'cpu' else 8192
  a = jnp.ones((n, n), dtype)
  matmul = jax.jit(lambda a: a @ a)
  jax.block_until_ready(matmul(a))
  best = float('inf')
  for _ in range(10):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a))
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best


class TorchModel:
  """torchvision's model of the same name: SGD step (momentum, weight decay) and eval forward."""

  def __init__(self, torch, torchvision, name: str, batch: int, image_size: int, dtype: str):
    self.torch = torch
    device = 'cuda' if jax.default_backend() == 'gpu' and torch.cuda.is_available() else 'cpu'
    self.device = device
    num_classes = 10 if name.startswith('cifar') else 1000
    model = getattr(torchvision.models, name)(num_classes=num_classes)
    self.model = model.to(device, memory_format=torch.channels_last)
    self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    self.images = torch.randn(batch, 3, image_size, image_size, device=device).to(
      memory_format=torch.channels_last
    )
    self.labels = torch.randint(0, num_classes, (batch,), device=device)
    self.amp = device == 'cuda' and dtype == 'bfloat16'
    self.compile_s = None

  def _sync(self):
    if self.device == 'cuda':
      self.torch.cuda.synchronize()

  def _autocast(self):
    return self.torch.autocast(self.device, dtype=self.torch.bfloat16, enabled=self.amp)

  def train_step(self) -> None:
    self.model.train()
    self.optimizer.zero_grad(set_to_none=True)
    with self._autocast():
      loss = self.torch.nn.functional.cross_entropy(self.model(self.images), self.labels)
    loss.backward()
    self.optimizer.step()
    self._sync()

  def eval_step(self) -> None:
    self.model.eval()
    with self.torch.no_grad(), self._autocast():
      self.model(self.images)
    self._sync()

  def memory(self) -> tuple[float | None, str]:
    if self.device == 'cuda':
      return self.torch.cuda.max_memory_allocated() / 2**20, 'device peak'
    return None, ''


def _time_alternating(steps: list, warmup: int, count: int) -> list[list[float]]:
  """Runs each step function `warmup` times, then all of them in turn `count` times."""
  for step in steps:
    for _ in range(warmup):
      step()
  times = [[] for _ in steps]
  for _ in range(count):
    for step, record in zip(steps, times, strict=True):
      start = time.perf_counter()
      step()
      record.append(time.perf_counter() - start)
  return times


def _import_torch():
  if FLAGS.torch == 'off' or (torch is None and FLAGS.torch == 'auto'):
    return None
  if torch is None:
    raise ImportError('--torch=on, but torch and torchvision do not import.')
  # As many threads as JAX's CPU client uses: one per core this process may run on.
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  return torch, torchvision


def pipeline_rates(image_size: int, batch: int) -> list[dict]:
  """Images/s of the TFDS pipeline's training augmentation on synthetic examples."""
  try:
    import tensorflow as tf

    from resnet_jax import input_pipeline
  except ImportError:
    return []
  rows = []
  rng = np.random.default_rng(0)
  # ImageNet-like JPEGs: smooth 375 x 500 images (noise decodes slower than photographs).
  small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
  photo = tf.image.resize(small[None], (375, 500), method='bicubic')[0]
  photo = tf.cast(tf.clip_by_value(photo + rng.normal(0, 8, photo.shape), 0, 255), tf.uint8)
  jpeg = tf.io.encode_jpeg(photo, quality=90)
  cifar = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  for dataset, size, image in (('cifar10', 32, cifar), ('imagenet2012', image_size, jpeg)):
    spec = input_pipeline.DATASETS[dataset]
    # TF's crop sampler, as the measurements in NOTES.md were taken with.
    preprocess = input_pipeline._train_preprocess(spec, size, 'inception')
    examples = tf.data.Dataset.from_tensors({'image': image, 'label': 0}).repeat()
    ds = examples.enumerate().map(
      lambda i, ex, preprocess=preprocess: preprocess(tf.stack([tf.constant(0, tf.int64), i]), ex),
      num_parallel_calls=tf.data.AUTOTUNE,
    )
    ds = ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    iterator = ds.as_numpy_iterator()
    for _ in range(5):
      next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5.0:
      count += next(iterator)['image'].shape[0]
    rows.append(
      {
        'augmentation': f'{dataset} ({spec.augmentation})',
        'image_size': size,
        'images_per_s': count / (time.perf_counter() - start),
      }
    )
  return rows


def _fmt(value, digits=1, suffix=''):
  return 'n/a' if value is None else f'{value:.{digits}f}{suffix}'


def markdown(result: dict) -> str:
  lines = [
    f'{result["device"]} ({result["device_count"]} device(s)), batch {result["batch"]}, '
    f'dtype {result["dtype"]}, dense matmul {result["matmul_tflops"]:.3g} TFLOP/s',
    '',
    '| model | px | framework | compile s | train ms | train img/s | train util | '
    'eval ms | eval img/s | eval util | memory MiB | train ratio | eval ratio |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in result['rows']:
    lines.append(
      f'| {r["model"]} | {r["image_size"]} | {r["framework"]} | {_fmt(r["compile_s"])} | '
      f'{r["train_ms"]:.1f} | {r["train_images_per_s"]:.1f} | {r["train_util"]:.1%} | '
      f'{r["eval_ms"]:.1f} | {r["eval_images_per_s"]:.1f} | {r["eval_util"]:.1%} | '
      f'{_fmt(r["memory_mib"], 0)} | {_fmt(r.get("train_ratio"), 2)} | '
      f'{_fmt(r.get("eval_ratio"), 2)} |'
    )
  lines.append('')
  lines.append(
    'ratio: PyTorch step time / ours (> 1: ours is faster), medians of steps run in turn. '
    'util: model FLOPs / step time / dense matmul rate. memory: '
    + '; '.join(
      sorted({f'{r["framework"]}: {r["memory_kind"]}' for r in result['rows'] if r['memory_kind']})
    )
    + '.'
  )
  if result['pipeline']:
    lines += ['', '| input pipeline augmentation | px | images/s |', '|---|---|---|']
    for p in result['pipeline']:
      lines.append(f'| {p["augmentation"]} | {p["image_size"]} | {p["images_per_s"]:.0f} |')
  return '\n'.join(lines)


def main(argv: list[str]) -> None:
  del argv
  torch_modules = _import_torch()
  rate = matmul_rate(FLAGS.dtype)
  rows = []
  for name in FLAGS.models:
    size = FLAGS.image_size or summary.default_image_size(name)
    ours = JaxModel(name, FLAGS.batch, size, FLAGS.dtype)
    runners = [('resnet_jax', ours)]
    if torch_modules and hasattr(torch_modules[1].models, name):
      runners.append(
        ('torchvision', TorchModel(*torch_modules, name, FLAGS.batch, size, FLAGS.dtype))
      )
    train_times = _time_alternating([r.train_step for _, r in runners], FLAGS.warmup, FLAGS.steps)
    eval_times = _time_alternating([r.eval_step for _, r in runners], FLAGS.warmup, FLAGS.steps)
    flops = 2 * summary.count_macs(ours.model, size) * FLAGS.batch
    for (framework, runner), train_t, eval_t in zip(runners, train_times, eval_times, strict=True):
      memory, memory_kind = runner.memory()
      train_ms, eval_ms = _median_ms(train_t), _median_ms(eval_t)
      rows.append(
        {
          'model': name,
          'image_size': size,
          'framework': framework,
          'compile_s': runner.compile_s,
          'train_ms': train_ms,
          'train_images_per_s': FLAGS.batch / train_ms * 1e3,
          'train_util': 3 * flops / (train_ms / 1e3) / rate,
          'eval_ms': eval_ms,
          'eval_images_per_s': FLAGS.batch / eval_ms * 1e3,
          'eval_util': flops / (eval_ms / 1e3) / rate,
          'memory_mib': memory,
          'memory_kind': memory_kind,
          'train_times_ms': [1e3 * t for t in train_t],
          'eval_times_ms': [1e3 * t for t in eval_t],
        }
      )
    if len(runners) == 2:
      ours_row, torch_row = rows[-2], rows[-1]
      ours_row['train_ratio'] = torch_row['train_ms'] / ours_row['train_ms']
      ours_row['eval_ratio'] = torch_row['eval_ms'] / ours_row['eval_ms']
    del ours, runners
  device = jax.devices()[0]
  result = {
    'date': datetime.datetime.now().isoformat(timespec='seconds'),
    'device': f'{device.device_kind} ({_cpu_name()}, {os.cpu_count()} cores)'
    if device.platform == 'cpu'
    else device.device_kind,
    'device_count': jax.device_count(),
    'batch': FLAGS.batch,
    'dtype': FLAGS.dtype,
    'steps': FLAGS.steps,
    'matmul_tflops': rate / 1e12,
    'versions': {
      'jax': jax.__version__,
      'torch': torch_modules[0].__version__ if torch_modules else None,
      'python': platform.python_version(),
    },
    'rows': rows,
    'pipeline': pipeline_rates(FLAGS.image_size or 224, FLAGS.batch) if FLAGS.pipeline else [],
  }
  print(markdown(result))
  if FLAGS.output_dir:
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    kind = device.device_kind.replace(' ', '_').lower()
    stamp = datetime.datetime.now().strftime('%Y-%m-%d_%H%M')
    path = os.path.join(FLAGS.output_dir, f'{kind}_{stamp}.json')
    with open(path, 'w') as f:
      json.dump(result, f, indent=1)
    print(f'\nwrote {path}', file=sys.stderr)


def _cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown CPU'


if __name__ == '__main__':
  host_memory.reexec_with_huge_pages()
  app.run(main)
