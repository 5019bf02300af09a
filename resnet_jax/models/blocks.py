"""Residual blocks, and the layers they are made of, set up to compute exactly as PyTorch does.

Weights converted from the PyTorch reference code must give the same outputs here, so padding,
pooling and BatchNorm follow PyTorch rather than Flax defaults:

* convolutions and max-pooling pad explicitly and symmetrically, `(kernel_size - 1) // 2` on
  every side. Flax's 'SAME' pads a stride-2 layer more on the bottom/right than on the top/left,
  which shifts the sampling grid by one pixel relative to PyTorch.
* BatchNorm (`BatchNorm`): PyTorch's momentum 0.1 is Flax's momentum 0.9 (the weight of the old
  running average); epsilon 1e-5; the running variance is updated with the unbiased batch
  variance, as PyTorch does (Flax's `nn.BatchNorm` uses the biased one).
* Convolutions are initialised as torchvision and the official iResNet code: Kaiming-normal with
  fan-out (std = sqrt(2 / (out_channels x kernel area))); BN scale 1 and bias 0.

Parameters and BatchNorm statistics are float32; `dtype` only sets the compute dtype.
Convolutions and max-pooling compute through `conv_ops`: the same numbers, with backward passes
that stay on XLA:CPU's fast paths (also inside the loops of stacked blocks).

The blocks differ only in where BatchNorm and ReLU sit around the same convolutions:

* `PostActBlock` (He 2015, torchvision): conv-BN-ReLU ... conv-BN, add, ReLU.
* `PreActBlock` (He 2016): BN-ReLU-conv ... BN-ReLU-conv, add.
* `StageBlock` (Duta 2020, ResStage and iResNet): start, middle or end of a stage.
* He 2016's ablations of the post-activation unit: the other orderings of its Fig. 4
  (`BNAfterAdditionBlock`, `ReLUBeforeAdditionBlock`, `ReLUPreActBlock`) and the scaled, gated
  and dropped shortcuts of its Table 1 (`ModulatedShortcutBlock`).

The residual branch is basic (3x3, 3x3) or a bottleneck (1x1, grouped 3x3, 1x1). Parameter names
follow the PyTorch references: `conv{i}` and `bn{i}`, `shortcut_conv` and `shortcut_bn`.
The network builds `conv`, `norm` and `act` once (compute dtype, train mode, BN settings) and
hands them to every block, with the training mode and the stage's `features`, `width`, `groups`
and `strides`.
"""

import functools
import math
from collections.abc import Callable
from typing import Any, Literal, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from resnet_jax import errors
from resnet_jax.config_checks import check_choice
from resnet_jax.models import conv_ops

ModuleDef = Any
DType = Any

conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class Conv(nn.Module):
  """2-D convolution without bias, zero-padded like PyTorch: (kernel_size - 1) // 2 on each side.

  The kernel is HWIO, (kernel_size, kernel_size, in_channels // groups, features).
  """

  features: int
  kernel_size: int
  strides: int = 1
  groups: int = 1
  dtype: DType = jnp.float32
  kernel_init: Callable = conv_kernel_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_features = x.shape[-1]
    if in_features % self.groups or self.features % self.groups:
      raise errors.ConfigError(
        f'Conv: groups={self.groups} must divide both the input channels ({in_features}) and '
        f'the output channels ({self.features}); choose a width that is a multiple of groups.'
      )
    k = self.kernel_size
    kernel = self.param(
      'kernel', self.kernel_init, (k, k, in_features // self.groups, self.features), jnp.float32
    )
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    pad = (k - 1) // 2
    return conv_ops.conv2d(x, kernel, (self.strides, self.strides), ((pad, pad),) * 2, self.groups)


class BatchNorm(nn.Module):
  """BatchNorm over NHWC input as PyTorch's `BatchNorm2d` trains it, in Flax's variable names
  (params 'scale', 'bias'; batch_stats 'mean', 'var'), so checkpoints and `convert` are unchanged.

  Training normalises with the biased statistics of the batch and updates the running variance
  with the unbiased ones (x n / (n - 1), n = images x height x width per statistics group), as
  PyTorch does; Flax's own BatchNorm uses the biased variance there. Normalisation, the running
  mean and evaluation (running statistics) compute exactly as Flax's `nn.BatchNorm`: float32
  statistics from E[x^2] - E[x]^2, clipped at 0.

  `group_size` > 0 normalises each run of `group_size` consecutive images by its own statistics,
  as data-parallel training without synchronised BatchNorm does on each GPU; 0 uses the whole
  batch. The running statistics are updated with the mean of the groups' statistics. PyTorch
  keeps those of the first GPU's group instead (DistributedDataParallel broadcasts rank 0's
  buffers at each forward pass, DataParallel keeps device 0's updates): the same expectation,
  with less variance and no dependence on which images come first.
  """

  use_running_average: bool
  momentum: float = 0.9  # weight of the old running average: PyTorch's momentum 0.1
  epsilon: float = 1e-5
  group_size: int = 0
  dtype: DType = jnp.float32
  scale_init: Callable = nn.initializers.ones
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = (x.shape[-1],)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, features, jnp.float32)
    scale = self.param('scale', self.scale_init, features, jnp.float32)
    bias = self.param('bias', self.bias_init, features, jnp.float32)
    if self.use_running_average:
      return self._normalize(x, ra_mean.value, ra_var.value, scale, bias)
    grouped = x
    if self.group_size:
      if x.shape[0] % self.group_size:
        raise errors.ConfigError(
          f'BatchNorm: a batch of {x.shape[0]} images does not divide into statistics groups '
          f'of bn_group_size={self.group_size}; use a batch that is a multiple of it.'
        )
      grouped = x.reshape(-1, self.group_size, *x.shape[1:])
    # Statistics over every axis but the features' (and the groups').
    axes = tuple(range(grouped.ndim - x.ndim, grouped.ndim - 1))
    stats_x = grouped.astype(jnp.promote_types(self.dtype, jnp.float32))
    mean = stats_x.mean(axes)
    var = jnp.maximum(0.0, lax.square(stats_x).mean(axes) - lax.square(mean))
    if not self.is_initializing():
      n = math.prod(grouped.shape[i] for i in axes)
      batch_mean, batch_var = mean, var * (n / max(n - 1, 1))
      if self.group_size:
        batch_mean, batch_var = batch_mean.mean(0), batch_var.mean(0)
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * batch_mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * batch_var
    mean, var = jnp.expand_dims(mean, axes), jnp.expand_dims(var, axes)
    return self._normalize(grouped, mean, var, scale, bias).reshape(x.shape)

  def _normalize(
    self, x: jax.Array, mean: jax.Array, var: jax.Array, scale: jax.Array, bias: jax.Array
  ) -> jax.Array:
    y = (x - mean) * (lax.rsqrt(var + self.epsilon) * scale) + bias
    return y.astype(self.dtype)


def batch_norm(train: bool, dtype: DType, group_size: int = 0) -> ModuleDef:
  """BatchNorm with PyTorch's defaults; batch statistics in training (over groups of
  `group_size` images, 0: the whole batch), running ones otherwise."""
  return functools.partial(
    BatchNorm, use_running_average=not train, group_size=group_size, dtype=dtype
  )


def max_pool(x: jax.Array, strides: int = 2) -> jax.Array:
  """3x3 max-pooling padded by 1 on each side (PyTorch `MaxPool2d(3, stride, padding=1)`).

  Padding counts as -inf, as in PyTorch; the output size rounds down (`ceil_mode=False`).
  """
  return conv_ops.max_pool(x, 3, strides, 1)


class Dropout(nn.Module):
  """`nn.Dropout` whose mask is sharded as its input, so that it trains under the explicit
  sharding of `train.py`'s mesh: linen's mask has no sharding there, which `lax.select` rejects
  (fixed for `nnx.Dropout` only, google/flax#5209). The same module path and `dropout` stream as
  `nn.Dropout`, hence the same mask; tests/test_models.py compares the two."""

  rate: float
  deterministic: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.deterministic or self.rate == 0:
      return x
    sharding = jax.typeof(x).sharding
    keep = jax.random.bernoulli(
      self.make_rng('dropout'), 1 - self.rate, x.shape, out_sharding=sharding
    )
    return jnp.where(keep, x / (1 - self.rate), jnp.zeros_like(x))


ShortcutKind = Literal['identity', 'zero_pad', 'conv', 'conv_bn', 'pool', 'pool_conv_bn', 'none']
SHORTCUT_KINDS: tuple[str, ...] = get_args(ShortcutKind)
PROJECTIONS = ('conv', 'conv_bn', 'pool_conv_bn')  # the shortcut kinds with a convolution


