"""Imports PyTorch ResNet weights into the Flax models.

    variables = from_torch_state_dict('iresnet50', torch.load('iresnet50.pth'))
    logits = create_model('iresnet50').apply(variables, images, train=False)

Reads the state_dicts of torchvision's ResNets, of every family of the official iResNet code
(github.com/iduta/iresnet: resstage, iresnet, resgroup(fix), iresgroup(fix)) and of the common
PyTorch CIFAR ResNet (akamaster/pytorch_resnet_cifar10: `linear`, `shortcut`); pre-activation
networks, which have no PyTorch reference, in torchvision's names plus `final_bn`. The PyTorch names
map onto ours block by block (`layer2.3.conv1` is block 3 of `stage2`, counted through the runs
of the model's plan); runs of blocks that our models stack get their tensors stacked along a new
leading axis. Every tensor must be
used and every shape must match, else the error lists the offenders.

As a command, writes an Orbax checkpoint that `--config.init_from=DIR` starts from:

    python -m resnet_jax.convert --model=iresnet50 --checkpoint=iresnet50.pth --output=DIR

PyTorch is needed only to read `.pth` files (a state_dict saved with `np.savez` works without it);
it is never imported by the rest of the package.
"""

import ast
import io
import re
import sys
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags
from flax import traverse_util

from resnet_jax import paths
from resnet_jax.models import create_model, network

# Our top-level modules and the PyTorch names for them.
_TOP = {
  network.STEM_CONV: 'conv1',
  network.STEM_BN: 'bn1',
  network.FINAL_BN: 'final_bn',
  network.HEAD: 'fc',
}
# PyTorch names of other codebases, renamed before matching (akamaster's CIFAR ResNet).
_ALIASES = ((r'^linear\.', 'fc.'), (r'\.shortcut\.', '.downsample.'))
# (our collection, our leaf name) -> PyTorch parameter or buffer name.
_LEAVES = {
  ('params', 'kernel'): 'weight',
  ('params', 'scale'): 'weight',
  ('params', 'bias'): 'bias',
  ('batch_stats', 'mean'): 'running_mean',
  ('batch_stats', 'var'): 'running_var',
}


def from_torch_state_dict(name: str, state_dict: Mapping[str, Any], **overrides) -> dict:
  """`{'params', 'batch_stats'}` of `create_model(name, **overrides)` from a PyTorch state_dict.

  Values may be torch tensors or numpy arrays. Raises a ValueError naming every unused PyTorch
  tensor, every missing one and every shape that does not match.
  """
  return convert_state_dict(create_model(name, **overrides), state_dict)


def convert_state_dict(model: network.ResNet, state_dict: Mapping[str, Any]) -> dict:
  """As `from_torch_state_dict`, for a model instance (e.g. one built with `model.clone(...)`)."""
  state_dict = _clean(state_dict)
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  )
  blocks = _torch_blocks(model)
  variables, used, missing, mismatched = {}, set(), [], []
  for (collection, *path), target in traverse_util.flatten_dict(dict(shapes)).items():
    name = f'{collection}/{"/".join(path)}'
    stacked, keys = _torch_keys(collection, path, blocks, state_dict)
    block_shape = target.shape[1:] if stacked else target.shape
    values = []
    for key in keys:
      if key not in state_dict:
        missing.append(f'{key} (for {name})')
        continue
      used.add(key)
      value = _to_flax_layout(state_dict[key])
      if value.shape != block_shape:
        expected = f' (PyTorch shape {_torch_shape(block_shape)})' if value.ndim > 1 else ''
        mismatched.append(
          f'{key} {tuple(np.shape(state_dict[key]))} does not fit {name} {target.shape}{expected}'
        )
      values.append(value)
    if len(values) == len(keys) and all(v.shape == block_shape for v in values):
      value = np.stack(values) if stacked else values[0]
      variables[(collection, *path)] = value.astype(target.dtype)
  unused = sorted(set(state_dict) - used)
  if missing or unused or mismatched:
    problems = [
      ('PyTorch tensors the model has no place for', unused),
      ('missing from the state_dict', sorted(missing)),
      ('shape mismatches', sorted(mismatched)),
    ]
    details = '\n'.join(
      f'  {title} ({len(items)}): {"; ".join(items[:10])}{"; ..." if len(items) > 10 else ""}'
      for title, items in problems
      if items
    )
    raise ValueError(
      f'The state_dict does not fit this {type(model).__name__}. Depth, width, groups, '
      f'num_classes and shortcut must be those the weights were trained with (pass them as '
      f'options):\n{details}'
    )
  return traverse_util.unflatten_dict(variables)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """A state_dict from a PyTorch checkpoint (`.pth`, `.pt`, `.tar`, `.th`) or an `.npz` file.

  Training checkpoints that wrap it (`{'state_dict': ...}` or `{'model': ...}`) are unwrapped.
  """
  file = paths.resolve(path)
  if not file.exists():
    raise FileNotFoundError(f'Checkpoint {path} does not exist.')
  if file.suffix == '.npz':
    with np.load(io.BytesIO(file.read_bytes())) as npz:
      return dict(npz)
  try:
    import torch  # optional: only needed for PyTorch files
  except ImportError:
    raise ImportError(
      f'Reading {path} needs PyTorch, which resnet_jax does not depend on: run '
      '`pip install torch` (the CPU build is enough), or, where PyTorch is installed, save the '
      'state_dict as .npz with `np.savez(FILE, **{k: v.numpy() for k, v in sd.items()})` and '
      'pass that file.'
    ) from None
  checkpoint = torch.load(io.BytesIO(file.read_bytes()), map_location='cpu', weights_only=True)
  for wrapper in ('state_dict', 'model'):
    if isinstance(checkpoint.get(wrapper), Mapping):
      checkpoint = checkpoint[wrapper]
  return {
    k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in checkpoint.items()
  }


