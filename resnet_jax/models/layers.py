"""Layers shared by every network, set up to behave exactly like their PyTorch counterparts.

Weights converted from the PyTorch reference code must give the same outputs here, so padding,
pooling and BatchNorm follow PyTorch rather than Flax defaults:

* convolutions and max-pooling pad explicitly and symmetrically, `(kernel_size - 1) // 2` on
  every side. Flax's 'SAME' pads a stride-2 layer more on the bottom/right than on the top/left,
  which shifts the sampling grid by one pixel relative to PyTorch.
* BatchNorm: PyTorch's momentum 0.1 is Flax's momentum 0.9 (the weight of the old running
  average); epsilon 1e-5. One difference remains and only affects training: PyTorch updates the
  running variance with the unbiased batch variance, Flax with the biased one (a factor
  n / (n - 1), n = batch x height x width, e.g. 1.0002 for 64 images of 8 x 8).
* Initialisation as torchvision and the official iResNet code: convolutions Kaiming-normal with
  fan-out (std = sqrt(2 / (out_channels x kernel area))), BN scale 1 and bias 0, the classifier
  uniform in +-1/sqrt(fan_in) (PyTorch's `nn.Linear` default).

Parameters and BatchNorm statistics are float32; `dtype` only sets the compute dtype.
Convolutions and max-pooling compute through `conv_ops`: the same numbers, with backward passes
that stay on XLA:CPU's fast paths (also inside the loops of stacked blocks).
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

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
      raise ValueError(
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


def batch_norm(train: bool, dtype: DType) -> ModuleDef:
  """BatchNorm with PyTorch's defaults; batch statistics in training, running ones otherwise."""
  return functools.partial(
    nn.BatchNorm,
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    dtype=dtype,
    param_dtype=jnp.float32,
  )


def max_pool(x: jax.Array, strides: int = 2) -> jax.Array:
  """3x3 max-pooling padded by 1 on each side (PyTorch `MaxPool2d(3, stride, padding=1)`).

  Padding counts as -inf, as in PyTorch; the output size rounds down (`ceil_mode=False`).
  """
  return conv_ops.max_pool(x, 3, strides, 1)


# He 2015's shortcut options for plain residual networks.
SHORTCUT_OPTIONS = ('A', 'B', 'C')


def check_shortcut_option(option: str) -> None:
  if option not in SHORTCUT_OPTIONS:
    raise ValueError(
      f'shortcut={option!r} is not one of {SHORTCUT_OPTIONS}: A zero-pads where the shape '
      'changes (parameter-free), B projects there (1x1 conv), C projects in every block.'
    )


def shortcut_option_kind(
  option: str, in_features: int, features: int, strides: int, projection: str
) -> str:
  """The `shortcut` kind of He 2015's option A, B or C for one block: where the shape changes,
  A pads with zeros and B projects (with `projection`); C projects in every block."""
  changes = in_features != features or strides != 1
  if option == 'C' or (option == 'B' and changes):
    return projection
  return 'zero_pad' if changes else 'identity'


def shortcut(
  x: jax.Array, kind: str, features: int, strides: int, conv: ModuleDef, norm: ModuleDef
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
  """
  if kind == 'identity':
    return x
  if kind == 'zero_pad':
    x = x[:, ::strides, ::strides, :]
    before = (features - x.shape[-1]) // 2
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (before, features - x.shape[-1] - before)))
  if kind == 'conv':
    return conv(features, 1, strides, name='shortcut_conv')(x)
  if kind == 'conv_bn':
    return norm(name='shortcut_bn')(conv(features, 1, strides, name='shortcut_conv')(x))
  if kind == 'pool':
    return max_pool(x, strides)
  if kind == 'pool_conv_bn':
    return norm(name='shortcut_bn')(conv(features, 1, name='shortcut_conv')(max_pool(x, strides)))
  raise ValueError(f'Unknown shortcut kind {kind!r}.')


def classifier(
  x: jax.Array, num_classes: int, dropout_rate: float, train: bool, dtype: DType
) -> jax.Array:
  """Global average pooling, optional dropout, fully connected layer; float32 logits."""
  x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
  if dropout_rate > 0:
    x = nn.Dropout(dropout_rate, deterministic=not train)(x)
  bound = x.shape[-1] ** -0.5
  x = nn.Dense(
    num_classes,
    dtype=dtype,
    kernel_init=nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
    bias_init=lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound),
    name='head',
  )(x)
  return x.astype(jnp.float32)
