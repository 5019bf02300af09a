"""Layer responses of a trained network: the standard deviations of He 2015's Fig. 7.

He 2015 (Sec. 4.2, Fig. 7): "The responses are the outputs of each 3x3 layer, after BN and
before other nonlinearity (ReLU/addition)." ResNets have smaller responses than their plain
counterparts, which supports the paper's argument that residual functions are closer to zero.

Here a response is, in network order:

* the stem's BN output, before its ReLU, when the stem is a 3x3 convolution (the CIFAR layout:
  the first of the 6n+1 3x3 layers of a 6n+2-layer network; Fig. 7's caption counts "each 3x3
  layer", and the paper's layer count includes it). The ImageNet 7x7 stem is not a 3x3 layer.
* in each block, the output of the BN after each 3x3 convolution of the residual branch: in a
  basic block both (`bn1`, before its ReLU, and `bn2`, before the addition and the ReLU), in a
  bottleneck the middle one (`bn2`). A plain network (`shortcut='none'`) has the same layers at
  the same positions; its "addition" adds zero.

So a CIFAR network of depth 6n+2 has 6n+1 responses (19 for cifar_resnet20 and cifar_plain20).
The definition carries over to the units whose every convolution is directly followed by its own
BN: He 2015's post-activation unit and He 2016's variants of it that keep that order (ReLU before
addition, ReLU-only pre-activation, modulated shortcuts). It does not to the others, which are
refused: in a full pre-activation unit (He 2016) and in Duta 2020's middle and end blocks the
branch's last convolution goes into the addition with no BN in between, and in the
BN-after-addition unit that BN normalises the sum, so "after BN, before addition" names no tensor.

The std of a layer is taken over every element of its output (images, positions, channels) for a
batch of evaluation images, in eval mode (BN with the stored running statistics), in float32.
The outputs are read with Flax's `capture_intermediates`; stacked runs of blocks
(`network.stack_blocks`) return theirs with a leading block axis, which is unstacked here.
"""

import json
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from resnet_jax import checkpoints, data, errors, normalize, paths, train
from resnet_jax.models import network
from resnet_jax.models.blocks import (
  BatchNorm,
  ModulatedShortcutBlock,
  PostActBlock,
  ReLUBeforeAdditionBlock,
  ReLUPreActBlock,
)

# Units whose every convolution is directly followed by its own BN (`bn{i}` after `conv{i}`).
RESPONSE_BLOCKS = (PostActBlock, ModulatedShortcutBlock, ReLUBeforeAdditionBlock, ReLUPreActBlock)


class Responses(NamedTuple):
  """The responses of one run: its checkpoint step, config, and std per layer in network order
  (layer names as `response_layers`)."""

  step: int
  config: ml_collections.ConfigDict
  std: dict[str, float]


class _Layer(NamedTuple):
  path: tuple[str, ...]  # The BN's module path, as in the 'intermediates' collection.
  index: int | None  # Block index within a stacked run, None for a single module.

  @property
  def name(self) -> str:
    parts = list(self.path)
    if self.index is not None:
      parts.insert(-1, str(self.index))
    return '/'.join(parts)


def _layers(model: network.ResNet) -> list[_Layer]:
  layers = []
  if model.stem.kernel_size == 3 and model.stem.norm:
    layers.append(_Layer((network.STEM_BN,), None))
  for i, plan in enumerate(model.stages):
    for run in plan.runs:
      block_cls = getattr(run.block, 'func', run.block)
      if not issubclass(block_cls, RESPONSE_BLOCKS):
        raise errors.ConfigError(
          f"{network.stage_name(i)}/{run.name} is a {block_cls.__name__}, where He 2015's "
          "layer response (a 3x3 convolution's output after its BN, before addition and ReLU) "
          "names no tensor: the branch's last convolution is not directly followed by its own "
          'BN. Responses are defined for post-activation networks (resnet, plain, their CIFAR '
          'families, and the He 2016 variants that keep conv-BN order).'
        )
      block = run.block(conv=None, norm=None, act=None, features=plan.features, width=plan.width)
      bns = [f'bn{k}' for k, conv in enumerate(block.convs(), start=1) if conv[1] == 3]
      prefix = (network.stage_name(i), run.name)
      if run.count is None:
        layers += [_Layer((*prefix, bn), None) for bn in bns]
      else:
        layers += [_Layer((*prefix, bn), k) for k in range(run.count) for bn in bns]
  return layers


