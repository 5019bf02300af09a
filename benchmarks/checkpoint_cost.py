"""What a checkpoint's digests cost: saving and restoring a ResNet-50 train state, with and
without them.

    python -m benchmarks.checkpoint_cost [--repeats=5]

`plain` saves the state alone (`StandardSave`), as checkpoints were saved before they had
digests, and `checkpoints.restore_newest` then restores it unverified; `verified` is what the
training loop does now: `checkpoints.save_args` (the state, the CRC-32 of every array and the
open log window, in one save), and a restore that compares every array with its digest. Save
times are until the save returned (`blocking`) and until its files are complete (`total`).
Medians of --repeats runs, on XLA:CPU.
"""

import statistics
import tempfile
import time

import jax
import orbax.checkpoint as ocp
from absl import app, flags
from etils import epath
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import resnet50
from resnet_jax import checkpoints, optim, train

flags.DEFINE_integer('repeats', 5, 'Saves and restores timed per variant.')
FLAGS = flags.FLAGS


def _state():
  config = resnet50.get_config()
  config.dtype = 'float32'
  mesh = train.make_mesh()
  model = train.create_model(config)
  tx = optim.create_optimizer(config)
  shape = (1, config.image_size, config.image_size, 3)
  return train.create_train_state(model, tx, jax.random.key(0), shape, NamedSharding(mesh, P()))


def _time_variant(state, verified: bool, directory: epath.Path) -> dict[str, float]:
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  window = {'loss': [2.0] * 50, 'top1': [0.5] * 50}
  times = {'save blocking': [], 'save total': [], 'restore': []}
  for repeat in range(FLAGS.repeats):
    root = directory / f'{"verified" if verified else "plain"}{repeat}'
    manager = ocp.CheckpointManager(root)
    start = time.perf_counter()
    args = checkpoints.save_args(state, window) if verified else ocp.args.StandardSave(state)
    manager.save(1, args=args)
    times['save blocking'].append(time.perf_counter() - start)
    manager.wait_until_finished()
    times['save total'].append(time.perf_counter() - start)
    manager.close()
    start = time.perf_counter()
    checkpoints.restore_newest(ocp.CheckpointManager(root), abstract, root)
    times['restore'].append(time.perf_counter() - start)
  return {k: statistics.median(v) for k, v in times.items()}


def main(argv):
  del argv
  state = jax.block_until_ready(_state())
  size = sum(x.nbytes for x in jax.tree.leaves(state))
  print(f'ResNet-50 train state: {size / 2**20:.0f} MiB in {len(jax.tree.leaves(state))} arrays')
  start = time.perf_counter()
  checkpoints.digests(state)
  print(f'digests alone: {1000 * (time.perf_counter() - start):.0f} ms')
  with tempfile.TemporaryDirectory() as directory:
    for verified in (False, True):
      result = _time_variant(state, verified, epath.Path(directory))
      cells = ', '.join(f'{k} {v:.2f} s' for k, v in result.items())
      print(f'{"verified" if verified else "plain   "}: {cells}')


if __name__ == '__main__':
  app.run(main)