def _clean(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """Drops `num_batches_tracked` and DataParallel's `module.` prefix; renames aliases."""
  cleaned = {}
  for key, value in state_dict.items():
    if key.endswith('num_batches_tracked'):
      continue
    key = key.removeprefix('module.')
    for pattern, replacement in _ALIASES:
      key = re.sub(pattern, replacement, key)
    cleaned[key] = value
  return cleaned


def _torch_blocks(model: network.ResNet) -> dict[tuple[str, str], tuple[bool, list[str]]]:
  """For each (stage, run) of the model's plan: whether the run is stacked, and the PyTorch
  names of its blocks in order (`layer2.0`, ...): the runs follow each other in `layerN`."""
  blocks = {}
  for i, stage in enumerate(model.stages):
    index = 0
    for run in stage.runs:
      count = 1 if run.count is None else run.count
      names = [f'layer{i + 1}.{index + j}' for j in range(count)]
      blocks[network.stage_name(i), run.name] = (run.count is not None, names)
      index += count
  return blocks


def _torch_keys(
  collection: str,
  path: list[str],
  blocks: Mapping[tuple[str, str], tuple[bool, list[str]]],
  state_dict: Mapping[str, Any],
) -> tuple[bool, list[str]]:
  """Whether a variable of ours is stacked, and its PyTorch names (one per block, in order)."""
  *modules, leaf = path
  suffix = _LEAVES[(collection, leaf)]
  if modules[0] in _TOP:
    return False, ['.'.join([_TOP[modules[0]], *modules[1:], suffix])]
  stage, run, *inner = modules
  stacked, names = blocks[stage, run]
  return stacked, ['.'.join([b, *_inner_names(b, inner, state_dict), suffix]) for b in names]


def _inner_names(block: str, inner: list[str], state_dict: Mapping[str, Any]) -> list[str]:
  """PyTorch names inside a block: `conv1`, `bn0` ... as ours; the shortcut is `downsample`, a
  Sequential of conv, BN, or (iResNet's improved shortcut) max-pool, conv, BN."""
  module = inner[0]
  if module not in ('shortcut_conv', 'shortcut_bn'):
    return inner
  pool_first = f'{block}.downsample.2.weight' in state_dict
  index = (module == 'shortcut_bn') + pool_first
  return ['downsample', str(index)]


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
  if len(flax_shape) == 4:
    return tuple(flax_shape[i] for i in (3, 2, 0, 1))
  return tuple(reversed(flax_shape))


def _to_flax_layout(value: Any) -> np.ndarray:
  """Conv OIHW -> HWIO, linear (out, in) -> (in, out); vectors unchanged."""
  if hasattr(value, 'detach'):  # a torch tensor
    value = value.detach().cpu().float().numpy()
  value = np.asarray(value, np.float32)
  if value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  if value.ndim == 2:
    return value.T
  return value


def convert_checkpoint(model: str, checkpoint: str, output: str, **options) -> dict:
  """Converts a PyTorch checkpoint file for `create_model(model, **options)` and saves
  `{'params', 'batch_stats'}` as an Orbax checkpoint in the new directory `output`, restorable
  with `orbax.checkpoint.StandardCheckpointer().restore(output)`. Returns the variables."""
  output = paths.resolve(output)
  if output.exists():
    raise FileExistsError(f'{output} already exists; choose a new directory for the checkpoint.')
  variables = from_torch_state_dict(model, load_state_dict(checkpoint), **options)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(output, variables)
  checkpointer.wait_until_finished()
  return variables


def _parse_option(option: str) -> tuple[str, Any]:
  key, sep, value = option.partition('=')
  if not sep:
    raise ValueError(f'--option={option} is not KEY=VALUE (e.g. --option=groups=32).')
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value  # a bare string, e.g. shortcut=B


def main(argv: list[str]) -> None:
  """Command-line entry; flags are defined only when run as a module (no clash with other CLIs)."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  args = flags.FLAGS
  try:
    options = dict(_parse_option(o) for o in args.option)
    variables = convert_checkpoint(args.model, args.checkpoint, args.output, **options)
  except (ValueError, OSError, ImportError) as error:
    sys.exit(f'Error: {error}')
  count = sum(x.size for x in jax.tree.leaves(variables['params']))
  print(
    f'Wrote {args.model} ({count:,} parameters) to {paths.resolve(args.output)}. Train or '
    f'evaluate from it with --config.model={args.model} --config.init_from={args.output}.'
  )


if __name__ == '__main__':
  flags.DEFINE_string('model', None, 'Registry name, e.g. iresnet50 (see models.list_models()).')
  flags.DEFINE_string('checkpoint', None, 'PyTorch checkpoint (.pth, .pt, .tar, .th) or .npz.')
  flags.DEFINE_string('output', None, 'New directory for the Orbax checkpoint.')
  flags.DEFINE_multi_string(
    'option', [], 'Model option KEY=VALUE for create_model, repeatable (e.g. groups=32).'
  )
  flags.mark_flags_as_required(['model', 'checkpoint', 'output'])
  app.run(main)
