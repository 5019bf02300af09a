"""The model zoo: every network of He 2015, He 2016 and Duta 2020, one name away.

    model = create_model('iresnet50', num_classes=100, dtype=jnp.bfloat16)
    variables = model.init(rng, images, train=False)   # {'params', 'batch_stats'}
    logits = model.apply(variables, images, train=False)

A name is a family and a depth (`parse_name`). `FAMILIES` gives, for each family, how a depth
becomes the network's dimensions (`Dims`: stem, blocks, channels and stride per stage), the plan
function that chooses the blocks (`resnet`, `preact_resnet`, `resstage`), the family's defaults
and the depths that get a registry name; the CIFAR families take any valid depth
(`cifar_iresnet2000`, or `depth=2000`). A plan function returns the one network,
`network.ResNet`, whose stages list their runs of blocks. Modules take NHWC images of any size
and channel count.
"""

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, get_args

from resnet_jax import errors
from resnet_jax.config_checks import check_choice
from resnet_jax.models.blocks import (
  BNAfterAdditionBlock,
  ModulatedShortcutBlock,
  Modulation,
  PostActBlock,
  PreActBlock,
  ReLUBeforeAdditionBlock,
  ReLUPreActBlock,
  ResidualBlock,
  StageBlock,
)
from resnet_jax.models.network import (
  END,
  FIRST,
  FIRST_MIDDLE,
  MIDDLE,
  REST,
  START,
  ResNet,
  Run,
  StagePlan,
  Stem,
)

# Blocks per stage of the ImageNet networks (torchvision; 200-1001 from the official iResNet code).
IMAGENET_STAGE_SIZES = {
  18: (2, 2, 2, 2),
  34: (3, 4, 6, 3),
  50: (3, 4, 6, 3),
  101: (3, 4, 23, 3),
  152: (3, 8, 36, 3),
  200: (3, 24, 36, 3),
  302: (4, 34, 58, 4),
  404: (4, 46, 80, 4),
  1001: (4, 155, 170, 4),
}
# CIFAR: bottlenecks from this depth up where the depth allows both (He 2016: 110 basic, 164
# bottleneck).
CIFAR_BOTTLENECK_FROM = 164
# 'one_layer': a single 3x3 convolution per unit, He 2016 Table 3's "ResNet-110(1layer)".
BLOCKS = ('basic', 'bottleneck', 'one_layer')
# He 2015's shortcut options: A zero-pads where the shape changes, B projects there, C projects
# in every block.
SHORTCUT_OPTIONS = ('A', 'B', 'C')


@dataclasses.dataclass(frozen=True)
class Dims:
  """A network's dimensions before its blocks are chosen: the stem, and per stage the number of
  blocks, output channels, inner channels of a bottleneck, groups and stride."""

  stem: Stem
  sizes: tuple[int, ...]
  features: tuple[int, ...]
  widths: tuple[int, ...]
  groups: tuple[int, ...]
  strides: tuple[int, ...]
  bottleneck: bool
  one_layer: bool = False


def imagenet_dims(family: str, depth: int, *, groups: int = 1, width_per_group: int = 64) -> Dims:
  """7x7/2 stem with max-pool; four stages of 64 ... 512 planes (x4 at the output of bottlenecks,
  from depth 50 on); `groups` and `width_per_group` widen the 3x3 of bottlenecks as
  torchvision's ResNeXt (resnext50_32x4d: groups=32, width_per_group=4)."""
  bottleneck = depth >= 50
  if not bottleneck and (groups != 1 or width_per_group != 64):
    raise errors.ConfigError(
      f'{family}{depth} has basic blocks, which support only groups=1 and width_per_group=64 '
      '(as torchvision); use a depth of 50 or more for grouped bottlenecks.'
    )
  planes = (64, 128, 256, 512)
  return Dims(
    stem=Stem(),
    sizes=IMAGENET_STAGE_SIZES[depth],
    features=tuple(p * 4 if bottleneck else p for p in planes),
    widths=tuple(int(p * width_per_group / 64) * groups for p in planes),
    groups=(groups,) * 4,
    strides=(1, 2, 2, 2),
    bottleneck=bottleneck,
  )


