"""The same steps on one CPU device and on eight, whose results tests compare.

The device count is fixed when JAX starts, so this runs in a process of its own:
`python -m tests.eight_devices train|evaluate OUT.npz`, with
XLA_FLAGS=--xla_force_host_platform_device_count=8. It writes the arrays of each run to OUT.npz
under names 'RUN/DEVICES/NAME'; the test reads them and compares.
"""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import optax
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from configs import quickstart
from resnet_jax import data, evaluation, models, normalize, optim, train


def _meshes() -> dict[int, Mesh]:
  return {n: Mesh(np.array(jax.devices()[:n]), ('data',)) for n in (1, 8)}


def train_runs() -> dict[str, np.ndarray]:
  """Three shipped train steps on 32 images, BatchNorm over the global batch (group 0) and over
  groups of 2 (two in each device's 4 images); and of uint8 images normalised on the devices
  ('uint8') and the same normalised on the host: parameters, statistics and the last loss."""
  config = quickstart.get_config()
  rng = np.random.default_rng(0)
  batches = [
    {
      'image': rng.standard_normal((32, 8, 8, 1), dtype=np.float32),
      'label': rng.integers(0, 10, 32).astype(np.int32),
    }
    for _ in range(3)
  ]
  # The same images as pixels 128 + 32 x, rounded: the normalisation on the devices undoes it.
  pixels = [
    {**b, 'image': np.clip(np.round(128 + 32 * b['image']), 0, 255).astype(np.uint8)}
    for b in batches
  ]
  runs = {
    'group0': (0, batches, None),
    'group2': (2, batches, None),
    'uint8': (0, pixels, normalize.Normalization((128.0,), (32.0,))),
    'host_normalised': (
      0,
      [{**b, 'image': (b['image'] - np.float32(128)) / 32} for b in pixels],
      None,
    ),
  }
  out = {}
  for run, (group, run_batches, normalization) in runs.items():
    config.bn_group_size = group
    model, tx = train.create_model(config), optim.create_optimizer(config)
    for n, mesh in _meshes().items():
      replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
      state = train.create_train_state(model, tx, jax.random.key(0), (1, 8, 8, 1), replicated)
      step = train.jit_train_step(config, mesh, normalization)
      for batch in run_batches:
        batch = jax.device_put(batch, sharded)
        state, metrics = step(state, batch, jax.random.key(1), np.float32(0.1))
      arrays = {'params': state.params, 'batch_stats': state.batch_stats, 'loss': metrics['loss']}
      for name, value in traverse_util.flatten_dict(jax.device_get(arrays), sep='/').items():
        out[f'{run}/{n}/{name}'] = np.asarray(value)
  return out


def mixed_train_runs() -> dict[str, np.ndarray]:
  """Three train steps with mixup or CutMix (a draw per step) and the sigmoid loss, on 32
  images: parameters and each step's loss."""
  config = quickstart.get_config()
  config.mixup_alpha, config.cutmix_alpha, config.loss = 0.2, 1.0, 'sigmoid_xent'
  rng = np.random.default_rng(0)
  batch = {
    'image': rng.standard_normal((32, 8, 8, 1), dtype=np.float32),
    'label': rng.integers(0, 10, 32).astype(np.int32),
  }
  model, tx = train.create_model(config), optim.create_optimizer(config)
  out = {}
  for n, mesh in _meshes().items():
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    state = train.create_train_state(model, tx, jax.random.key(0), (1, 8, 8, 1), replicated)
    step = train.jit_train_step(config, mesh)
    for i in range(3):
      state, metrics = step(
        state, jax.device_put(batch, sharded), jax.random.key(1), np.float32(0.1)
      )
      out[f'{n}/loss{i}'] = np.asarray(metrics['loss'])
    for name, value in traverse_util.flatten_dict(jax.device_get(state.params), sep='/').items():
      out[f'{n}/params/{name}'] = np.asarray(value)
  return out


def evaluate_runs() -> dict[str, np.ndarray]:
  """One evaluation batch of 32 images, 5 of them padding, under each protocol."""
  config = quickstart.get_config()
  config.eval_image_size, config.eval_sizes = 8, (8, 12)
  model = models.create_model('cifar_resnet8', num_classes=10)
  rng = np.random.default_rng(0)
  images = {
    '10crop': rng.standard_normal((32, 12, 12, 1), np.float32),
    'multiscale': tuple(rng.standard_normal((32, s, s, 1), np.float32) for s in (8, 12)),
  }
  images['multiscale_whole'] = images['multiscale']
  sizes = tuple(rng.integers(s // 2, s + 1, (32, 2)).astype(np.int32) for s in (8, 12))
  labels = rng.integers(0, 10, 32).astype(np.int32)
  mask = (np.arange(32) < 27).astype(np.float32)  # Padding at the end, as in a last batch.
  out = {}
  for n, mesh in _meshes().items():
    state = train.create_train_state(
      model, optax.sgd(0.1), jax.random.key(0), (1, 8, 8, 1), NamedSharding(mesh, P())
    )
    for protocol, image in images.items():
      config.eval_protocol = protocol.split('_')[0]
      batch = {'image': image, 'label': labels, 'mask': mask}
      if protocol == 'multiscale_whole':
        batch['size'] = sizes
      eval_data = data.EvalData(lambda batch=batch: iter([batch]), 1)
      step = evaluation.jit_eval_step(config, mesh)
      metrics = evaluation.evaluate(state, step, eval_data, NamedSharding(mesh, P('data')))
      for name, value in metrics.items():
        out[f'{protocol}/{n}/{name}'] = np.asarray(value)
  return out


def run(what: str, out: pathlib.Path) -> dict[str, np.ndarray]:
  """The arrays of `train_runs`, `mixed_train_runs` or `evaluate_runs` ('train', 'train_mixed',
  'evaluate'), run on eight devices."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8')
  repo = pathlib.Path(__file__).parent.parent
  command = [sys.executable, '-m', 'tests.eight_devices', what, str(out)]
  result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  return dict(np.load(out))


if __name__ == '__main__':
  assert jax.device_count() == 8, 'set XLA_FLAGS=--xla_force_host_platform_device_count=8'
  runs = {'train': train_runs, 'train_mixed': mixed_train_runs, 'evaluate': evaluate_runs}
  runs = runs[sys.argv[1]]()
  np.savez(sys.argv[2], **runs)
