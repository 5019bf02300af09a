"""Residual blocks of the three papers. They share their convolutions and differ only in where
BatchNorm and ReLU sit:

* `PostActBlock` (He 2015, torchvision): conv-BN-ReLU ... conv-BN, add, ReLU.
* `PreActBlock` (He 2016): BN-ReLU-conv ... BN-ReLU-conv, add.
* `StageBlock` (Duta 2020, ResStage and iResNet): start, middle or end of a stage.

The residual branch is basic (3x3, 3x3) or a bottleneck (1x1, grouped 3x3, 1x1). Parameter names
follow the PyTorch references: `conv{i}` and `bn{i}`, `shortcut_conv` and `shortcut_bn`.
The network builds `conv`, `norm` and `act` once (compute dtype, train mode, BN settings) and
hands them to every block.
"""

from collections.abc import Callable

import flax.linen as nn
import jax

from resnet_jax.models.layers import ModuleDef, shortcut


class ResidualBlock(nn.Module):
  """Fields every block shares, and its convolutions."""

  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]
  features: int  # output channels
  strides: int = 1
  bottleneck: bool = False
  width: int = 0  # inner channels of a bottleneck
  groups: int = 1  # groups of the bottleneck's 3x3 convolution (ResNeXt)
  stride_in_1x1: bool = False  # bottleneck stride on the first 1x1 (2015 paper) not the 3x3
  shortcut: str = 'identity'  # see `layers.shortcut`

  def convs(self) -> list[tuple[int, int, int, int]]:
    """(features, kernel_size, strides, groups) of each convolution of the residual branch."""
    if not self.bottleneck:
      return [(self.features, 3, self.strides, 1), (self.features, 3, 1, 1)]
    s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
    return [(self.width, 1, s1, 1), (self.width, 3, s3, self.groups), (self.features, 1, 1, 1)]

  def identity(self, x: jax.Array) -> jax.Array:
    return shortcut(x, self.shortcut, self.features, self.strides, self.conv, self.norm)


class PostActBlock(ResidualBlock):
  """He 2015: every convolution is followed by BN; ReLU after each but the last, and after the sum.

  `zero_init_last` starts the last BN's scale at 0, so the block starts as the identity
  (Goyal et al. 2017; torchvision's `zero_init_residual`).
  """

  zero_init_last: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    convs = self.convs()
    y = x
    for i, (features, kernel_size, strides, groups) in enumerate(convs, start=1):
      y = self.conv(features, kernel_size, strides, groups, name=f'conv{i}')(y)
      if i < len(convs):
        y = self.act(self.norm(name=f'bn{i}')(y))
    scale_init = nn.initializers.zeros if self.zero_init_last else nn.initializers.ones
    y = self.norm(scale_init=scale_init, name=f'bn{len(convs)}')(y)
    return self.act(y + self.identity(x))


class PreActBlock(ResidualBlock):
  """He 2016: BN and ReLU before each convolution (`bn{i}` before `conv{i}`), nothing after the sum.

  `preact` says where the first BN-ReLU acts, as in the authors' code (fb.resnet.torch
  `preresnet.lua`, resnet-1k-layers):
    'residual': on the residual branch only; the identity path carries the raw input.
    'shared':   on the input of both paths (the first block of a stage, whose shortcut is
                usually a projection that then sees normalised input).
    'none':     no BN-ReLU: the input was just activated by the stem (first block, ImageNet).
  """

  preact: str = 'residual'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.preact == 'shared':
      x = self.act(self.norm(name='bn1')(x))
    y = x
    for i, (features, kernel_size, strides, groups) in enumerate(self.convs(), start=1):
      if i > 1 or self.preact == 'residual':
        y = self.act(self.norm(name=f'bn{i}')(y))
      y = self.conv(features, kernel_size, strides, groups, name=f'conv{i}')(y)
    return y + self.identity(x)


class StageBlock(ResidualBlock):
  """Duta 2020 (iResNet, ResStage; official code github.com/iduta/iresnet): each stage is a start
  block, middle blocks and an end block, so that there is one ReLU on the main path per stage.

    start:  conv-BN-ReLU ... conv-BN, add the (projection) shortcut; no ReLU after the sum.
    middle: [bn0]-ReLU-conv-BN-ReLU ... conv, add the identity.
    end:    as middle, then BN-ReLU after the sum.

  The first middle block has no `bn0` (`bn0=False`): its input comes from the start block, which
  ends with BN. So does an end block that directly follows the start block (two-block stages).

  `official_inplace_relu`: the official code applies that block's first ReLU in place, to its
  input tensor, so the identity path carries relu(x) as well. The published ImageNet weights
  were trained this way, so it is the default; False gives the paper's form (identity x).

  `zero_init_last` starts the start block's last BN at scale 0. Only start blocks have a BN at
  the end of the residual branch: a middle block's branch ends with a convolution, and the end
  block's last BN acts after the sum, so zeroing it would zero the stage's output. (The official
  `zero_init_residual` sets `bn3`/`bn2` of every block and fails on middle blocks, which have
  none.)
  """

  position: str = 'middle'  # 'start', 'middle' or 'end'
  bn0: bool = True
  official_inplace_relu: bool = True
  zero_init_last: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    convs = self.convs()
    last_bn = f'bn{len(convs)}'
    identity = x
    if self.position == 'start':
      y = x
    else:
      y = self.act(self.norm(name='bn0')(x) if self.bn0 else x)
      if not self.bn0 and self.official_inplace_relu:
        identity = y
    for i, (features, kernel_size, strides, groups) in enumerate(convs, start=1):
      y = self.conv(features, kernel_size, strides, groups, name=f'conv{i}')(y)
      if i < len(convs):
        y = self.act(self.norm(name=f'bn{i}')(y))
    if self.position == 'start':
      scale_init = nn.initializers.zeros if self.zero_init_last else nn.initializers.ones
      y = self.norm(scale_init=scale_init, name=last_bn)(y)
    y = y + self.identity(identity)
    if self.position == 'end':
      y = self.act(self.norm(name=last_bn)(y))
    return y
