"""The PyTorch side of `benchmarks.throughput`: one torchvision model's train step and forward.

Prints one JSON line: {"train_step_s", "forward_step_s", "peak_memory_bytes", "version"}, or
null where PyTorch, torchvision or a torchvision model of that name is missing. PyTorch is a
benchmark-only dependency, never one of the project.
"""

import json
import os
import statistics
import time
from collections.abc import Callable

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'resnet50', 'torchvision model name.')
flags.DEFINE_integer('batch', 8, 'Batch size.')
flags.DEFINE_integer('image_size', 224, 'Image side.')
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'bfloat16: autocast on GPU.')
flags.DEFINE_integer('steps', 20, 'Timed steps.')
flags.DEFINE_integer('warmup', 3, 'Untimed steps.')


def _median_seconds(fn: Callable[[], None], steps: int, warmup: int) -> float:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure(name: str, batch: int, image_size: int, dtype: str) -> dict | None:
  try:
    import torch
    import torchvision
  except ImportError:
    return None
  if not hasattr(torchvision.models, name):
    return None
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.set_num_threads(os.cpu_count())
  model = getattr(torchvision.models, name)(num_classes=1000).to(device)
  model = model.to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
  images = torch.randn(batch, 3, image_size, image_size, device=device)
  images = images.to(memory_format=torch.channels_last)
  labels = torch.randint(0, 1000, (batch,), device=device)
  use_bf16 = dtype == 'bfloat16' and device == 'cuda'

  def sync():
    if device == 'cuda':
      torch.cuda.synchronize()

  def train_once():
    with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
      loss = torch.nn.functional.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    sync()

  def forward_once():
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
      model(images)
    sync()

  model.train()
  train_seconds = _median_seconds(train_once, FLAGS.steps, FLAGS.warmup)
  model.eval()
  forward_seconds = _median_seconds(forward_once, FLAGS.steps, FLAGS.warmup)
  return {
    'train_step_s': train_seconds,
    'forward_step_s': forward_seconds,
    'peak_memory_bytes': torch.cuda.max_memory_allocated() if device == 'cuda' else None,
    'version': torch.__version__,
  }


def main(argv):
  del argv
  print(json.dumps(measure(FLAGS.model, FLAGS.batch, FLAGS.image_size, FLAGS.dtype)))


if __name__ == '__main__':
  app.run(main)
