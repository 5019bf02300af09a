"""Evaluation protocols (centre, 10-crop, multi-scale): views, averaging, masks and counts."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import quickstart
from resnet_jax import data, datasets, evaluation, fake_data, models, normalize, train


@pytest.fixture(scope='module')
def state():
  """An untrained cifar_resnet8 on one-channel images, with BatchNorm in inference mode."""
  model = models.create_model('cifar_resnet8', num_classes=10)
  sharding = NamedSharding(train.make_mesh(), P())
  return train.create_train_state(model, optax.sgd(0.1), jax.random.key(0), (1, 8, 8, 1), sharding)


def _apply(state):
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  return jax.jit(lambda x: state.apply_fn(variables, x, train=False).astype(jnp.float32))


def _run(state, protocol, batch, crop_size=8):
  step = jax.jit(evaluation.eval_step, static_argnames=('protocol', 'crop_size'))
  metrics = step(
    state, evaluation.EvalMetrics.empty(), batch, protocol=protocol, crop_size=crop_size
  )
  return metrics.compute() | {'count': int(metrics.top1.count)}


def test_ten_crops_are_the_corners_the_centre_and_their_mirrors():
  images = np.arange(2 * 6 * 7 * 1, dtype=np.float32).reshape(2, 6, 7, 1)
  crops = np.asarray(evaluation.ten_crops(jnp.asarray(images), 4))
  expected = [images[:, y : y + 4, x : x + 4] for y, x in ((0, 0), (0, 3), (2, 0), (2, 3), (1, 1))]
  expected += [e[:, :, ::-1] for e in expected]
  np.testing.assert_array_equal(crops, np.stack(expected))


def test_ten_crop_of_a_constant_image_equals_the_centre_crop(state):
  values = np.array([-1.0, 0.0, 0.5, 2.0], np.float32)[:, None, None, None]
  labels = np.array([3, 1, 4, 1], np.int32)
  mask = np.array([1, 1, 1, 0], np.float32)
  centre = {'image': np.ones((4, 8, 8, 1), np.float32) * values, 'label': labels, 'mask': mask}
  source = {'image': np.ones((4, 12, 12, 1), np.float32) * values, 'label': labels, 'mask': mask}
  expected, got = _run(state, 'center', centre), _run(state, '10crop', source)
  assert expected['count'] == got['count'] == 3
  for name in ('loss', 'top1', 'top5'):
    assert float(got[name]) == pytest.approx(float(expected[name]), rel=1e-5), name


def test_ten_crop_averages_the_softmax_of_its_views(state):
  images = jax.random.normal(jax.random.key(1), (3, 12, 12, 1))
  apply = _apply(state)
  got = jnp.exp(evaluation.log_probabilities(apply, images, '10crop', 8))
  views = evaluation.ten_crops(images, 8)
  expected = jnp.mean(jnp.stack([jax.nn.softmax(apply(v)) for v in views]), axis=0)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
  centre = jax.nn.softmax(apply(views[4]))
  assert not np.allclose(got, centre, atol=1e-4)  # The views do differ.


def test_multiscale_averages_the_softmax_over_sizes(state):
  small = jax.random.normal(jax.random.key(2), (3, 8, 8, 1))
  large = jax.image.resize(small, (3, 12, 12, 1), 'bilinear')
  apply = _apply(state)
  got = jnp.exp(evaluation.log_probabilities(apply, (small, large), 'multiscale', 0))
  expected = (jax.nn.softmax(apply(small)) + jax.nn.softmax(apply(large))) / 2
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
  'fields, expected',
  [
    ({'image_size': 224, 'eval_crop_fraction': 0.875}, (256, 224)),
    ({'image_size': 176, 'eval_image_size': 224, 'eval_resize_size': 232}, (232, 224)),
    ({'image_size': 160, 'eval_image_size': 224, 'eval_crop_fraction': 0.95}, (236, 224)),
  ],
)
def test_test_resolution_and_resize_are_set_apart_from_the_training_size(fields, expected):
  """torchvision's V2 recipe trains at 176 and tests a 224 crop of 232 (docs/evaluation.md)."""
  config = quickstart.get_config()
  config.update(fields)
  assert datasets.eval_images(config) == (datasets.EvalImage(*expected),)
  config.eval_protocol = '10crop'
  assert datasets.eval_images(config) == (datasets.EvalImage(expected[0], expected[0]),)


