"""Duta 2020 ("Improved Residual Networks"): ResStage and iResNet, with basic, bottleneck or wide
grouped (iResGroup) blocks, structured exactly as the official code (github.com/iduta/iresnet,
`models/resstage.py`, `iresnet.py`, `iresgroup.py`, `iresgroupfix.py`), and their CIFAR versions.

ResStage reorganises each stage into start, middle and end blocks (`StageBlock`), so the main
path has one ReLU per stage. iResNet adds the improved shortcut and moves the stem's max-pool
into the first stage: no max-pool after the stem, and every stage strides (ImageNet).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.models import depths
from resnet_jax.models.blocks import StageBlock
from resnet_jax.models.layers import Conv, DType, batch_norm, classifier, max_pool
from resnet_jax.models.stacking import Stage


def shortcut_kind(improved: bool, in_features: int, features: int, strides: int) -> str:
  """ResStage projects (strided 1x1 conv + BN) where the shape changes. iResNet's improved
  shortcut: max-pool, 1x1 conv, BN where both resolution and channels change; 1x1 conv and BN
  where only the channels change; max-pool alone where only the resolution changes."""
  more_features, strided = in_features != features, strides != 1
  if not (more_features or strided):
    return 'identity'
  if not improved:
    return 'conv_bn'
  if more_features and strided:
    return 'pool_conv_bn'
  return 'conv_bn' if more_features else 'pool'


class IResNet(nn.Module):
  """Stem, stages of start / middle / end `StageBlock`s, average pooling, linear classifier.

  ImageNet (`cifar=False`): 7x7/2 conv, BN, ReLU, then a 3x3/2 max-pool for ResStage; iResNet
  (`improved=True`) has no max-pool and strides in every stage instead. CIFAR: 3x3 conv, BN,
  ReLU; stages stride 1, 2, 2. A stage of n >= 2 blocks is: start, then for n >= 3 a first
  middle block without `bn0`, n - 3 identical middle blocks (stacked) and an end block; for
  n = 2 the end block directly follows the start and has no `bn0` either.
  """

  stage_sizes: Sequence[int]
  stage_features: Sequence[int]
  stage_widths: Sequence[int]
  stage_groups: Sequence[int]
  bottleneck: bool
  improved: bool
  cifar: bool = False
  stem_features: int = 64
  stride_in_1x1: bool = False
  official_inplace_relu: bool = True
  zero_init_residual: bool = False
  num_classes: int = 1000
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  unroll: int | bool | None = None
  remat: bool = False

  def __post_init__(self):
    if min(self.stage_sizes) < 2:
      raise ValueError(
        f'stage_sizes={tuple(self.stage_sizes)}: every stage needs a start and an end block '
        '(at least 2 blocks).'
      )
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    conv = functools.partial(Conv, dtype=self.dtype)
    norm = batch_norm(train, self.dtype)
    act = nn.relu
    stem_kernel, stem_strides = (3, 1) if self.cifar else (7, 2)
    x = conv(self.stem_features, stem_kernel, stem_strides, name='stem_conv')(x)
    x = act(norm(name='stem_bn')(x))
    if not self.cifar and not self.improved:
      x = max_pool(x)
    stages = zip(
      self.stage_sizes, self.stage_features, self.stage_widths, self.stage_groups, strict=True
    )
    for i, (size, features, width, groups) in enumerate(stages):
      strides = 1 if i == 0 and (self.cifar or not self.improved) else 2
      block = functools.partial(
        StageBlock,
        conv=conv,
        norm=norm,
        act=act,
        features=features,
        bottleneck=self.bottleneck,
        width=width,
        groups=groups,
        stride_in_1x1=self.stride_in_1x1,
        official_inplace_relu=self.official_inplace_relu,
      )
      start = functools.partial(
        block,
        strides=strides,
        shortcut=shortcut_kind(self.improved, x.shape[-1], features, strides),
        position='start',
        zero_init_last=self.zero_init_residual,
      )
      first_middle = functools.partial(block, position='middle', bn0=False)
      end = functools.partial(block, position='end', bn0=size > 2)
      if size > 2:
        runs = (
          ('start', start, None),
          ('first_middle', first_middle, None),
          ('middle', block, size - 3),
          ('end', end, None),
        )
      else:
        runs = (('start', start, None), ('end', end, None))
      x = Stage(runs, self.unroll, self.remat, name=f'stage{i + 1}')(x)
    return classifier(x, self.num_classes, self.dropout_rate, train, self.dtype)


def _imagenet(
  family: str, depth: int, improved: bool, groups: int, width_per_group: int, **options
) -> IResNet:
  return IResNet(
    **depths.imagenet_stages(family, depth, groups, width_per_group),
    improved=improved,
    **options,
  )


def resstage(depth: int, *, groups: int = 1, width_per_group: int = 64, **options) -> IResNet:
  """ResStage: ResNet's stem, strides and projection shortcut with start / middle / end blocks."""
  return _imagenet('resstage', depth, False, groups, width_per_group, **options)


def iresnet(depth: int, *, groups: int = 1, width_per_group: int = 64, **options) -> IResNet:
  """iResNet: ResStage blocks, improved shortcut, no stem max-pool; 18 ... 1001 layers."""
  return _imagenet('iresnet', depth, True, groups, width_per_group, **options)


def _iresgroup(family: str, depth: int, groups: int, fix: bool, **options) -> IResNet:
  return IResNet(**depths.resgroup_stages(family, depth, groups, fix), improved=True, **options)


def iresgroup(depth: int, *, groups: int = 64, **options) -> IResNet:
  """iResGroup: iResNet with ResGroup's wide grouped bottlenecks (inside 256 ... 2048 channels,
  half that at the output; groups // 8, // 4, // 2 and `groups` groups in the four stages)."""
  return _iresgroup('iresgroup', depth, groups, False, **options)


def iresgroupfix(depth: int, *, groups: int = 64, **options) -> IResNet:
  """iResGroupFix: iResGroup with `groups` groups in every stage."""
  return _iresgroup('iresgroupfix', depth, groups, True, **options)


def _cifar(
  family: str,
  depth: int,
  improved: bool,
  block: str | None,
  base_width: int,
  num_classes: int,
  **options,
) -> IResNet:
  return IResNet(
    **depths.cifar_stages(family, depth, block, base_width, min_blocks=2),
    improved=improved,
    num_classes=num_classes,
    **options,
  )


def cifar_resstage(
  depth: int,
  *,
  block: str | None = None,
  base_width: int = 16,
  num_classes: int = 10,
  **options,
) -> IResNet:
  """ResStage on the CIFAR layout (widths as `resnet.cifar_resnet`, projection shortcut B)."""
  return _cifar('cifar_resstage', depth, False, block, base_width, num_classes, **options)


def cifar_iresnet(
  depth: int,
  *,
  block: str | None = None,
  base_width: int = 16,
  num_classes: int = 10,
  **options,
) -> IResNet:
  """iResNet on the CIFAR layout: ResStage blocks and the improved shortcut; stage 1 keeps the
  full resolution (there is no stem max-pool to move into it)."""
  return _cifar('cifar_iresnet', depth, True, block, base_width, num_classes, **options)
