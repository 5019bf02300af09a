"""RandAugment, TrivialAugmentWide and random erasing against torchvision's definitions.

tests/fixtures/augment_ops.npz holds torchvision's outputs of every operation at every magnitude
bin (made by make_augment_fixtures.py, see tests/fixtures/README.md); no PyTorch is needed here.
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from configs import default
from resnet_jax import augment, errors, input_pipeline, train

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'augment_ops.npz')
# Nearest-neighbour resampling: where a source coordinate falls exactly half-way between two
# pixels, torchvision's float64 angles and TF's float32 matrix may round to either neighbour.
GEOMETRIC = ('ShearX', 'ShearY', 'Rotate')


@pytest.fixture(scope='module')
def reference():
  with np.load(FIXTURE) as npz:
    return dict(npz)


def _hwc(chw: np.ndarray) -> np.ndarray:
  return chw.transpose(1, 2, 0)


@pytest.mark.parametrize('policy', ['randaugment', 'trivial'])
@pytest.mark.parametrize('name', ['rgb', 'grey', 'large'])
def test_every_operation_and_magnitude_equals_torchvision(reference, policy, name):
  assert tuple(reference[f'ops.{policy}']) == augment.OPS
  image = _hwc(reference[f'image.{name}'])
  height, width = image.shape[:2]
  for index, op in enumerate(augment.OPS):
    assert bool(reference[f'signed.{policy}.{op}']) == (op in augment.SIGNED), op
    table = reference[f'table.{policy}.{name}.{op}']
    ours = augment.magnitudes(op, policy == 'trivial', height, width)
    if len(ours) > 1:
      ours = ours[reference[f'bins.{name}']]
    np.testing.assert_allclose(ours, table, rtol=1e-6, atol=0)
    signs = (1.0, -1.0) if op in augment.SIGNED else (1.0,)
    got = np.stack(
      [augment.apply_op(image, index, sign * m).numpy() for m in table for sign in signs]
    )
    want = reference[f'out.{policy}.{name}.{op}'].transpose(0, 2, 3, 1)
    if op in GEOMETRIC:
      assert np.mean(got == want) > 0.99, op
      assert np.mean(np.all(got == want, axis=(1, 2, 3))) > 0.8, op
    else:
      np.testing.assert_array_equal(got, want, err_msg=op)


def _draws(function, count: int) -> np.ndarray:
  """function(seed) for `count` per-example seeds, as the pipeline keys them."""
  seeds = tf.data.Dataset.range(count).map(lambda i: tf.stack([tf.constant(26, tf.int64), i]))
  return next(iter(seeds.map(function).batch(count))).numpy()


def _magnitude(op: str, wide: bool, height: int, width: int, magnitude_bin: int) -> float:
  table = augment.magnitudes(op, wide, height, width)
  return table[magnitude_bin] if len(table) > 1 else table[0]


def _which(outputs: np.ndarray, candidates: np.ndarray) -> list[list[int]]:
  """For each output, the indices of the candidates it equals."""
  flat_out = outputs.reshape(len(outputs), -1)
  flat_candidates = candidates.reshape(len(candidates), -1)
  return [list(np.flatnonzero(np.all(flat_candidates == o, axis=1))) for o in flat_out]


def test_randaugment_draws_one_of_the_14_operations_uniformly_at_the_set_magnitude(reference):
  image = _hwc(reference['image.large'])
  height, width = image.shape[:2]
  magnitude_bin = 9
  candidates, labels = [], []
  for index, op in enumerate(augment.OPS):
    value = _magnitude(op, False, height, width, magnitude_bin)
    for sign in (1.0, -1.0) if op in augment.SIGNED else (1.0,):
      candidates.append(augment.apply_op(image, index, sign * value).numpy())
      labels.append((op, sign))
  policy = augment.Policy(randaugment_layers=1, randaugment_magnitude=magnitude_bin)
  outputs = _draws(lambda seed: augment.apply(tf.constant(image), seed, policy, (0.0,)), 2800)
  matches = _which(outputs, np.stack(candidates))
  assert all(matches), 'an output that no operation at the set magnitude gives'
  ops = [labels[m[0]][0] for m in matches if len({labels[i][0] for i in m}) == 1]
  counts = {op: ops.count(op) for op in augment.OPS}
  assert len(ops) == len(outputs)  # no two operations give the same image
  assert all(120 <= n <= 280 for n in counts.values()), counts  # 200 each expected
  signs = [labels[m[0]][1] for m in matches if len(m) == 1 and labels[m[0]][0] in augment.SIGNED]
  assert 0.42 < np.mean(np.array(signs) > 0) < 0.58


def test_randaugment_layers_compose_that_many_operations(reference):
  image = _hwc(reference['image.large'])
  height, width = image.shape[:2]
  signed = [
    (i, s * _magnitude(op, False, height, width, 5))
    for i, op in enumerate(augment.OPS)
    for s in ((1.0, -1.0) if op in augment.SIGNED else (1.0,))
  ]
  singles = [augment.apply_op(image, i, m) for i, m in signed]
  pairs = np.stack([augment.apply_op(first, i, m).numpy() for first in singles for i, m in signed])
  policy = augment.Policy(randaugment_layers=2, randaugment_magnitude=5)
  outputs = _draws(lambda seed: augment.apply(tf.constant(image), seed, policy, (0.0,)), 200)
  assert all(_which(outputs, pairs))
  # Most are no single operation (those that are drew Identity, 1 in 14 per layer, or an
  # operation that undoes or absorbs the other).
  assert np.mean([bool(m) for m in _which(outputs, np.stack(singles))]) < 0.3


def test_trivial_augment_draws_operation_and_magnitude_bin_uniformly(reference):
  image = _hwc(reference['image.large'])
  height, width = image.shape[:2]
  candidates, labels = [], []
  for index, op in enumerate(augment.OPS):
    table = augment.magnitudes(op, True, height, width)
    for magnitude_bin, value in enumerate(table):
      for sign in (1.0, -1.0) if op in augment.SIGNED else (1.0,):
        candidates.append(augment.apply_op(image, index, sign * value).numpy())
        labels.append((op, magnitude_bin if len(table) > 1 else None))
  policy = augment.Policy(trivial_augment=True)
  outputs = _draws(lambda seed: augment.apply(tf.constant(image), seed, policy, (0.0,)), 2800)
  matches = _which(outputs, np.stack(candidates))
  assert all(matches)
  ops = [labels[m[0]][0] for m in matches if len({labels[i][0] for i in m}) == 1]
  # Bin 0 of most operations is the identity: the images left as they are are those draws
  # and Identity's, which no other image identifies.
  counts = {op: ops.count(op) for op in augment.OPS[1:]}
  assert all(120 <= n <= 280 for n in counts.values()), counts
  assert 150 <= np.all(outputs == image, axis=(1, 2, 3)).sum() <= 400
  # Brightness at each bin is a distinct image: its bins are uniform over 0-30.
  bins = [labels[m[0]][1] for m in matches if len(m) == 1 and labels[m[0]][0] == 'Brightness']
  assert len(bins) > 100 and abs(np.mean(bins) - 15) < 2.5 and min(bins) <= 2 and max(bins) >= 28


def test_random_erasing_probability_area_and_aspect_ratio():
  size = (24, 32)
  image = tf.fill((*size, 3), tf.constant(255, tf.uint8))
  fill = (10.2, 20.0, 30.0)  # erased pixels: the rounded mean colour
  probability = 0.4
  policy = augment.Policy(random_erasing=probability)
  outputs = _draws(lambda seed: augment.apply(image, seed, policy, fill), 4000)
  erased = np.all(outputs == np.array([10, 20, 30], np.uint8), axis=-1)
  kept = np.all(outputs == 255, axis=-1)
  assert np.all(erased | kept)
  hit = erased.any(axis=(1, 2))
  # Binomial(4000, p): standard deviation 0.0077.
  assert abs(hit.mean() - probability) < 0.03
  heights = erased[hit].any(axis=2).sum(axis=1)
  widths = erased[hit].any(axis=1).sum(axis=1)
  assert np.array_equal(heights * widths, erased[hit].sum(axis=(1, 2))), 'not one rectangle'
  assert heights.max() < size[0] and widths.max() < size[1]
  # torchvision's draw: 10 tries of area share U(0.02, 0.33) and log aspect ratio (height /
  # width) U(log 0.3, log 3.3), the first whose rounded sides fit strictly inside; simulated.
  rng = np.random.default_rng(0)
  share = rng.uniform(0.02, 0.33, (100_000, 10))
  ratio = np.exp(rng.uniform(math.log(0.3), math.log(3.3), (100_000, 10)))
  area = size[0] * size[1] * share
  sim_h, sim_w = np.round(np.sqrt(area * ratio)), np.round(np.sqrt(area / ratio))
  fits = (sim_h < size[0]) & (sim_w < size[1])
  first = np.argmax(fits, axis=1)[fits.any(axis=1)]
  rows = np.flatnonzero(fits.any(axis=1))
  sim_share = (sim_h * sim_w)[rows, first] / (size[0] * size[1])
  sim_log_ratio = np.log(sim_h[rows, first] / sim_w[rows, first])
  got_share = heights * widths / (size[0] * size[1])
  assert abs(got_share.mean() - sim_share.mean()) < 0.01
  assert abs(got_share.std() - sim_share.std()) < 0.01
  assert abs(np.log(heights / widths).mean() - sim_log_ratio.mean()) < 0.1
  assert sim_share.min() <= got_share.min() and got_share.max() <= sim_share.max()


def test_options_off_by_default_and_erasing_keeps_the_crop_and_flip(digits_config):
  config = default.get_config()
  assert not augment.policy(config).active
  builder = input_pipeline.get_builder(digits_config)
  base = next(input_pipeline.train_batches(builder, digits_config, 128))
  # A magnitude without layers is no augmentation: the same bits.
  digits_config.randaugment_magnitude = 20
  np.testing.assert_array_equal(
    next(input_pipeline.train_batches(builder, digits_config, 128))['image'], base['image']
  )
  digits_config.random_erasing = 1.0
  erased = next(input_pipeline.train_batches(builder, digits_config, 128))
  np.testing.assert_array_equal(erased['label'], base['label'])
  spec = input_pipeline.DATASETS['digits']
  mean = np.round(spec.mean[0])  # uint8 pixels: 0 after normalisation, up to the rounding.
  changed = erased['image'] != base['image']
  assert changed.any(axis=(1, 2, 3)).mean() > 0.5
  # Every changed pixel is the mean colour: the crop and flip draws are those of the base run.
  np.testing.assert_array_equal(erased['image'][changed], mean)


@pytest.mark.parametrize(
  ('field', 'value'),
  [
    ('randaugment_layers', -1),
    ('randaugment_magnitude', 31),
    ('random_erasing', 1.5),
    ('mixup_alpha', -0.1),
    ('cutmix_alpha', -1.0),
    ('mixup_switch_prob', 2.0),
  ],
)
def test_out_of_range_fields_are_config_errors(field, value):
  config = default.get_config()
  config[field] = value
  with pytest.raises(errors.ConfigError, match=f'config.{field}='):
    train.check_config(config)


def test_randaugment_and_trivial_augment_together_is_a_config_error():
  config = default.get_config()
  config.randaugment_layers, config.trivial_augment = 2, True
  with pytest.raises(errors.ConfigError, match='set randaugment_layers=0 or trivial_augment'):
    train.check_config(config)