def test_whole_image_multiscale_canvases_hold_images_up_to_the_max_aspect():
  config = quickstart.get_config()
  config.eval_protocol, config.eval_sizes = 'multiscale', (224, 256)
  assert datasets.eval_images(config) == (
    datasets.EvalImage(224, 224),
    datasets.EvalImage(256, 256),
  )
  config.eval_max_aspect = 2.0
  assert datasets.eval_images(config) == (
    datasets.EvalImage(224, 448, whole=True),
    datasets.EvalImage(256, 512, whole=True),
  )


def _digits(config, protocol, **fields):
  config.eval_protocol = protocol
  for name, value in fields.items():
    config[name] = value
  return data.Data(config)


PROTOCOLS = {
  'center': {},
  # Crops of 6 pixels out of the whole 8-pixel digit (6 / 0.75 = 8).
  '10crop': {'eval_image_size': 6, 'eval_crop_fraction': 0.75},
  'multiscale': {'eval_sizes': (8, 12)},
}


@pytest.mark.slow
def test_ten_crop_counts_each_example_once(digits_config, state):
  """End to end; the multi-scale test below does the same for 'center' and 'multiscale'."""
  config = digits_config
  config.eval_batch_size = 64
  eval_data = _digits(config, '10crop', **PROTOCOLS['10crop']).eval()
  mesh = train.make_mesh()
  step = evaluation.jit_eval_step(config, mesh)
  metrics = evaluation.evaluate(state, step, eval_data, NamedSharding(mesh, P('data')))
  assert metrics['count'] == 360
  assert 0.0 <= metrics['top1'] <= metrics['top5'] <= 1.0


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_every_protocol_splits_the_examples_over_processes(digits_config, monkeypatch, protocol):
  """Two processes read disjoint halves in equal numbers of batches; together, every example."""
  from resnet_jax import input_pipeline

  config = digits_config
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  builder = input_pipeline.get_builder(config)
  images = _digits(config, protocol, **PROTOCOLS[protocol]).eval_images
  labels, steps = [], set()
  for index in (0, 1):
    monkeypatch.setattr(jax, 'process_index', lambda index=index: index)
    start_pass, num_steps = input_pipeline.eval_batches(builder, config, 32, images)
    batches = list(start_pass())
    steps |= {num_steps, len(batches)}
    for batch in batches:
      shapes = [x.shape for x in jax.tree.leaves(batch['image'])]
      assert shapes == [(32, image.crop, image.crop, 1) for image in images]
      labels.append(batch['label'][batch['mask'] == 1])
  assert steps == {6}  # ceil(180 / 32)
  reference = input_pipeline.tfds.as_numpy(builder.as_dataset(split='test', batch_size=-1))
  np.testing.assert_array_equal(np.sort(np.concatenate(labels)), np.sort(reference['label']))


def test_multiscale_with_one_size_equals_centre_at_that_size(digits_config, state):
  mesh = train.make_mesh()
  results = []
  for protocol, fields in (
    ('center', {'eval_image_size': 12}),
    ('multiscale', {'eval_sizes': (12,)}),
  ):
    config = digits_config.copy_and_resolve_references()
    eval_data = _digits(config, protocol, **fields).eval()
    step = evaluation.jit_eval_step(config, mesh)
    results.append(evaluation.evaluate(state, step, eval_data, NamedSharding(mesh, P('data'))))
  assert results[0] == results[1]
  assert results[0]['count'] == 360


def test_fake_data_evaluates_the_configured_number_of_batches():
  config = quickstart.get_config()
  config.dataset, config.eval_protocol, config.eval_sizes = 'fake', 'multiscale', (8, 16)
  config.fake_eval_batches = 3
  start_pass, num_steps = fake_data.eval_batches(config, 4, datasets.eval_images(config))
  batches = list(start_pass())
  assert num_steps == len(batches) == 3
  assert [x.shape for x in batches[0]['image']] == [(4, 8, 8, 3), (4, 16, 16, 3)]


