r"""Compile time and step time of the train step by depth, blocks scanned or unrolled.

    python -m benchmarks.depth --family=cifar_iresnet --depths=56,110,1202,3002

Runs of identical blocks are stacked by `resnet_jax.models.stacking`: 'scan' is the models'
default (`unroll` and `remat` as the model sets them), 'unroll' compiles every block separately
(`unroll=True`), feasible only for shallow networks (`--max_unrolled_depth`). Train step as in
`main` (`resnet_jax.train.train_step`), median of `--steps` steps after one warm-up step.
"""

import statistics
import time

from absl import app, flags

from benchmarks import host
from benchmarks.throughput import JaxModel

flags.DEFINE_string('family', 'cifar_iresnet', 'CIFAR family of the registry.')
flags.DEFINE_list('depths', ['56', '110', '1202', '3002'], 'Depths to measure.')
flags.DEFINE_list('modes', ['scan', 'unroll'], "'scan' (the model's default) and/or 'unroll'.")
flags.DEFINE_integer('max_unrolled_depth', 110, 'Deeper networks are not compiled unrolled.')
flags.DEFINE_integer('batch', 8, 'Batch size.')
flags.DEFINE_integer('steps', 5, 'Timed steps (median reported).')
FLAGS = flags.FLAGS


def measure(name: str, mode: str) -> tuple[float, float]:
  """(compile seconds, median step seconds) of the train step, 32 x 32 images."""
  kwargs = {'unroll': True} if mode == 'unroll' else {}
  model = JaxModel(name, FLAGS.batch, 32, 'float32', **kwargs)
  model.train_step()
  times = []
  for _ in range(FLAGS.steps):
    start = time.perf_counter()
    model.train_step()
    times.append(time.perf_counter() - start)
  return model.compile_s, statistics.median(times)


def main(argv: list[str]) -> None:
  del argv
  print(f'train step, batch {FLAGS.batch}, 32 x 32, float32')
  print('| model | blocks | compile s | step ms |')
  print('|---|---|---|---|')
  for depth in FLAGS.depths:
    name = f'{FLAGS.family}{depth}'
    for mode in FLAGS.modes:
      if mode == 'unroll' and int(depth) > FLAGS.max_unrolled_depth:
        continue
      compile_s, step_s = measure(name, mode)
      print(f'| {name} | {mode} | {compile_s:.1f} | {1e3 * step_s:.0f} |', flush=True)


if __name__ == '__main__':
  host.reexec_with_huge_pages('benchmarks.depth')
  app.run(main)
