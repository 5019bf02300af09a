"""Convolution and max pooling whose backward passes stay on XLA:CPU's fast paths.

`jax.grad` of `lax.conv_general_dilated` is correct everywhere, but its transposed convolutions
have non-canonical dimension numbers (a kernel read as OIHW-flipped, a batch read as features).
XLA:CPU sends only canonical convolutions (NHWC input, HWIO kernel) to its fast path; it gets
the others there by inserting layout transposes, or, inside `lax.scan` loop bodies, by not
getting them there at all (an order of magnitude slower). The VJP below computes the same
gradients with explicitly canonical operations:

* input gradient: the output gradient, dilated by the stride, convolved with the spatially
  flipped kernel whose input and output features are swapped (per group);
* input gradient of a 1x1 convolution: a matrix product with the kernel read transposed,
  which the matmul does without a copy of the kernel;
* kernel gradient of a 1x1 convolution: one matrix product over batch and space;
* kernel gradient of a larger kernel: a convolution of the (feature-major) input with the output
  gradient as kernel, the batch playing the role of the features.

The mathematics is the convolution's; only the order of floating-point sums may differ.
Other backends (GPU, TPU) handle the layouts of autodiff's convolutions natively and keep it
(`lax.platform_dependent` picks the formulation when a program is lowered for its platform).

`max_pool`'s gradient in XLA:CPU is a select-and-scatter that it expands into a scatter, about
ten times slower than the forward; here the forward also records which window position held
the maximum (the first one, as select-and-scatter and PyTorch choose) and the backward routes
the gradient there with strided pads, all elementwise (on XLA:CPU only, as above).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _per_platform(cpu, default, *args):
  """`cpu(*args)` in a program compiled for XLA:CPU, `default(*args)` for any other platform.

  Chosen when the program is lowered for its platform (`lax.platform_dependent`), not by the
  default backend at trace time, so it holds for arrays placed on another backend and for
  programs lowered ahead of time for another platform.
  """
  return lax.platform_dependent(*args, cpu=cpu, default=default)


def _conv(x, kernel, strides, padding, groups=1, lhs_dilation=(1, 1), rhs_dilation=(1, 1)):
  return lax.conv_general_dilated(
    x,
    kernel,
    window_strides=strides,
    padding=padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=_NHWC,
    feature_group_count=groups,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv2d(x, kernel, strides, padding, groups):
  return _conv(x, kernel, strides, padding, groups)


def _conv2d_fwd(x, kernel, strides, padding, groups):
  return _conv(x, kernel, strides, padding, groups), (x, kernel)


def _input_grad(dy, kernel, in_hw, strides, padding, groups):
  kh, kw, cin_g, cout = kernel.shape
  if (kh, kw) == (1, 1) and padding == ((0, 0), (0, 0)) and groups == 1:
    # dy @ kernel^T; the matmul reads the kernel transposed, no copy. A strided 1x1 convolution
    # saw every stride-th pixel: its gradient goes back there, zeros elsewhere.
    dx = lax.dot_general(dy, kernel[0, 0], (((3,), (1,)), ((), ())))
    (sh, sw), (ho, wo) = strides, dy.shape[1:3]
    if (sh, sw) == (1, 1):
      return dx
    pads = ((0, 0, 0), (0, in_hw[0] - (ho - 1) * sh - 1, sh - 1))
    pads += ((0, in_hw[1] - (wo - 1) * sw - 1, sw - 1), (0, 0, 0))
    return lax.pad(dx, jnp.zeros((), dx.dtype), pads)
  # Per group, swap input and output features: [kh, kw, cin/g, g, cout/g] -> [kh, kw, cout/g, cin].
  k = kernel.reshape(kh, kw, cin_g, groups, cout // groups).transpose(0, 1, 4, 3, 2)
  k = jnp.flip(k.reshape(kh, kw, cout // groups, groups * cin_g), (0, 1))
  pads = []
  for size, out, k_size, s, (lo, _) in zip(
    in_hw, dy.shape[1:3], (kh, kw), strides, padding, strict=True
  ):
    # Full correlation of the stride-dilated gradient, cropped to the input's extent.
    pads.append((k_size - 1 - lo, size + lo - (out - 1) * s - 1))
  return _conv(dy, k, (1, 1), pads, groups, lhs_dilation=strides)


def _kernel_grad(x, dy, kernel, strides, padding, groups):
  kh, kw, cin_g, cout = kernel.shape
  _, h, w, _ = x.shape
  _, ho, wo, _ = dy.shape
  # The gradient sums over the batch, which may be sharded: its sharding is the kernel's.
  sharding = jax.typeof(kernel).sharding
  spec = tuple(sharding.spec) + (None,) * (4 - len(sharding.spec))
  if (kh, kw) == (1, 1) and padding == ((0, 0), (0, 0)) and groups == 1:
    # A 1x1 kernel gradient is a matrix product over batch and (strided) space.
    x = x[:, : (ho - 1) * strides[0] + 1 : strides[0], : (wo - 1) * strides[1] + 1 : strides[1]]
    dk = lax.dot_general(
      x, dy, (((0, 1, 2), (0, 1, 2)), ((), ())), out_sharding=sharding.update(spec=spec[2:])
    )
    return dk.reshape(kernel.shape)
  # Batch as features: [cin, h, w, n] (*) [ho, wo, n, cout], the kernel dilated by the stride;
  # batch_group_count pairs each group of input features with its output features.
  pads = []
  for size, out, k_size, s, (lo, _) in zip(
    (h, w), (ho, wo), (kh, kw), strides, padding, strict=True
  ):
    pads.append((lo, k_size - 1 + (out - 1) * s - size - lo + 1))
  dk = lax.conv_general_dilated(
    x.transpose(3, 1, 2, 0),
    dy.transpose(1, 2, 0, 3),
    window_strides=(1, 1),
    padding=pads,
    rhs_dilation=strides,
    dimension_numbers=_NHWC,
    batch_group_count=groups,
    out_sharding=sharding.update(spec=(spec[2], spec[0], spec[1], spec[3])),
  )  # [cin / groups, kh, kw, cout]
  return dk.transpose(1, 2, 0, 3)


def _conv2d_bwd(strides, padding, groups, res, dy):
  x, kernel = res
  dx = _input_grad(dy, kernel, x.shape[1:3], strides, padding, groups)
  dk = _kernel_grad(x, dy, kernel, strides, padding, groups)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d(
  x: jax.Array,
  kernel: jax.Array,
  strides: Sequence[int] = (1, 1),
  padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0)),
  feature_group_count: int = 1,
) -> jax.Array:
  """Convolves NHWC `x` with an HWIO `kernel`; same numbers as `lax.conv_general_dilated`.

  Args:
    x: input, [batch, height, width, in_features].
    kernel: [kh, kw, in_features // feature_group_count, out_features].
    strides: window strides (height, width).
    padding: explicit (low, high) zero padding per spatial dimension, as PyTorch's `padding`.
    feature_group_count: number of groups of a grouped convolution.

  Returns:
    [batch, out_height, out_width, out_features], in the dtype of `x` and `kernel`.
  """
  strides = tuple(int(s) for s in strides)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if x.ndim != 4 or kernel.ndim != 4 or len(strides) != 2 or len(padding) != 2:
    raise ValueError(
      f'conv2d takes a 4-D NHWC input and a 4-D HWIO kernel with two strides and two '
      f'(low, high) paddings; got input {x.shape}, kernel {kernel.shape}, strides {strides}, '
      f'padding {padding}. Reshape the input or use lax.conv_general_dilated for other ranks.'
    )
  groups = int(feature_group_count)
  if x.shape[-1] != kernel.shape[2] * groups or kernel.shape[3] % groups:
    raise ValueError(
      f'conv2d: input features {x.shape[-1]} must equal kernel in-features {kernel.shape[2]} x '
      f'feature_group_count {groups}, and kernel out-features {kernel.shape[3]} must be '
      f'divisible by it. Check the kernel layout (HWIO) and the group count.'
    )
  return _per_platform(
    lambda x, kernel: _conv2d(x, kernel, strides, padding, groups),
    lambda x, kernel: _conv(x, kernel, strides, padding, groups),
    x,
    kernel,
  )


def _pool_windows(x, window, stride, padding):
  """The window*window strided views of the -inf-padded input, in row-major window order."""
  _, h, w, _ = x.shape
  ho, wo = (h + 2 * padding - window) // stride + 1, (w + 2 * padding - window) // stride + 1
  pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  xp = jnp.pad(x, pads, constant_values=-jnp.inf)
  return [
    xp[:, a : a + (ho - 1) * stride + 1 : stride, b : b + (wo - 1) * stride + 1 : stride]
    for a in range(window)
    for b in range(window)
  ]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, stride, padding):
  return functools.reduce(jnp.maximum, _pool_windows(x, window, stride, padding))


def _max_pool_fwd(x, window, stride, padding):
  views = _pool_windows(x, window, stride, padding)
  y = functools.reduce(jnp.maximum, views)
  argmax = jnp.full(y.shape, len(views), jnp.int8)
  for i in reversed(range(len(views))):
    argmax = jnp.where(views[i] == y, jnp.int8(i), argmax)
  return y, (argmax, x.shape)


def _max_pool_bwd(window, stride, padding, res, dy):
  argmax, (_, h, w, _) = res
  ho, wo = argmax.shape[1:3]
  zero = jnp.zeros((), dy.dtype)
  dx = 0
  for i in range(window * window):
    a, b = divmod(i, window)
    # Place the gradient of window position (a, b) at rows a, a + stride, ... of the padded input.
    pads = (
      (0, 0, 0),
      (a, h + 2 * padding - a - (ho - 1) * stride - 1, stride - 1),
      (b, w + 2 * padding - b - (wo - 1) * stride - 1, stride - 1),
      (0, 0, 0),
    )
    dx = dx + lax.pad(jnp.where(argmax == i, dy, zero), zero, pads)
  return (dx[:, padding : padding + h, padding : padding + w],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x: jax.Array, window: int = 3, stride: int = 2, padding: int = 1) -> jax.Array:
  """Max pooling of NHWC `x` over square windows; same numbers as `flax.linen.max_pool`.

  Padding is symmetric and never wins (-inf), as PyTorch's `MaxPool2d(window, stride, padding)`.
  """
  if x.ndim != 4 or not 0 <= padding < window or window * window > 127:
    raise ValueError(
      f'max_pool takes a 4-D NHWC input and a window of at most 11x11 with 0 <= padding < window; '
      f'got input {x.shape}, window {window}, padding {padding}.'
    )
  pads = ((padding, padding), (padding, padding))
  return _per_platform(
    lambda x: _max_pool(x, int(window), int(stride), int(padding)),
    lambda x: nn.max_pool(x, (window, window), (stride, stride), pads),
    x,
  )