def shortcut_path(
  x: jax.Array, kind: ShortcutKind, features: int, strides: int, conv: ModuleDef, norm: ModuleDef
) -> jax.Array:
  """The identity path of a residual block, `kind` one of:

  'identity':     x.
  'zero_pad':     He 2015 option A, parameter-free: subsample by `strides` (a 1x1 stride-s
                  pooling) and pad zero channels up to `features`, half on each side (as the
                  PyTorch CIFAR ResNet whose published checkpoints `convert` reads).
  'conv':         1x1 convolution with stride (pre-activation units: the sum stays unnormalised).
  'conv_bn':      1x1 convolution with stride, then BN (He 2015 options B and C, torchvision).
  'pool':         3x3 max-pool with stride (iResNet, when only the resolution changes).
  'pool_conv_bn': 3x3 max-pool with stride, 1x1 convolution, BN (iResNet's improved projection:
                  the max-pool looks at every activation, a strided 1x1 convolution at a quarter).
  'none':         no shortcut, a zero to add (He 2015's plain networks).
  """
  if kind == 'identity':
    return x
  if kind == 'none':
    return jnp.zeros((), x.dtype)
  if kind == 'zero_pad':
    x = x[:, ::strides, ::strides, :]
    before = (features - x.shape[-1]) // 2
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (before, features - x.shape[-1] - before)))
  if kind in ('pool', 'pool_conv_bn'):
    x, strides = max_pool(x, strides), 1
  if kind == 'pool':
    return x
  x = conv(features, 1, strides, name='shortcut_conv')(x)
  return norm(name='shortcut_bn')(x) if kind.endswith('_bn') else x


class ResidualBlock(nn.Module):
  """Fields every block shares, its convolutions and its shortcut."""

  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]
  features: int  # output channels
  train: bool = False  # training mode, for layers other than `norm` (dropout)
  strides: int = 1
  width: int = 0  # inner channels of a bottleneck
  groups: int = 1  # groups of the bottleneck's 3x3 convolution (ResNeXt)
  bottleneck: bool = False
  one_layer: bool = False  # a single 3x3 convolution (He 2016 Table 3's "ResNet-110(1layer)")
  stride_in_1x1: bool = False  # bottleneck stride on the first 1x1 (2015 paper) not the 3x3
  shortcut_kind: ShortcutKind = 'identity'  # see `shortcut_path`
  zero_init_last: bool = False  # the branch's last BN (if it has one) starts at scale 0

  def __post_init__(self):
    check_choice('shortcut_kind', self.shortcut_kind, SHORTCUT_KINDS)
    super().__post_init__()

  def convs(self) -> list[tuple[int, int, int, int]]:
    """(features, kernel_size, strides, groups) of each convolution of the residual branch."""
    if self.one_layer:
      return [(self.features, 3, self.strides, 1)]
    if not self.bottleneck:
      return [(self.features, 3, self.strides, 1), (self.features, 3, 1, 1)]
    s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
    return [(self.width, 1, s1, 1), (self.width, 3, s3, self.groups), (self.features, 1, 1, 1)]

  def conv_norm_act(self, y: jax.Array) -> jax.Array:
    """The branch conv1-bn1-ReLU ... conv{n}: every convolution but the last followed by BN-ReLU."""
    convs = self.convs()
    for i, (features, kernel_size, strides, groups) in enumerate(convs, start=1):
      y = self.conv(features, kernel_size, strides, groups, name=f'conv{i}')(y)
      if i < len(convs):
        y = self.act(self.norm(name=f'bn{i}')(y))
    return y

  def last_norm(self, y: jax.Array) -> jax.Array:
    """BN `bn{n}` after the last convolution; at scale 0 with `zero_init_last`, so that the block
    starts as its shortcut (Goyal et al. 2017; torchvision's `zero_init_residual`)."""
    scale_init = nn.initializers.zeros if self.zero_init_last else nn.initializers.ones
    return self.norm(scale_init=scale_init, name=f'bn{len(self.convs())}')(y)

  def shortcut(self, x: jax.Array) -> jax.Array:
    return shortcut_path(x, self.shortcut_kind, self.features, self.strides, self.conv, self.norm)

  def drop_path(self, y: jax.Array, rate: float | jax.Array) -> jax.Array:
    """Stochastic depth (Huang et al. 2016) of the residual branch `y`: in training, zero for
    each image with probability `rate`, else scaled by 1 / (1 - rate), so that its expectation
    is `y`; `y` itself at evaluation and at rate 0 (no random numbers drawn, the program as
    without). Each block drops its branch just before the sum with the shortcut, after the
    branch's last layer (its last BN, or ReLU in `ReLUBeforeAdditionBlock`, or convolution where
    the branch ends with one); whatever acts after the sum (the ReLU of post-activation blocks,
    BN-ReLU of `BNAfterAdditionBlock` and of ResStage end blocks) acts on the sum as always.
    `rate` may be traced: a stacked run of blocks scans over its blocks' rates.
    """
    if not self.train or (isinstance(rate, float | int) and rate == 0):
      return y
    if self.shortcut_kind == 'none':
      raise errors.ConfigError(
        'stochastic_depth_rate > 0 drops residual branches down to their shortcut, and the plain '
        "networks (shortcut='none') have none: use 0, or a network with shortcuts."
      )
    # One draw per image, sharded as the batch (see `Dropout`).
    sharding = jax.typeof(y[:, 0, 0, 0]).sharding
    keep = jax.random.bernoulli(
      self.make_rng('dropout'), 1 - rate, y.shape[:1], out_sharding=sharding
    )
    scale = jnp.where(keep, 1 / (1 - rate), 0).astype(y.dtype)
    return y * scale[:, None, None, None]


