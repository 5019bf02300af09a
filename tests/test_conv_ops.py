"""conv_ops.conv2d: forward and gradients equal autodiff of lax.conv_general_dilated."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from resnet_jax.models import conv_ops

# (kernel, stride, padding, groups, in_features, out_features, spatial size): every kind of
# convolution in the zoo (stems, bottlenecks, shortcuts, grouped 3x3), plus odd sizes where a
# strided window does not cover the input exactly.
CASES = [
  (1, 1, 0, 1, 8, 16, 8),
  (1, 2, 0, 1, 8, 16, 8),
  (1, 2, 0, 1, 8, 16, 7),
  (3, 1, 1, 1, 8, 8, 8),
  (3, 2, 1, 1, 8, 16, 8),
  (3, 2, 1, 1, 8, 16, 9),
  (7, 2, 3, 1, 3, 8, 16),
  (7, 2, 3, 1, 3, 8, 15),
  (3, 1, 1, 32, 64, 64, 6),
  (3, 2, 1, 32, 64, 64, 6),
  (1, 1, 0, 32, 64, 64, 4),
  (3, 1, 0, 1, 4, 8, 7),
]


def _reference(x, k, stride, pad, groups):
  return lax.conv_general_dilated(
    x,
    k,
    (stride, stride),
    ((pad, pad), (pad, pad)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    feature_group_count=groups,
  )


def _ours(x, k, stride, pad, groups):
  return conv_ops.conv2d(x, k, (stride, stride), ((pad, pad), (pad, pad)), groups)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
@pytest.mark.parametrize('size,stride,pad,groups,cin,cout,hw', CASES)
def test_forward_and_gradients_match_autodiff(size, stride, pad, groups, cin, cout, hw, dtype):
  kx, kk, kg = jax.random.split(jax.random.key(size * 100 + stride * 10 + groups), 3)
  x = jax.random.normal(kx, (2, hw, hw, cin), dtype)
  k = (jax.random.normal(kk, (size, size, cin // groups, cout)) / size).astype(dtype)

  def vjp(fn):
    y, pullback = jax.vjp(lambda x, k: fn(x, k, stride, pad, groups), x, k)
    dy = jax.random.normal(kg, y.shape, dtype)
    return (y, *pullback(dy))

  want = jax.jit(lambda: vjp(_reference))()
  got = jax.jit(lambda: vjp(_ours))()
  # float32: the same sums in another order. bfloat16: outputs rounded to 8 bits of mantissa.
  tol = 1e-4 if dtype == 'float32' else 2e-2
  for name, a, b in zip(('output', 'input grad', 'kernel grad'), want, got, strict=True):
    assert a.shape == b.shape and a.dtype == b.dtype, name
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    scale = np.abs(a).max()
    np.testing.assert_allclose(b / scale, a / scale, atol=tol, err_msg=name)


def test_gradients_inside_scan_match_unrolled():
  # The point of the op: loop bodies. Same numbers inside lax.scan as unrolled autodiff.
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 8))
  ks = jax.random.normal(jax.random.key(1), (3, 3, 3, 8, 8)) * 0.2

  def scanned(x, ks):
    def step(h, k):
      return jax.nn.relu(conv_ops.conv2d(h, k, (1, 1), ((1, 1), (1, 1)))), None

    return jnp.sum(lax.scan(step, x, ks)[0] ** 2)

  def unrolled(x, ks):
    for k in ks:
      x = jax.nn.relu(_reference(x, k, 1, 1, 1))
    return jnp.sum(x**2)

  want = jax.grad(unrolled, (0, 1))(x, ks)
  got = jax.jit(jax.grad(scanned, (0, 1)))(x, ks)
  for a, b in zip(want, got, strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def test_bad_shapes_raise_clear_errors():
  with pytest.raises(ValueError, match='feature_group_count'):
    conv_ops.conv2d(jnp.ones((1, 4, 4, 6)), jnp.ones((3, 3, 4, 8)), feature_group_count=1)
  with pytest.raises(ValueError, match='4-D NHWC'):
    conv_ops.conv2d(jnp.ones((4, 4, 6)), jnp.ones((3, 3, 6, 8)))
