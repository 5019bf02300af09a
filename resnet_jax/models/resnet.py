"""He 2015 ResNets with post-activation blocks: torchvision's ImageNet ResNets, the CIFAR ResNets of
the paper's section 4.2, and Duta 2020's ResGroup / ResGroupFix (github.com/iduta/iresnet)."""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.models import depths
from resnet_jax.models.blocks import PostActBlock
from resnet_jax.models.layers import (
  Conv,
  DType,
  batch_norm,
  check_shortcut_option,
  classifier,
  max_pool,
  shortcut_option_kind,
)
from resnet_jax.models.stacking import Stage

# Post-activation projections are a 1x1 convolution and BN (options B and C, torchvision).
SHORTCUT_PROJECTION = 'conv_bn'


class ResNet(nn.Module):
  """Stem, stages of `PostActBlock`s (the first of each may stride and project), average pooling
  and a linear classifier.

  ImageNet layout (`cifar=False`): 7x7/2 conv, BN, ReLU, 3x3/2 max-pool; stages stride 1, 2, 2, 2.
  CIFAR layout: 3x3 conv, BN, ReLU; stages stride 1, 2, 2.
  """

  stage_sizes: Sequence[int]
  stage_features: Sequence[int]  # output channels of each stage
  stage_widths: Sequence[int]  # inner channels of the bottlenecks (unused by basic blocks)
  stage_groups: Sequence[int]
  bottleneck: bool
  cifar: bool = False
  stem_features: int = 64
  shortcut: str = 'B'
  stride_in_1x1: bool = False
  zero_init_residual: bool = False
  num_classes: int = 1000
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  unroll: int | bool | None = None
  remat: bool = False

  def __post_init__(self):
    check_shortcut_option(self.shortcut)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    conv = functools.partial(Conv, dtype=self.dtype)
    norm = batch_norm(train, self.dtype)
    act = nn.relu
    if self.cifar:
      x = act(norm(name='stem_bn')(conv(self.stem_features, 3, name='stem_conv')(x)))
    else:
      x = act(norm(name='stem_bn')(conv(self.stem_features, 7, 2, name='stem_conv')(x)))
      x = max_pool(x)
    stages = zip(
      self.stage_sizes, self.stage_features, self.stage_widths, self.stage_groups, strict=True
    )
    for i, (size, features, width, groups) in enumerate(stages):
      strides = 1 if i == 0 else 2
      block = functools.partial(
        PostActBlock,
        conv=conv,
        norm=norm,
        act=act,
        features=features,
        bottleneck=self.bottleneck,
        width=width,
        groups=groups,
        stride_in_1x1=self.stride_in_1x1,
        zero_init_last=self.zero_init_residual,
      )
      first = functools.partial(
        block,
        strides=strides,
        shortcut=shortcut_option_kind(
          self.shortcut, x.shape[-1], features, strides, SHORTCUT_PROJECTION
        ),
      )
      rest = functools.partial(
        block,
        shortcut=shortcut_option_kind(self.shortcut, features, features, 1, SHORTCUT_PROJECTION),
      )
      runs = (('first', first, None), ('rest', rest, size - 1))
      x = Stage(runs, self.unroll, self.remat, name=f'stage{i + 1}')(x)
    return classifier(x, self.num_classes, self.dropout_rate, train, self.dtype)


def resnet(depth: int, *, groups: int = 1, width_per_group: int = 64, **options) -> ResNet:
  """torchvision's ResNet ("v1.5": a bottleneck strides on its 3x3; `stride_in_1x1=True` gives
  the 2015 paper's "v1"). `groups` and `width_per_group` make it a ResNeXt as in torchvision
  (resnext50_32x4d: groups=32, width_per_group=4)."""
  return ResNet(**depths.imagenet_stages('resnet', depth, groups, width_per_group), **options)


def cifar_resnet(
  depth: int,
  *,
  block: str | None = None,
  base_width: int = 16,
  shortcut: str = 'A',
  num_classes: int = 10,
  **options,
) -> ResNet:
  """He 2015's CIFAR ResNets: 3x3 stem with `base_width` (16) channels, three stages of n blocks
  with base_width x (1, 2, 4) channels (x4 at the output of bottlenecks). Shortcut option A
  (zero-padding) as in the paper's CIFAR experiments; B and C project. Depth 6n+2 for basic
  blocks, 9n+2 for bottlenecks (see `depths.cifar_stage_sizes`)."""
  return ResNet(
    **depths.cifar_stages('cifar_resnet', depth, block, base_width),
    shortcut=shortcut,
    num_classes=num_classes,
    **options,
  )


def _resgroup(family: str, depth: int, groups: int, fix: bool, **options) -> ResNet:
  return ResNet(**depths.resgroup_stages(family, depth, groups, fix), **options)


def resgroup(depth: int, *, groups: int = 64, **options) -> ResNet:
  """Duta 2020's ResGroup: ResNet with wide grouped bottlenecks. Stage widths 256, 512, 1024, 2048
  inside, half that at the output; the 3x3 has groups // 8, // 4, // 2 and `groups` groups in the
  four stages (at least 1)."""
  return _resgroup('resgroup', depth, groups, False, **options)


def resgroupfix(depth: int, *, groups: int = 64, **options) -> ResNet:
  """ResGroupFix: ResGroup with `groups` groups in every stage."""
  return _resgroup('resgroupfix', depth, groups, True, **options)
