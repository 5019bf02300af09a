r"""Compile time and step time of the train step by depth, blocks scanned or unrolled.

    python -m benchmarks.depth --family=cifar_iresnet --depths=56,110,1202,3002

Runs of identical blocks are stacked by `models.network.stack_blocks`. Modes: 'scan' is the
models' default, 'unroll' compiles every block separately (`unroll=True`; only up to
`--max_unrolled_depth`), 'u<k>' unrolls k blocks per loop iteration. The modes of one depth run
their steps in turn (one step each, `--steps` rounds after a warm-up round), so that they see the
same machine. Train step as in `main` (`resnet_jax.train.train_step`), 32 x 32 images.
"""

import statistics
import time

from absl import app, flags

from benchmarks.train_steps import JaxModel
from resnet_jax import host_memory

flags.DEFINE_string('family', 'cifar_iresnet', 'CIFAR family of the registry.')
flags.DEFINE_list('depths', ['56', '110', '1202', '3002'], 'Depths to measure.')
flags.DEFINE_list('modes', ['scan', 'unroll'], "'scan' (the default), 'unroll', 'u<k>'.")
flags.DEFINE_integer('max_unrolled_depth', 110, 'Deeper networks are not compiled unrolled.')
flags.DEFINE_integer('batch', 8, 'Batch size.')
flags.DEFINE_integer('steps', 5, 'Timed rounds (median reported).')
FLAGS = flags.FLAGS


def _unroll(mode: str) -> dict:
  if mode == 'scan':
    return {}
  if mode == 'unroll':
    return {'unroll': True}
  return {'unroll': int(mode[1:])}


def main(argv: list[str]) -> None:
  del argv
  print(f'train step, batch {FLAGS.batch}, 32 x 32, float32')
  print('| model | blocks | compile s | step ms |')
  print('|---|---|---|---|')
  for depth in FLAGS.depths:
    name = f'{FLAGS.family}{depth}'
    modes = [m for m in FLAGS.modes if m != 'unroll' or int(depth) <= FLAGS.max_unrolled_depth]
    runs = {m: JaxModel(name, FLAGS.batch, 32, 'float32', **_unroll(m)) for m in modes}
    times = {m: [] for m in modes}
    for round_ in range(FLAGS.steps + 1):
      for mode, model in runs.items():
        start = time.perf_counter()
        model.train_step()
        if round_:
          times[mode].append(time.perf_counter() - start)
    for mode, model in runs.items():
      step_ms = 1e3 * statistics.median(times[mode])
      print(f'| {name} | {mode} | {model.compile_s:.1f} | {step_ms:.0f} |', flush=True)
    del runs


if __name__ == '__main__':
  host_memory.reexec_with_huge_pages()
  app.run(main)