def _resgroup_dims(depth: int, groups: int, groups_per_stage: tuple[int, ...]) -> Dims:
  if groups < 1:
    raise errors.ConfigError(f'groups={groups} must be a positive integer.')
  return Dims(
    stem=Stem(),
    sizes=IMAGENET_STAGE_SIZES[depth],
    features=(128, 256, 512, 1024),
    widths=(256, 512, 1024, 2048),
    groups=groups_per_stage,
    strides=(1, 2, 2, 2),
    bottleneck=True,
  )


def resgroup_dims(family: str, depth: int, *, groups: int = 64) -> Dims:
  """Duta 2020's wide grouped bottlenecks: 256 ... 2048 channels inside, half that at the
  output; the 3x3 has groups // 8, // 4, // 2 and `groups` groups in the four stages."""
  stage_groups = tuple(max(1, groups // d) for d in (8, 4, 2, 1))
  return _resgroup_dims(depth, groups, stage_groups)


def resgroupfix_dims(family: str, depth: int, *, groups: int = 64) -> Dims:
  """As `resgroup_dims`, with `groups` groups in every stage."""
  return _resgroup_dims(depth, groups, (groups,) * 4)


def cifar_dims(family: str, depth: int, *, block: str | None = None, base_width: int = 16) -> Dims:
  """He 2015's CIFAR layout: a 3x3 stem of `base_width` channels, three stages of n blocks and
  base_width x (1, 2, 4) channels (x4 at the output of bottlenecks), strides 1, 2, 2.

  Basic blocks have 2 layers, bottlenecks 3, one-layer units 1 (`block='one_layer'`, He 2016's
  "ResNet-110(1layer)", in which "each shortcut skips only 1 layer"); with the stem and the
  classifier that is depth 6n+2, 9n+2 or 3n+2. With `block=None`, a 9n+2 depth gets bottlenecks
  if it is at least 164 (He 2016's ResNet-164 and -1001) or not also 6n+2; every other 6n+2
  depth basic blocks (He 2015's 20 ... 1202; 3002).
  """
  check_choice('block', block, (*BLOCKS, None))
  basic_ok = (depth - 2) % 6 == 0 and depth > 2
  bottleneck_ok = (depth - 2) % 9 == 0 and depth > 2
  if block is None:
    bottleneck_ok &= depth >= CIFAR_BOTTLENECK_FROM or not basic_ok
    block = 'bottleneck' if bottleneck_ok else 'basic'
  layers = {'basic': 6, 'bottleneck': 9, 'one_layer': 3}[block]
  if (depth - 2) % layers or depth <= 2:
    raise errors.ConfigError(
      f'{family} cannot have depth {depth} with {block} blocks: the depth must be {layers}n+2 '
      f'({layers + 2}, {2 * layers + 2}, ...).'
    )
  n = (depth - 2) // layers
  planes = tuple(base_width * m for m in (1, 2, 4))
  return Dims(
    stem=Stem(base_width, kernel_size=3, strides=1, pool=False),
    sizes=(n, n, n),
    features=tuple(p * 4 if block == 'bottleneck' else p for p in planes),
    widths=planes,
    groups=(1, 1, 1),
    strides=(1, 2, 2),
    bottleneck=block == 'bottleneck',
    one_layer=block == 'one_layer',
  )


RunsFn = Callable[[int, int, int, int, int], tuple[Run, ...]]


def _stages(dims: Dims, runs: RunsFn) -> tuple[StagePlan, ...]:
  """The stages of `dims`; `runs(index, size, in_features, features, strides)` gives each
  stage's runs of blocks."""
  plans, in_features = [], dims.stem.features
  for i, (size, features, width, groups, strides) in enumerate(
    zip(dims.sizes, dims.features, dims.widths, dims.groups, dims.strides, strict=True)
  ):
    plans.append(
      StagePlan(features, width, groups, strides, runs(i, size, in_features, features, strides))
    )
    in_features = features
  return tuple(plans)


def shortcut_kind(
  option: str, projection: str, in_features: int, features: int, strides: int
) -> str:
  """The shortcut kind of one block for a network's `shortcut` option:

  'A', 'B', 'C': He 2015. Where the shape changes, A pads with zeros and B projects (with
                 `projection`); C projects in every block.
  'none':        no shortcut (He 2015's plain networks).
  'improved':    Duta 2020's improved shortcut: max-pool, 1x1 conv and BN where resolution and
                 channels change; 1x1 conv and BN where only the channels change; max-pool alone
                 where only the resolution changes.
  """
  more_features, strided = in_features != features, strides != 1
  if option == 'none':
    return 'none'
  if option == 'improved' and (more_features or strided):
    if not more_features:
      return 'pool'
    return 'pool_conv_bn' if strided else 'conv_bn'
  if option == 'C' or (option == 'B' and (more_features or strided)):
    return projection
  return 'zero_pad' if more_features or strided else 'identity'


def _stem_and_strides(dims: Dims, shortcut: str) -> Dims:
  """With the improved shortcut, the ImageNet stem's max-pool moves into the first stage (Duta
  2020): the stem does not pool, and the first stage strides, through its shortcut's max-pool."""
  if shortcut != 'improved' or not dims.stem.pool:
    return dims
  stem = dataclasses.replace(dims.stem, pool=False)
  return dataclasses.replace(dims, stem=stem, strides=(2,) * len(dims.strides))


def _first_rest(
  dims: Dims, block: Callable, shortcut: str, projection: str, first: Callable[[int], dict]
) -> tuple[StagePlan, ...]:
  """Stages of a first block, which may stride and project, and a stacked run of the rest."""
  kind = functools.partial(shortcut_kind, shortcut, projection)

  def runs(i: int, size: int, in_features: int, features: int, strides: int) -> tuple[Run, ...]:
    first_kind = kind(in_features, features, strides)
    return (
      Run(FIRST, functools.partial(block, shortcut_kind=first_kind, **first(i))),
      Run(REST, functools.partial(block, shortcut_kind=kind(features, features, 1)), size - 1),
    )

  return _stages(dims, runs)


# He 2016 Fig. 4: where BN and ReLU sit in a post-activation network's units ('full_preactivation'
# is `preact_resnet`).
ACTIVATIONS = {
  'original': PostActBlock,
  'bn_after_addition': BNAfterAdditionBlock,
  'relu_before_addition': ReLUBeforeAdditionBlock,
  'relu_preactivation': ReLUPreActBlock,
  'full_preactivation': PreActBlock,
}


def resnet(
  dims: Dims,
  *,
  block_cls: type[ResidualBlock] | None = None,
  shortcut: str = 'B',
  activation: str = 'original',
  modulation: str | None = None,
  shortcut_scale: float = 0.5,
  residual_scale: float = 1.0,
  gate_bias_init: float = -6.0,
  shortcut_dropout: float = 0.5,
  stride_in_1x1: bool = False,
  zero_init_residual: bool = False,
  **options,
) -> ResNet:
  """He 2015's ResNet of post-activation blocks; projections are 1x1 conv + BN (torchvision).

  `shortcut`: He 2015's option 'A', 'B' or 'C', 'none' for its plain networks, or Duta 2020's
  'improved' shortcut (see `shortcut_kind`). `stride_in_1x1=True` strides a bottleneck on its
  first 1x1, as the 2015 paper ("v1"), not on its 3x3 (torchvision's "v1.5").
  `zero_init_residual` starts every block's last BN at 0.

  He 2016's ablations: `activation` is one of the unit orderings of its Fig. 4 (`ACTIVATIONS`;
  'relu_preactivation' ends the network with a ReLU, as the paper's last unit, and
  'full_preactivation' is `preact_resnet`); `modulation` scales, gates or drops the shortcut as
  its Table 1 (see `ModulatedShortcutBlock` for `shortcut_scale`, `residual_scale`,
  `gate_bias_init` and `shortcut_dropout`). `block_cls` replaces the block class.
  """
  check_choice('shortcut', shortcut, (*SHORTCUT_OPTIONS, 'none', 'improved'))
  check_choice('activation', activation, tuple(ACTIVATIONS))
  check_choice('modulation', modulation, (None, *get_args(Modulation)))
  if activation == 'full_preactivation' and (modulation or zero_init_residual):
    raise errors.ConfigError(
      'modulation and zero_init_residual apply to post-activation units only.'
    )
  if activation == 'full_preactivation':
    return preact_resnet(
      dims, block_cls=block_cls, shortcut=shortcut, stride_in_1x1=stride_in_1x1, **options
    )
  unit, unit_options = ACTIVATIONS[activation], {}
  if modulation is not None:
    if activation != 'original':
      raise errors.ConfigError(
        f'modulation={modulation!r} modulates the original unit, not {activation!r}.'
      )
    unit = ModulatedShortcutBlock
    unit_options = dict(
      modulation=modulation,
      shortcut_scale=shortcut_scale,
      residual_scale=residual_scale,
      gate_bias_init=gate_bias_init,
      shortcut_dropout=shortcut_dropout,
    )
  block = functools.partial(
    block_cls or unit,
    bottleneck=dims.bottleneck,
    one_layer=dims.one_layer,
    stride_in_1x1=stride_in_1x1,
    zero_init_last=zero_init_residual,
    **unit_options,
  )
  dims = _stem_and_strides(dims, shortcut)
  stages = _first_rest(dims, block, shortcut, 'conv_bn', lambda i: {})
  return ResNet(dims.stem, stages, final_act=activation == 'relu_preactivation', **options)


def preact_resnet(
  dims: Dims,
  *,
  block_cls: type[ResidualBlock] | None = None,
  shortcut: str | None = None,
  stride_in_1x1: bool = False,
  **options,
) -> ResNet:
  """He 2016's pre-activation ResNet, laid out as the authors' code: fb.resnet.torch
  `preresnet.lua` (ImageNet, CIFAR basic blocks) and KaimingHe/resnet-1k-layers
  `resnet-pre-act.lua` (CIFAR bottlenecks). Projections are a 1x1 conv without BN (the sum stays
  unnormalised), and a final BN-ReLU precedes the classifier.

  `shortcut` is He 2015's option; None takes that code's: B on ImageNet, and on CIFAR A for basic
  blocks (fb.resnet.torch's CIFAR default, ResNet-110) and B for bottlenecks (resnet-1k-layers,
  ResNet-164 and -1001). The first block of a stage shares its pre-activation between both
  paths; the first block of the network skips it if the stem just applied BN-ReLU (ImageNet).
  """
  if shortcut is None:
    shortcut = 'A' if not dims.stem.pool and not dims.bottleneck else 'B'
  check_choice('shortcut', shortcut, SHORTCUT_OPTIONS)
  # The CIFAR stem is a convolution alone: the first block's pre-activation normalises it.
  stem = dataclasses.replace(dims.stem, norm=dims.stem.pool)

  def first(i: int) -> dict:
    return dict(preact='none' if i == 0 and stem.norm else 'shared')

  block = functools.partial(
    block_cls or PreActBlock,
    bottleneck=dims.bottleneck,
    one_layer=dims.one_layer,
    stride_in_1x1=stride_in_1x1,
  )
  stages = _first_rest(dims, block, shortcut, 'conv', first)
  return ResNet(stem, stages, final_norm=True, final_act=True, **options)


def resstage(
  dims: Dims,
  *,
  block_cls: type[ResidualBlock] = StageBlock,
  shortcut: str = 'B',
  stride_in_1x1: bool = False,
  official_inplace_relu: bool = True,
  zero_init_residual: bool = False,
  **options,
) -> ResNet:
  """Duta 2020's ResStage, and with `shortcut='improved'` iResNet, structured exactly as the
  official code (github.com/iduta/iresnet). A stage of n >= 2 blocks is a start block, for n >= 3
  a first middle block without `bn0`, n - 3 identical middle blocks (stacked) and an end block;
  for n = 2 the end block directly follows the start and has no `bn0` either.

  The start block's shortcut projects where the shape changes ('B', 1x1 conv + BN), or is the
  improved shortcut, with which the ImageNet stem's max-pool moves into the first stage (see
  `shortcut_kind`). `zero_init_residual` starts the start blocks' last BN at 0 (see
  `StageBlock`).
  """
  check_choice('shortcut', shortcut, ('B', 'improved'))
  if dims.one_layer:
    raise errors.ConfigError(
      "block='one_layer' builds He 2016's one-layer units, which ResStage and iResNet do not "
      "have; use block='basic' or 'bottleneck'."
    )
  if min(dims.sizes) < 2:
    raise errors.ConfigError(
      f'Blocks per stage {dims.sizes}: every stage of a ResStage network needs a start and an '
      'end block, n >= 2 blocks per stage (CIFAR: depth 6n+2 or 9n+2 with n >= 2).'
    )
  dims = _stem_and_strides(dims, shortcut)
  block = functools.partial(
    block_cls,
    bottleneck=dims.bottleneck,
    stride_in_1x1=stride_in_1x1,
    official_inplace_relu=official_inplace_relu,
  )

  def runs(i: int, size: int, in_features: int, features: int, strides: int) -> tuple[Run, ...]:
    kind = shortcut_kind(shortcut, 'conv_bn', in_features, features, strides)
    start = functools.partial(
      block, position='start', shortcut_kind=kind, zero_init_last=zero_init_residual
    )
    end = functools.partial(block, position='end', bn0=size > 2)
    if size == 2:
      return (Run(START, start), Run(END, end))
    first_middle = functools.partial(block, position='middle', bn0=False)
    return (
      Run(START, start),
      Run(FIRST_MIDDLE, first_middle),
      Run(MIDDLE, block, size - 3),
      Run(END, end),
    )

  return ResNet(dims.stem, _stages(dims, runs), **options)


@dataclasses.dataclass(frozen=True)
class Family:
  """How a depth becomes `Dims`, the plan function that builds the network from them, the
  family's defaults for the plan's options, and the depths that get a registry name."""

  dims: Callable[..., Dims]
  plan: Callable[..., ResNet]
  depths: tuple[int, ...]
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def options(self) -> set[str]:
    """The keyword options of `dims` and `plan`, and the network's."""
    return _keyword_options(self.dims) | _keyword_options(self.plan) | set(NETWORK_OPTIONS)

  def network(self, name: str, depth: int, **options) -> ResNet:
    """The network of family `name` at `depth`; `options` go to `dims` or `plan`."""
    options = {**self.defaults, **options}
    dims_options = {k: options.pop(k) for k in _keyword_options(self.dims) if k in options}
    return self.plan(self.dims(name, depth, **dims_options), **options)


def _keyword_options(function: Callable) -> set[str]:
  parameters = inspect.signature(function).parameters.values()
  return {p.name for p in parameters if p.kind == p.KEYWORD_ONLY}


# Fields of the network that are options (the plan sets the others).
NETWORK_OPTIONS = (
  'num_classes',
  'dropout_rate',
  'dtype',
  'unroll',
  'remat',
  'bn_group_size',
  'stochastic_depth_rate',
)

_IMAGENET = (18, 34, 50, 101, 152, 200)
_RESGROUP = (50, 101, 152)
_CIFAR_RESSTAGE = (20, 56, 110, 164, 1001, 1202, 3002)
_CIFAR = dict(num_classes=10)
FAMILIES: dict[str, Family] = {
  # He 2015: torchvision's ResNet ("v1.5"). CIFAR: shortcut option A as in the paper, and
  # bottlenecks that stride on their first 1x1 as the paper ("v1") and resnet-1k-layers.
  'resnet': Family(imagenet_dims, resnet, _IMAGENET),
  'cifar_resnet': Family(
    cifar_dims,
    resnet,
    (20, 32, 44, 56, 110, 1202),
    dict(shortcut='A', stride_in_1x1=True, **_CIFAR),
  ),
  # He 2015's plain networks (Table 2, Fig. 4 and 6): the ResNets without shortcuts.
  'plain': Family(imagenet_dims, resnet, (18, 34), dict(shortcut='none')),
  'cifar_plain': Family(
    cifar_dims, resnet, (20, 32, 44, 56, 110), dict(shortcut='none', stride_in_1x1=True, **_CIFAR)
  ),
  # He 2016 pre-activation; CIFAR bottlenecks stride on their first 1x1 as resnet-1k-layers.
  'preact_resnet': Family(imagenet_dims, preact_resnet, _IMAGENET),
  'cifar_preact_resnet': Family(
    cifar_dims, preact_resnet, (110, 164, 1001), dict(stride_in_1x1=True, **_CIFAR)
  ),
  # Duta 2020, official iResNet code; ResGroup: ResNet with wide grouped bottlenecks.
  'resstage': Family(imagenet_dims, resstage, _IMAGENET),
  'iresnet': Family(
    imagenet_dims, resstage, (*_IMAGENET, 302, 404, 1001), dict(shortcut='improved')
  ),
  'resgroup': Family(resgroup_dims, resnet, _RESGROUP),
  'resgroupfix': Family(resgroupfix_dims, resnet, _RESGROUP),
  'iresgroup': Family(resgroup_dims, resstage, _RESGROUP, dict(shortcut='improved')),
  'iresgroupfix': Family(resgroupfix_dims, resstage, _RESGROUP, dict(shortcut='improved')),
  'cifar_resstage': Family(cifar_dims, resstage, _CIFAR_RESSTAGE, _CIFAR),
  'cifar_iresnet': Family(
    cifar_dims, resstage, _CIFAR_RESSTAGE, dict(shortcut='improved', **_CIFAR)
  ),
}


def list_models() -> list[str]:
  """Every registry name (the CIFAR families also accept other valid depths)."""
  return [f'{family}{depth}' for family, spec in FAMILIES.items() for depth in spec.depths]


def parse_name(name: str) -> tuple[str, int]:
  """(family, depth) of a model name: 'cifar_iresnet56' -> ('cifar_iresnet', 56).

  Raises a ValueError listing the valid names for anything else.
  """
  match = re.fullmatch(r'(\D+)(\d+)', name)
  if not match or match[1] not in FAMILIES:
    raise errors.ConfigError(
      f'Unknown model {name!r}. Valid names: {", ".join(list_models())}. The CIFAR families '
      '(cifar_*) also take other valid depths, e.g. cifar_iresnet2000.'
    )
  return match[1], int(match[2])


def model_options(name: str) -> list[str]:
  """The keyword options `create_model(name, ...)` accepts."""
  return sorted(FAMILIES[parse_name(name)[0]].options() | {'depth'})


def create_model(name: str, **overrides) -> ResNet:
  """The network `name` (see `list_models()`), with options overridden.

  `depth=N` replaces the depth of the name. An unknown name or option, or an invalid depth or
  value, raises a ValueError that lists the valid ones.
  """
  family_name, depth = parse_name(name)
  valid = model_options(name)
  unknown = sorted(set(overrides) - set(valid))
  if unknown:
    raise errors.ConfigError(
      f'{name} has no option {", ".join(unknown)}. Valid options: {", ".join(valid)}.'
    )
  depth = overrides.pop('depth', depth)
  family = FAMILIES[family_name]
  if family.dims is not cifar_dims and depth not in family.depths:
    raise errors.ConfigError(
      f'{family_name} has no depth {depth}; valid depths: {", ".join(map(str, family.depths))}.'
    )
  return family.network(family_name, depth, **overrides)
