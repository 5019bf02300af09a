r"""torchvision's two ImageNet input pipelines on an image folder: the reference rows of
`benchmarks.input_pipeline`.

NEEDS A SEPARATE ENVIRONMENT with torch, torchvision and Pillow, which this project does not
depend on; nothing of the project or its tests imports this file.

    /path/to/torch-env/bin/python benchmarks/torchvision_pipeline.py --folder=DIR [--seconds=S]

'PIL': `datasets.ImageFolder` (PIL decode) and transforms v1, as torchvision's ImageNet reference
scripts train: RandomResizedCrop(224), RandomHorizontalFlip, ToTensor, Normalize; evaluation
Resize(256), CenterCrop(224). 'torchvision.io': `decode_jpeg` of the file's bytes and transforms v2
on uint8 tensors, then ToDtype(float32, scale) and Normalize. Both through a DataLoader with one
worker process per core the process may use, one thread each, batches of 128.
"""

import argparse
import json
import os
import time

import torch
import torchvision
from torch.utils import data
from torchvision import datasets, transforms
from torchvision.transforms import v2

BATCH, SIZE, RESIZE = 128, 224, 256
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _one_thread(_):
  torch.set_num_threads(1)


def _decode(path: str) -> torch.Tensor:
  return torchvision.io.decode_jpeg(
    torchvision.io.read_file(path), mode=torchvision.io.ImageReadMode.RGB
  )


def pipelines() -> dict[str, tuple]:
  """{name: (loader of a path, training transform, evaluation transform)}."""
  return {
    'PIL': (
      datasets.folder.default_loader,
      transforms.Compose(
        [
          transforms.RandomResizedCrop(SIZE),
          transforms.RandomHorizontalFlip(),
          transforms.ToTensor(),
          transforms.Normalize(MEAN, STD),
        ]
      ),
      transforms.Compose(
        [
          transforms.Resize(RESIZE),
          transforms.CenterCrop(SIZE),
          transforms.ToTensor(),
          transforms.Normalize(MEAN, STD),
        ]
      ),
    ),
    'torchvision.io': (
      _decode,
      v2.Compose(
        [
          v2.RandomResizedCrop(SIZE, antialias=True),
          v2.RandomHorizontalFlip(),
          v2.ToDtype(torch.float32, scale=True),
          v2.Normalize(MEAN, STD),
        ]
      ),
      v2.Compose(
        [
          v2.Resize(RESIZE, antialias=True),
          v2.CenterCrop(SIZE),
          v2.ToDtype(torch.float32, scale=True),
          v2.Normalize(MEAN, STD),
        ]
      ),
    ),
  }


def _cpu_seconds(pids: list[int]) -> float:
  """User and system CPU seconds of the processes `pids` so far (/proc/PID/stat)."""
  total = 0
  for pid in pids:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    total += int(fields[11]) + int(fields[12])  # utime, stime
  return total / os.sysconf('SC_CLK_TCK')


def rate(loader: data.DataLoader, seconds: float) -> tuple[float, float]:
  """(Images/s, CPU ms per image of this process and its workers) after two batches."""
  batches = iter(loader)
  for _ in range(2):
    next(batches)
  pids = [os.getpid()] + [w.pid for w in batches._workers]  # noqa: SLF001
  count, start, cpu = 0, time.perf_counter(), _cpu_seconds(pids)
  while time.perf_counter() - start < seconds:
    count += len(next(batches)[0])
  return count / (time.perf_counter() - start), 1e3 * (_cpu_seconds(pids) - cpu) / count


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--folder', required=True)
  parser.add_argument('--seconds', type=float, default=8.0)
  parser.add_argument('--json', action='store_true', help='One JSON line {pipeline: img/s}.')
  args = parser.parse_args()
  cores = len(os.sched_getaffinity(0))
  torch.set_num_threads(1)
  rates = {}
  for name, (loader, train, evaluate) in pipelines().items():
    for split, transform in (('train', train), ('validation', evaluate)):
      dataset = datasets.ImageFolder(os.path.join(args.folder, split), transform, loader=loader)
      # One long epoch of random draws: the steady state, as the project's rates.
      sampler = data.RandomSampler(dataset, replacement=True, num_samples=10**7)
      batches = data.DataLoader(
        dataset,
        BATCH,
        sampler=sampler,
        num_workers=cores,
        worker_init_fn=_one_thread,
        drop_last=True,
        prefetch_factor=4,
      )
      which = 'train' if split == 'train' else 'eval'
      rates[f'torchvision, {name}, {which}'] = rate(batches, args.seconds)
  if args.json:
    print(json.dumps(rates))
    return
  print(f'torchvision {torchvision.__version__}, {cores} worker process(es)\n')
  print('| pipeline | img/s | img/s per core | CPU ms per image |\n|---|---|---|---|')
  for name, (value, cpu_ms) in rates.items():
    print(f'| {name} | {value:,.0f} | {value / cores:,.0f} | {cpu_ms:.2f} |')


if __name__ == '__main__':
  main()
