r"""Parameters and multiply-accumulates of a registry model, in total and per stage.

    python -m resnet_jax.summary --model=iresnet50 [--image_size=224]
    python -m resnet_jax.summary --model=all    # Markdown table of the whole registry

MACs are counted exactly from the model's jaxpr for one image: every convolution contributes
(output elements) x (kernel height x width x input channels / groups), every dense layer
(output elements) x (contracted size); a scanned run of blocks counts its body once per block.
BatchNorm, ReLU, pooling and additions are not counted (the convention of the papers' "FLOPs",
e.g. ResNet-50: 4.09 G at 224 x 224).
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import linen as nn
from flax.traverse_util import flatten_dict

from resnet_jax import models
from resnet_jax.models import network

_PARTS = {network.STEM_CONV: 'stem', network.STEM_BN: 'stem', network.FINAL_BN: 'head'}


def _part(name: str) -> str:
  """Row of the table a module belongs to: stem, stage<k> or head (classifier, final BN)."""
  for module in name.split('/'):
    if module in _PARTS:
      return _PARTS[module]
    if module.startswith(network.STAGE_PREFIX):
      return module
  return 'head'


def _macs(jaxpr: jax.extend.core.Jaxpr, prefix: str, totals: dict[str, int], times: int) -> None:
  for eqn in jaxpr.eqns:
    name = f'{prefix}/{eqn.source_info.name_stack}'
    out_size = math.prod(eqn.outvars[0].aval.shape) if eqn.outvars else 0
    macs = 0
    if eqn.primitive.name == 'conv_general_dilated':
      kernel = eqn.invars[1].aval.shape
      out_axis = eqn.params['dimension_numbers'].rhs_spec[0]
      macs = out_size * math.prod(kernel) // kernel[out_axis]
    elif eqn.primitive.name == 'dot_general':
      (contracting, _), _ = eqn.params['dimension_numbers']
      macs = out_size * math.prod(eqn.invars[0].aval.shape[d] for d in contracting)
    if macs:
      totals[_part(name)] = totals.get(_part(name), 0) + macs * times
    if eqn.primitive.name == 'cond':
      # One branch runs: count the costliest (conv_ops' per-platform branches are one
      # convolution written two ways).
      branches = []
      for branch in eqn.params['branches']:
        branches.append({})
        _macs(branch.jaxpr, name, branches[-1], times)
      for part, count in max(branches, key=lambda b: sum(b.values())).items():
        totals[part] = totals.get(part, 0) + count
      continue
    inner_times = times * (eqn.params['length'] if eqn.primitive.name == 'scan' else 1)
    for param in eqn.params.values():
      for sub in param if isinstance(param, tuple | list) else (param,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          _macs(sub.jaxpr, name, totals, inner_times)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          _macs(sub, name, totals, inner_times)


def summarize(model: nn.Module, image_size: int, channels: int = 3) -> dict[str, Any]:
  """{'params', 'macs', 'parts': [{'name', 'output', 'params', 'macs'}, ...]} for one image.

  Parts are the stem, each stage and the head (final BN, pooling, classifier). Nothing is
  computed: shapes come from `jax.eval_shape`, MACs from the jaxpr.
  """
  image = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), image)

  # Input and output shapes of the network's direct submodules (stem_conv, stage1, head, ...).
  shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    path = context.module.scope.path
    if context.method_name == '__call__' and len(path) == 1:
      shapes[path[0]] = (args[0].shape[1:], out.shape[1:])
    return out

  with nn.intercept_methods(record):
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, image).jaxpr
  outputs = {_part(name): out for name, (_, out) in shapes.items()}
  outputs['stem'] = shapes[network.stage_name(0)][0]  # after the stem's max-pool, if any
  params: dict[str, int] = {}
  for path, leaf in flatten_dict(variables['params']).items():
    params[_part(path[0])] = params.get(_part(path[0]), 0) + leaf.size
  macs: dict[str, int] = {}
  _macs(jaxpr, '', macs, 1)
  stages = [network.stage_name(i) for i in range(len(model.stages))]
  names = ['stem', *stages]
  parts = [
    {'name': n, 'output': outputs.get(n, ()), 'params': params.get(n, 0), 'macs': macs.get(n, 0)}
    for n in names + ['head']
  ]
  return {'params': sum(params.values()), 'macs': sum(macs.values()), 'parts': parts}


def count_macs(model: nn.Module, image_size: int, channels: int = 3) -> int:
  """Multiply-accumulates of convolutions and dense layers for one image."""
  return summarize(model, image_size, channels)['macs']


def default_image_size(name: str) -> int:
  return 32 if name.startswith('cifar_') else 224


def format_count(n: int) -> str:
  """Three significant digits: 4.09 G, 15.0 G, 40.6 M, 270 K."""
  for unit, scale in (('G', 1e9), ('M', 1e6), ('K', 1e3)):
    if n >= scale * (1 - 5e-4):  # 999,999 is 1.00 M, not 1000 K
      return f'{n / scale:#.3g}'.rstrip('.') + f' {unit}'
  return str(n)


def format_summary(name: str, image_size: int, summary: dict[str, Any]) -> str:
  lines = [
    f'{name} at {image_size}x{image_size}',
    f'parameters  {summary["params"]:,}',
    f'MACs        {format_count(summary["macs"])} ({summary["macs"]:,})',
    '',
    f'{"part":<8} {"output":>14} {"parameters":>14} {"MACs":>16}',
  ]
  for part in summary['parts']:
    output = 'x'.join(map(str, part['output']))
    lines.append(f'{part["name"]:<8} {output:>14} {part["params"]:>14,} {part["macs"]:>16,}')
  return '\n'.join(lines)


def zoo_table() -> str:
  """Markdown table of every registry name: parameters and MACs at its default image size."""
  lines = ['| model | image | parameters | MACs |', '|---|---|---:|---:|']
  for name in models.list_models():
    size = default_image_size(name)
    result = summarize(models.create_model(name), size)
    lines.append(f'| {name} | {size} | {result["params"]:,} | {format_count(result["macs"])} |')
  return '\n'.join(lines)


def main(argv: list[str]) -> None:
  """Command-line entry; flags are defined only when run as a module (no clash with other CLIs)."""
  del argv
  args = flags.FLAGS
  if args.model == 'all':
    print(zoo_table())
    return
  image_size = args.image_size or default_image_size(args.model)
  model = models.create_model(args.model)
  print(format_summary(args.model, image_size, summarize(model, image_size, args.channels)))


if __name__ == '__main__':
  flags.DEFINE_string(
    'model', None, "Registry name (see resnet_jax.models.list_models()), or 'all' for a table."
  )
  flags.DEFINE_integer('image_size', 0, 'Image side in pixels; 0: 32 for cifar_* models, else 224.')
  flags.DEFINE_integer('channels', 3, 'Image channels.')
  flags.mark_flag_as_required('model')
  app.run(main)
