"""Model registry: every network of He 2015, He 2016 and Duta 2020, one name away.

    model = create_model('iresnet50', num_classes=100, dtype=jnp.bfloat16)
    variables = model.init(rng, images, train=False)   # {'params', 'batch_stats'}
    logits = model.apply(variables, images, train=False)

Names are a family and a depth. Each family is a function below; its keyword arguments, and the
fields of the network it returns, are the options `create_model` accepts. The CIFAR families
take any valid depth (`cifar_iresnet2000`, or `depth=2000`), the others the depths listed.
Modules take NHWC images of any size and channel count.
"""

import dataclasses
import inspect
import re
from collections.abc import Callable

import flax.linen as nn

from resnet_jax.models import iresnet, preact_resnet, resnet

# family: (constructor, depths that get a registry name)
FAMILIES: dict[str, tuple[Callable[..., nn.Module], tuple[int, ...]]] = {
  # He 2015 (torchvision layout; `stride_in_1x1=True` for "v1"), CIFAR with shortcut A/B/C.
  'resnet': (resnet.resnet, (18, 34, 50, 101, 152, 200)),
  'cifar_resnet': (resnet.cifar_resnet, (20, 32, 44, 56, 110, 1202)),
  # He 2016 pre-activation.
  'preact_resnet': (preact_resnet.preact_resnet, (18, 34, 50, 101, 152, 200)),
  'cifar_preact_resnet': (preact_resnet.cifar_preact_resnet, (110, 164, 1001)),
  # Duta 2020, official iResNet code.
  'resstage': (iresnet.resstage, (18, 34, 50, 101, 152, 200)),
  'iresnet': (iresnet.iresnet, (18, 34, 50, 101, 152, 200, 302, 404, 1001)),
  'resgroup': (resnet.resgroup, (50, 101, 152)),
  'resgroupfix': (resnet.resgroupfix, (50, 101, 152)),
  'iresgroup': (iresnet.iresgroup, (50, 101, 152)),
  'iresgroupfix': (iresnet.iresgroupfix, (50, 101, 152)),
  'cifar_resstage': (iresnet.cifar_resstage, (20, 56, 110, 164, 1001, 1202, 3002)),
  'cifar_iresnet': (iresnet.cifar_iresnet, (20, 56, 110, 164, 1001, 1202, 3002)),
}

# Network fields that the family functions set from the name; not options.
_STRUCTURE = {
  'stage_sizes',
  'stage_features',
  'stage_widths',
  'stage_groups',
  'bottleneck',
  'improved',
  'cifar',
  'stem_features',
  'parent',
  'name',
}


def list_models() -> list[str]:
  """Every registry name (the CIFAR families also accept other valid depths)."""
  return [f'{family}{depth}' for family, (_, depths) in FAMILIES.items() for depth in depths]


def model_options(name: str) -> list[str]:
  """The keyword options `create_model(name, ...)` accepts."""
  constructor, _ = FAMILIES[_parse(name)[0]]
  signature = inspect.signature(constructor)
  options = {p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY}
  network = signature.return_annotation
  options |= {f.name for f in dataclasses.fields(network)} - _STRUCTURE
  return sorted(options | {'depth'})


def create_model(name: str, **overrides) -> nn.Module:
  """The network `name` (see `list_models()`), with options overridden.

  `depth=N` replaces the depth of the name. An unknown name or option, or an invalid depth or
  value, raises a ValueError that lists the valid ones.
  """
  family, depth = _parse(name)
  valid = model_options(name)
  unknown = sorted(set(overrides) - set(valid))
  if unknown:
    raise ValueError(
      f'{name} has no option {", ".join(unknown)}. Valid options: {", ".join(valid)}.'
    )
  depth = overrides.pop('depth', depth)
  constructor, _ = FAMILIES[family]
  return constructor(depth, **overrides)


def _parse(name: str) -> tuple[str, int]:
  match = re.fullmatch(r'(\D+)(\d+)', name)
  if not match or match[1] not in FAMILIES:
    raise ValueError(
      f'Unknown model {name!r}. Valid names: {", ".join(list_models())}. The CIFAR families '
      '(cifar_*) also take other valid depths, e.g. cifar_iresnet2000.'
    )
  return match[1], int(match[2])