def test_long_evaluation_logs_its_progress(state, monkeypatch, caplog):
  monkeypatch.setattr(evaluation, 'PROGRESS_EVERY_S', -1.0)  # Log after every batch.
  batch = {
    'image': np.zeros((8, 8, 8, 1), np.float32),
    'label': np.zeros(8, np.int32),
    'mask': np.ones(8, np.float32),
  }
  eval_data = data.EvalData(lambda: iter([batch] * 3), 3)
  config = quickstart.get_config()
  mesh = train.make_mesh()
  with caplog.at_level(logging.INFO):
    evaluation.evaluate(
      state, evaluation.jit_eval_step(config, mesh), eval_data, NamedSharding(mesh, P('data'))
    )
  progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith('Evaluation:')]
  assert [p.split(',')[0] for p in progress] == [
    'Evaluation: 1/3 batches',
    'Evaluation: 2/3 batches',
  ]
  assert all(p.endswith('images/s') for p in progress)


@pytest.mark.parametrize(
  'fields, message',
  [
    (
      {'eval_protocol': 'tencrop'},
      "config.eval_protocol='tencrop' is not one of 'center', '10crop'",
    ),
    ({'eval_protocol': 'multiscale'}, r'needs positive image sides in config.eval_sizes, got \(\)'),
    ({'eval_crop_fraction': 1.2}, r'eval_crop_fraction=1.2 must be in \(0, 1\]'),
    (
      {'eval_protocol': 'multiscale', 'eval_sizes': (224,), 'eval_max_aspect': 0.5},
      'eval_max_aspect=0.5 must be at least 1',
    ),
    ({'eval_resize_size': 7}, 'eval_resize_size=7 is smaller than the 8-pixel crop'),
  ],
)
def test_invalid_protocol_settings_say_what_is_valid(fields, message):
  config = quickstart.get_config()
  config.update(fields)
  with pytest.raises(ValueError, match=message):
    datasets.eval_images(config)


@pytest.mark.slow
def test_ten_crop_and_multiscale_on_eight_devices_equal_one_device(tmp_path):
  """Whole-image multi-scale too: each device masks its own images' padding."""
  import eight_devices

  runs = eight_devices.run('evaluate', tmp_path / 'runs.npz')
  for protocol in ('10crop', 'multiscale', 'multiscale_whole'):
    assert runs[f'{protocol}/1/count'] == runs[f'{protocol}/8/count'] == 27, protocol
    for name in ('loss', 'top1', 'top5'):
      one, eight = runs[f'{protocol}/1/{name}'], runs[f'{protocol}/8/{name}']
      np.testing.assert_allclose(one, eight, rtol=1e-5, err_msg=f'{protocol}: {name}')
  assert runs['multiscale/8/loss'] != runs['multiscale_whole/8/loss']  # The padding is masked.


def _perturbed(state):
  """`state` with running statistics away from 0 and 1, so that padding read as image shows."""

  def perturb(path, x):
    noise = jax.random.normal(jax.random.key(len(path)), x.shape)
    return x * jnp.exp(0.3 * noise) if path[-1].key == 'var' else x + 0.3 * noise

  stats = jax.tree_util.tree_map_with_path(perturb, state.batch_stats)
  variables = {'params': state.params, 'batch_stats': stats}
  return lambda x: state.apply_fn(variables, x, train=False).astype(jnp.float32)


def _canvas(images, side):
  canvas = np.zeros((len(images), side, side, images[0].shape[-1]), np.float32)
  for i, image in enumerate(images):
    canvas[i, : image.shape[0], : image.shape[1]] = image
  return canvas, np.array([image.shape[:2] for image in images], np.int32)


@pytest.mark.parametrize(
  'model_name', ['cifar_resnet8', pytest.param('iresnet18', marks=pytest.mark.slow)]
)
def test_padded_whole_images_give_the_logits_of_each_image_alone(model_name):
  """Masked padding: as if each image ran unpadded, whatever the layer (iresnet18: a 7x7/2 stem,
  max-pools, pooled projection shortcuts)."""
  model = models.create_model(model_name, num_classes=10)
  sharding = NamedSharding(train.make_mesh(), P())
  state = train.create_train_state(
    model, optax.sgd(0.1), jax.random.key(0), (1, 32, 32, 3), sharding
  )
  apply = _perturbed(state)
  rng = np.random.default_rng(0)
  images = [rng.standard_normal((h, w, 3), np.float32) for h, w in ((21, 32), (32, 13), (25, 25))]
  canvas, sizes = _canvas(images, 32)
  got = jax.jit(lambda x, s: evaluation.whole_image_logits(apply, x, s))(canvas, sizes)
  alone = np.concatenate([apply(image[None]) for image in images])
  np.testing.assert_allclose(got, alone, rtol=1e-4, atol=1e-4 * np.abs(alone).max())
  assert not np.allclose(apply(canvas), alone, atol=1e-2 * np.abs(alone).max())  # Unmasked.


