"""He 2016 pre-activation ResNets, laid out as the authors' code: fb.resnet.torch `preresnet.lua`
(ImageNet, CIFAR basic blocks) and KaimingHe/resnet-1k-layers (CIFAR ResNet-164 and -1001)."""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.models import depths
from resnet_jax.models.blocks import PreActBlock
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

# Pre-activation projections are a 1x1 convolution without BN: the sum stays unnormalised.
SHORTCUT_PROJECTION = 'conv'


class PreActResNet(nn.Module):
  """Stem, stages of `PreActBlock`s, final BN-ReLU, average pooling, linear classifier.

  ImageNet (`cifar=False`): 7x7/2 conv, BN, ReLU, 3x3/2 max-pool; the first block of stage 1
  skips its pre-activation (the stem just applied one), the first block of the other stages
  shares it between both paths. CIFAR: a 3x3 conv alone; the first block of every stage shares
  its pre-activation.
  """

  stage_sizes: Sequence[int]
  stage_features: Sequence[int]
  stage_widths: Sequence[int]
  stage_groups: Sequence[int]
  bottleneck: bool
  cifar: bool = False
  stem_features: int = 64
  shortcut: str = 'B'
  stride_in_1x1: bool = False
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
      x = conv(self.stem_features, 3, name='stem_conv')(x)
    else:
      x = act(norm(name='stem_bn')(conv(self.stem_features, 7, 2, name='stem_conv')(x)))
      x = max_pool(x)
    stages = zip(
      self.stage_sizes, self.stage_features, self.stage_widths, self.stage_groups, strict=True
    )
    for i, (size, features, width, groups) in enumerate(stages):
      strides = 1 if i == 0 else 2
      block = functools.partial(
        PreActBlock,
        conv=conv,
        norm=norm,
        act=act,
        features=features,
        bottleneck=self.bottleneck,
        width=width,
        groups=groups,
        stride_in_1x1=self.stride_in_1x1,
      )
      first = functools.partial(
        block,
        strides=strides,
        shortcut=shortcut_option_kind(
          self.shortcut, x.shape[-1], features, strides, SHORTCUT_PROJECTION
        ),
        preact='none' if i == 0 and not self.cifar else 'shared',
      )
      rest = functools.partial(
        block,
        shortcut=shortcut_option_kind(self.shortcut, features, features, 1, SHORTCUT_PROJECTION),
      )
      runs = (('first', first, None), ('rest', rest, size - 1))
      x = Stage(runs, self.unroll, self.remat, name=f'stage{i + 1}')(x)
    x = act(norm(name='final_bn')(x))
    return classifier(x, self.num_classes, self.dropout_rate, train, self.dtype)


def preact_resnet(
  depth: int, *, groups: int = 1, width_per_group: int = 64, **options
) -> PreActResNet:
  """ImageNet pre-activation ResNet (He 2016's ResNet-200), bottleneck stride on the 3x3."""
  return PreActResNet(
    **depths.imagenet_stages('preact_resnet', depth, groups, width_per_group), **options
  )


def cifar_preact_resnet(
  depth: int,
  *,
  block: str | None = None,
  base_width: int = 16,
  stride_in_1x1: bool = True,
  num_classes: int = 10,
  **options,
) -> PreActResNet:
  """He 2016's CIFAR networks: ResNet-110 (basic blocks), -164 and -1001 (bottlenecks with
  16, 32, 64 inner and 64, 128, 256 output channels). As in resnet-1k-layers, a bottleneck
  strides on its first 1x1 (`stride_in_1x1=False` moves the stride to the 3x3)."""
  return PreActResNet(
    **depths.cifar_stages('cifar_preact_resnet', depth, block, base_width),
    stride_in_1x1=stride_in_1x1,
    num_classes=num_classes,
    **options,
  )