class PostActBlock(ResidualBlock):
  """He 2015: each convolution is followed by BN; ReLU after all but the last, and after the sum.

  `drop_rate`, here and in every block: the stochastic depth rate of the branch (`drop_path`).
  """

  @nn.compact
  def __call__(self, x: jax.Array, drop_rate: float | jax.Array = 0.0) -> jax.Array:
    y = self.drop_path(self.last_norm(self.conv_norm_act(x)), drop_rate)
    return self.act(y + self.shortcut(x))


class BNAfterAdditionBlock(ResidualBlock):
  """He 2016 Fig. 4(b): conv-BN-ReLU ... conv, add, then BN and ReLU after the sum (`bn{n}`)."""

  @nn.compact
  def __call__(self, x: jax.Array, drop_rate: float | jax.Array = 0.0) -> jax.Array:
    y = self.drop_path(self.conv_norm_act(x), drop_rate)
    return self.act(self.last_norm(y + self.shortcut(x)))


class ReLUBeforeAdditionBlock(ResidualBlock):
  """He 2016 Fig. 4(c): conv-BN-ReLU ... conv-BN-ReLU, then add; nothing after the sum."""

  @nn.compact
  def __call__(self, x: jax.Array, drop_rate: float | jax.Array = 0.0) -> jax.Array:
    y = self.drop_path(self.act(self.last_norm(self.conv_norm_act(x))), drop_rate)
    return y + self.shortcut(x)


class ReLUPreActBlock(ResidualBlock):
  """He 2016 Fig. 4(d), ReLU-only pre-activation: ReLU-conv-BN ... ReLU-conv-BN, add.

  A projection shortcut takes the activated input too: "when pre-activation is used, these
  projection shortcuts are also with pre-activation" (He 2016, Appendix). Identity and
  zero-padding shortcuts carry the raw input.
  """

  @nn.compact
  def __call__(self, x: jax.Array, drop_rate: float | jax.Array = 0.0) -> jax.Array:
    y = self.act(x)
    projects = self.shortcut_kind in PROJECTIONS
    branch = self.drop_path(self.last_norm(self.conv_norm_act(y)), drop_rate)
    return branch + self.shortcut(y if projects else x)


Modulation = Literal[
  'constant_scaling', 'exclusive_gating', 'shortcut_only_gating', 'dropout', 'inverted_dropout'
]


class ModulatedShortcutBlock(ResidualBlock):
  """He 2016 Table 1 and Fig. 2(b)-(f): a post-activation unit, relu(a * h(x) + b * F(x)), whose
  shortcut h(x) and branch F(x) are modulated before the sum, by `modulation`:

    'constant_scaling':     a = `shortcut_scale` (the paper's lambda = 0.5), b = `residual_scale`
                            (1, or 1 - lambda: "frozen gating").
    'exclusive_gating':     a = 1 - g(x), b = g(x) (Highway networks), g(x) = sigmoid(W_g x + b_g)
                            elementwise, W_g a 1x1 convolution (`gate_conv`, with the block's
                            stride) and b_g its bias (`gate_bias`), initialised to
                            `gate_bias_init` (the paper's best: -6).
    'shortcut_only_gating': a = 1 - g(x), b = 1.
    'dropout':              a = a keep mask of rate 1 - `shortcut_dropout` in training, the
                            constant 1 - `shortcut_dropout` at test (0.5 in the paper), b = 1:
                            "Dropout statistically imposes a scale of lambda with an expectation
                            of 0.5 on the shortcut" (He 2016, Sec. 3.1), not rescaled.
    'inverted_dropout':     as 'dropout', with the kept values divided by the keep rate in
                            training and the identity at test (nn.Dropout's convention), so that
                            the shortcut's expectation stays 1.

  The 1x1-convolution shortcut of the same table is He 2015's option C (`shortcut='C'`).
  """

  modulation: Modulation = 'constant_scaling'
  shortcut_scale: float = 0.5
  residual_scale: float = 1.0
  gate_bias_init: float = -6.0
  shortcut_dropout: float = 0.5

  def __post_init__(self):
    check_choice('modulation', self.modulation, get_args(Modulation))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, drop_rate: float | jax.Array = 0.0) -> jax.Array:
    h, f = self.shortcut(x), self.drop_path(self.last_norm(self.conv_norm_act(x)), drop_rate)
    if self.modulation == 'constant_scaling':
      return self.act(self.shortcut_scale * h + self.residual_scale * f)
    if self.modulation in ('dropout', 'inverted_dropout'):
      h = Dropout(self.shortcut_dropout, deterministic=not self.train)(h)
      if self.modulation == 'dropout':  # mask * h in training, (1 - rate) * h at test
        h = (1 - self.shortcut_dropout) * h
      return self.act(h + f)
    g = self.conv(self.features, 1, self.strides, name='gate_conv')(x)
    bias = self.param('gate_bias', nn.initializers.constant(self.gate_bias_init), (self.features,))
    g = nn.sigmoid(g + bias.astype(g.dtype))
    f = g * f if self.modulation == 'exclusive_gating' else f
    return self.act((1 - g) * h + f)


