"""conv_ops: forward and gradients equal autodiff of lax.conv_general_dilated and Flax's max_pool.

conv_ops takes its own formulations on XLA:CPU only and hands other backends lax's operations,
so every test here selects its formulations explicitly: on any backend, they are what is
compared with lax and Flax.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

from resnet_jax import models
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
# The fast tier (`-m "not slow"`) checks one strided 3x3 with an uncovered edge and one grouped
# 3x3; the full suite checks every case.
FAST_CASES = {(3, 2, 1, 1, 8, 16, 9), (3, 2, 1, 32, 64, 64, 6)}
POOL_CASES = [(3, 2, 1, 8), (3, 2, 1, 7), (2, 2, 0, 6), (3, 1, 1, 5)]
FAST_POOL_CASES = {(3, 2, 1, 7)}


def tiered(cases, fast):
  return [case if case in fast else pytest.param(*case, marks=pytest.mark.slow) for case in cases]


@pytest.fixture(autouse=True)
def custom_gradients(monkeypatch):
  """The XLA:CPU formulations, whichever platform the tests run on."""
  monkeypatch.setattr(conv_ops, '_per_platform', lambda cpu, default, *args: cpu(*args))


def test_the_formulation_is_chosen_for_the_platform_lowered_for(monkeypatch):
  """XLA:CPU's max-pool gradient, lax's select-and-scatter elsewhere, from one traced program."""
  monkeypatch.undo()

  def loss(x, kernel):
    y = conv_ops.max_pool(conv_ops.conv2d(x, kernel, (2, 2), ((1, 1), (1, 1))))
    return jnp.sum(y**2)

  x, kernel = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 8))
  traced = jax.jit(jax.grad(loss, argnums=(0, 1))).trace(x, kernel)
  lowered = {p: traced.lower(lowering_platforms=(p,)).as_text() for p in ('cpu', 'cuda', 'tpu')}
  assert {p: 'select_and_scatter' in text for p, text in lowered.items()} == {
    'cpu': False,
    'cuda': True,
    'tpu': True,
  }


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


@pytest.mark.parametrize('size,stride,pad,groups,cin,cout,hw', tiered(CASES, FAST_CASES))
def test_forward_and_gradients_match_autodiff(size, stride, pad, groups, cin, cout, hw):
  kx, kk, kg = jax.random.split(jax.random.key(size * 100 + stride * 10 + groups), 3)
  x = jax.random.normal(kx, (2, hw, hw, cin))
  k = jax.random.normal(kk, (size, size, cin // groups, cout)) / size

  def vjp(fn, dtype):
    y, pullback = jax.vjp(
      lambda x, k: fn(x, k, stride, pad, groups), x.astype(dtype), k.astype(dtype)
    )
    return (y, *pullback(jax.random.normal(kg, y.shape, dtype)))

  # One compilation per case: reference and ours, float32 and bfloat16.
  dtypes = (jnp.float32, jnp.bfloat16)
  results = jax.jit(lambda: [(vjp(_reference, d), vjp(_ours, d)) for d in dtypes])()
  # float32: the same sums in another order. bfloat16: outputs rounded to 8 bits of mantissa.
  for dtype, tol, (want, got) in zip(dtypes, (1e-4, 2e-2), results, strict=True):
    for name, a, b in zip(('output', 'input grad', 'kernel grad'), want, got, strict=True):
      assert a.shape == b.shape and a.dtype == b.dtype == dtype, name
      a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
      scale = np.abs(a).max()
      np.testing.assert_allclose(b / scale, a / scale, atol=tol, err_msg=f'{name} {dtype}')


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


def test_gradients_with_a_batch_sharded_over_an_explicit_mesh():
  # The train step shards the batch over an explicit mesh; the kernel gradient sums over it.
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  mesh = jax.make_mesh((jax.device_count(),), ('data',))
  x = jax.random.normal(jax.random.key(0), (jax.device_count() * 2, 12, 12, 4))
  ks = [jax.random.normal(jax.random.key(i), (s, s, 4, 4)) for i, s in enumerate((1, 3))]

  def loss(x, ks, conv):
    x = conv_ops.max_pool(x) if conv is _ours else nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
    for k, stride in zip(ks, (2, 1), strict=True):
      pad = k.shape[0] // 2
      x = conv(x, k, stride, pad, 1)
    return jnp.sum(x**2)

  want = jax.grad(loss, (0, 1))(x, ks, _reference)
  x = jax.device_put(x, NamedSharding(mesh, P('data')))  # typed as sharded, as data.to_global
  ks = jax.device_put(ks, NamedSharding(mesh, P()))
  got = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)(x, ks, _ours)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def test_bad_shapes_raise_clear_errors():
  with pytest.raises(ValueError, match='feature_group_count'):
    conv_ops.conv2d(jnp.ones((1, 4, 4, 6)), jnp.ones((3, 3, 4, 8)), feature_group_count=1)
  with pytest.raises(ValueError, match='4-D NHWC'):
    conv_ops.conv2d(jnp.ones((4, 4, 6)), jnp.ones((3, 3, 6, 8)))


@pytest.mark.parametrize('window,stride,padding,hw', tiered(POOL_CASES, FAST_POOL_CASES))
def test_max_pool_matches_flax_including_ties(window, stride, padding, hw):
  # After a ReLU most windows tie at zero; the gradient must go to the first maximum only.
  x = jnp.maximum(jax.random.normal(jax.random.key(0), (2, hw, hw, 4)), 0.0)
  x = x.at[:, :, :, 0].set(0.0)

  def reference(x):
    pads = ((padding, padding), (padding, padding))
    return nn.max_pool(x, (window, window), (stride, stride), pads)

  y, pullback = jax.vjp(reference, x)
  # Integer gradients: sums of overlapping windows are exact in any order.
  dy = jnp.round(jax.random.normal(jax.random.key(1), y.shape) * 8)
  got_y, got_pullback = jax.vjp(lambda x: conv_ops.max_pool(x, window, stride, padding), x)
  np.testing.assert_array_equal(got_y, y)
  np.testing.assert_array_equal(got_pullback(dy)[0], pullback(dy)[0])


@pytest.mark.slow
def test_model_gradients_match_autodiff(monkeypatch):
  # A whole network (7x7 stem, max-pools, strided and 1x1 convolutions, scanned blocks): the
  # same loss and gradients as with autodiff of lax's convolution and Flax's max-pool.
  model = models.create_model('iresnet18', num_classes=10)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = model.init(jax.random.key(1), x, train=False)

  def loss(params):
    logits, _ = model.apply(
      {'params': params, 'batch_stats': variables['batch_stats']},
      x,
      train=True,
      mutable=['batch_stats'],
    )
    return jnp.sum(jax.nn.log_softmax(logits)[:, 0])

  got = jax.jit(jax.value_and_grad(loss))(variables['params'])
  # lax's convolution, Flax's max-pool
  monkeypatch.setattr(conv_ops, '_per_platform', lambda cpu, default, *args: default(*args))
  want = jax.jit(jax.value_and_grad(loss))(variables['params'])
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())