@pytest.mark.slow
def test_whole_image_multiscale_classifies_each_whole_image_at_each_size(tmp_path, monkeypatch):
  """ImageNet-like images of several shapes: the protocol's softmax is the mean over sizes of each
  whole image run alone, and differs from the central squares'."""
  import tensorflow_datasets as tfds

  from configs import resnet50
  from resnet_jax import input_pipeline

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'is_prepared', lambda self: True)
  config = resnet50.get_config()
  config.data_dir, config.image_size = str(tmp_path), 16
  config.eval_protocol, config.eval_sizes, config.eval_max_aspect = 'multiscale', (16, 24), 2.0
  batches = {}
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    builder = input_pipeline.get_builder(config)
    splits = [
      tfds.core.SplitInfo(name=s, shard_lengths=[8], num_bytes=0) for s in ('train', 'validation')
    ]
    builder.info.set_splits(tfds.core.SplitDict(splits))
    for aspect in (2.0, 1.0):
      config.eval_max_aspect = aspect
      start_pass, _ = input_pipeline.eval_batches(builder, config, 8, datasets.eval_images(config))
      batches[aspect] = next(iter(start_pass()))
    spec = input_pipeline.dataset_spec(builder, config)
  whole, square = batches[2.0], batches[1.0]
  # The network's input, as the eval step makes it of the uint8 images.
  whole_input, square_input = (
    normalize.images(b['image'], normalize.Normalization(spec.mean, spec.std))
    for b in (whole, square)
  )
  assert [x.shape[1:3] for x in whole['image']] == [(32, 32), (48, 48)]
  assert len({tuple(s) for s in whole['size'][0]}) > 1  # Images of several shapes.

  model = models.create_model('cifar_resnet8', num_classes=10)
  state = train.create_train_state(
    model, optax.sgd(0.1), jax.random.key(0), (1, 16, 16, 3), NamedSharding(train.make_mesh(), P())
  )
  apply = _perturbed(state)
  got = jnp.exp(evaluation.log_probabilities(apply, whole_input, 'multiscale', 0, whole['size']))
  expected = []
  for i in range(4):  # Each image shape compiles the network anew.
    views = []
    for canvas, network_input, sizes, side, centre in zip(
      whole['image'], whole_input, whole['size'], (16, 24), square['image'], strict=True
    ):
      h, w = sizes[i]
      top, left = (h - side) // 2, (w - side) // 2
      # The pipeline's whole image is the one its central square was cut from: the same float
      # pixels, from two windows, rounded to uint8 (one grey level apart at a .5 tie).
      kept = canvas[i, top : top + side, left : left + side].astype(int)
      np.testing.assert_allclose(kept, centre[i].astype(int), atol=1)
      views.append(jax.nn.softmax(apply(network_input[i, :h, :w][None])[0]))
    expected.append(np.mean(views, axis=0))
  np.testing.assert_allclose(got[:4], np.stack(expected), rtol=1e-4, atol=1e-6)
  central = jnp.exp(evaluation.log_probabilities(apply, square_input, 'multiscale', 0))
  assert not np.allclose(got, central, atol=1e-3)


def test_whole_image_padding_examples_count_nothing(state):
  """The pass's padding examples (size 0, mask 0) neither count nor turn the metrics into NaN."""
  rng = np.random.default_rng(0)
  images = tuple(rng.standard_normal((3, s, s, 1)).astype(np.float32) for s in (8, 12))
  sizes = (np.array([[8, 6], [5, 8], [0, 0]], np.int32), np.array([[12, 9], [8, 12], [0, 0]]))
  batch = {
    'image': images,
    'size': sizes,
    'label': np.array([1, 2, 0], np.int32),
    'mask': np.array([1, 1, 0], np.float32),
  }
  got = _run(state, 'multiscale', batch)
  assert got['count'] == 2 and all(np.isfinite(float(got[k])) for k in ('loss', 'top1', 'top5'))
  real_images, real_sizes = tuple(x[:2] for x in images), tuple(s[:2] for s in sizes)
  log_probs = evaluation.log_probabilities(_apply(state), real_images, 'multiscale', 0, real_sizes)
  expected = -np.mean(np.asarray(log_probs)[[0, 1], [1, 2]])
  assert float(got['loss']) == pytest.approx(expected, rel=1e-5)