def response_layers(model: network.ResNet) -> list[str]:
  """Names of the layers whose responses `layer_responses` returns, in network order: 'stem_bn',
  'stage1/first/bn1', and for the k-th block of a stacked run 'stage1/rest/k/bn1'.

  Raises ConfigError for a network where the definition does not apply (see the module doc)."""
  return [layer.name for layer in _layers(model)]


def layer_responses(
  model: network.ResNet, variables: dict, images: np.ndarray | jax.Array
) -> dict[str, float]:
  """Std of each response (see the module doc) of `model` with `variables` ({'params',
  'batch_stats'}) on `images` (NHWC), in eval mode; {layer name: std} in network order."""
  layers = _layers(model)

  @jax.jit
  def stds(variables, images):
    _, state = model.apply(
      variables,
      images,
      train=False,
      capture_intermediates=lambda module, _: isinstance(module, BatchNorm),
      mutable=['intermediates'],
    )
    captured = state['intermediates']
    out = {}
    for path in {layer.path for layer in layers}:
      (y,) = _get(captured, path)
      y = y.astype(jnp.float32)
      # A stacked run's outputs have a leading block axis: one std per block.
      stacked = y.ndim == images.ndim + 1
      out[path] = jnp.std(y, axis=tuple(range(1 if stacked else 0, y.ndim)))
    return out

  values = jax.device_get(stds(variables, jnp.asarray(images, jnp.float32)))
  return {
    layer.name: float(
      values[layer.path] if layer.index is None else values[layer.path][layer.index]
    )
    for layer in layers
  }


def _get(tree: dict, path: Sequence[str]) -> tuple:
  """The captured outputs of the module at `path`."""
  for key in path:
    tree = tree[key]
  return tree['__call__']


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with: WORKDIR/config.json, else summary.json's 'config'."""
  root = paths.resolve(workdir)
  if (root / 'config.json').exists():
    return ml_collections.ConfigDict(json.loads((root / 'config.json').read_text()))
  if (root / 'summary.json').exists():
    return ml_collections.ConfigDict(json.loads((root / 'summary.json').read_text())['config'])
  raise errors.WorkdirError(f'{workdir} has neither config.json nor summary.json: not a run.')


def restore_variables(workdir: str) -> tuple[int, dict]:
  """(step, {'params', 'batch_stats'}) of the newest finished checkpoint of a run, on the first
  local device; the abstract tree comes from the checkpoint's own metadata, so no model or
  optimizer has to be built to read it. Nothing in the workdir is changed (a damaged checkpoint
  raises, it is not set aside as training does)."""
  directory = paths.resolve(workdir) / 'checkpoints'
  steps = [p for p in checkpoints.step_directories(directory) if p.name.isdigit()]
  if not steps:
    raise errors.CheckpointError(f'{workdir} has no checkpoint in {directory}.')
  item = steps[0] / 'default'
  handler = ocp.StandardCheckpointHandler()
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), handler.metadata(item).tree
  )
  # The whole state is read (this Orbax restores no subtree); only the model's part is kept.
  state = handler.restore(item, args=ocp.args.StandardRestore(target))
  return int(steps[0].name), {'params': state['params'], 'batch_stats': state['batch_stats']}


def eval_images(config: ml_collections.ConfigDict, num_images: int) -> np.ndarray:
  """The first `num_images` images of the run's evaluation split (fewer if it is smaller), as
  its eval pass preprocesses them, centre crop."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.eval_protocol = 'center'  # One image per example, at the size the network trained on.
  images, dataset = [], data.Data(config)
  for batch in dataset.eval().start_pass():
    images.append(batch['image'][batch['mask'] > 0])
    if sum(len(x) for x in images) >= num_images:
      break
  return np.asarray(normalize.images(np.concatenate(images)[:num_images], dataset.normalization()))


def run_responses(
  workdir: str, images: np.ndarray | None = None, num_images: int = 500
) -> Responses:
  """The responses of a run's newest checkpoint, its model rebuilt from the recorded config in
  float32, on `images` or else the first `num_images` of its evaluation split."""
  config = read_config(workdir)
  step, variables = restore_variables(workdir)
  model_config = ml_collections.ConfigDict(config.to_dict())
  model_config.dtype = 'float32'
  model = train.create_model(model_config)
  if images is None:
    images = eval_images(config, num_images)
  return Responses(step, config, layer_responses(model, variables, images))