PreAct = Literal['residual', 'shared', 'none']


class PreActBlock(ResidualBlock):
  """He 2016: BN and ReLU before each convolution (`bn{i}` before `conv{i}`), nothing after the sum.

  `preact` says where the first BN-ReLU acts, as in the authors' code (fb.resnet.torch
  `preresnet.lua`, resnet-1k-layers):
    'residual': on the residual branch only; the identity path carries the raw input.
    'shared':   on the input of both paths (the first block of a stage, whose shortcut is
                usually a projection that then sees normalised input).
    'none':     no BN-ReLU: the input was just activated by the stem (first block, ImageNet).
  """

  preact: PreAct = 'residual'

  def __post_init__(self):
    check_choice('preact', self.preact, get_args(PreAct))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, drop_rate: float | jax.Array = 0.0) -> jax.Array:
    if self.preact == 'shared':
      x = self.act(self.norm(name='bn1')(x))
    y = x
    for i, (features, kernel_size, strides, groups) in enumerate(self.convs(), start=1):
      if i > 1 or self.preact == 'residual':
        y = self.act(self.norm(name=f'bn{i}')(y))
      y = self.conv(features, kernel_size, strides, groups, name=f'conv{i}')(y)
    return self.drop_path(y, drop_rate) + self.shortcut(x)


Position = Literal['start', 'middle', 'end']


class StageBlock(ResidualBlock):
  """Duta 2020 (iResNet, ResStage; official code github.com/iduta/iresnet): each stage is a start
  block, middle blocks and an end block, so that there is one ReLU on the main path per stage.

    start:  conv-BN-ReLU ... conv-BN, add the (projection) shortcut; no ReLU after the sum.
    middle: [bn0]-ReLU-conv-BN-ReLU ... conv, add the identity.
    end:    as middle, then BN-ReLU after the sum.

  Stochastic depth drops the branch before the sum: after a start block's last BN, after the
  last convolution of middle and end blocks; an end block's BN-ReLU after the sum always acts.

  The first middle block has no `bn0` (`bn0=False`): its input comes from the start block, which
  ends with BN. So does an end block that directly follows the start block (two-block stages).

  `official_inplace_relu`: the official code applies that block's first ReLU in place, to its
  input tensor, so the identity path carries relu(x) as well. The published ImageNet weights
  were trained this way, so it is the default; False gives the paper's form (identity x).

  Only a start block has a BN at the end of its residual branch, so `zero_init_last` belongs on
  start blocks: a middle block's branch ends with a convolution, and the end block's last BN
  acts after the sum, so zeroing it would zero the stage's output. (The official
  `zero_init_residual` sets `bn3`/`bn2` of every block and fails on middle blocks, which have
  none.)
  """

  position: Position = 'middle'
  bn0: bool = True
  official_inplace_relu: bool = True

  def __post_init__(self):
    check_choice('position', self.position, get_args(Position))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, drop_rate: float | jax.Array = 0.0) -> jax.Array:
    identity = y = x
    if self.position != 'start':
      y = self.act(self.norm(name='bn0')(x) if self.bn0 else x)
      if not self.bn0 and self.official_inplace_relu:
        identity = y
    y = self.conv_norm_act(y)
    if self.position == 'start':
      y = self.last_norm(y)
    y = self.drop_path(y, drop_rate) + self.shortcut(identity)
    return self.act(self.last_norm(y)) if self.position == 'end' else y
