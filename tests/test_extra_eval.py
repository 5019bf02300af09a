"""`config.extra_eval`: more test sets at the end of training, on TFDS's mock data (no download).

Each set's metrics are checked against their definitions, computed here in NumPy from the
network's logits on the same batches: ReaL counts any of an image's labels and skips images
without one; ImageNet-A and -R predict only their 200 classes.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import default
from resnet_jax import datasets, errors, extra_eval, models, normalize, train

NUM_EXAMPLES = 12


def _config():
  config = default.get_config()
  config.model, config.dataset, config.num_classes = 'cifar_resnet8', 'imagenet2012', 1000
  config.image_size, config.eval_crop_fraction, config.eval_batch_size = 16, 0.875, 8
  config.extra_eval = ('imagenet_v2:test',)
  return config


def _state(config):
  model = models.create_model(config.model, num_classes=1000)
  mesh = train.make_mesh()
  import jax
  import optax

  state = train.create_train_state(
    model, optax.sgd(0.1), jax.random.key(0, impl='rbg'), (1, 16, 16, 3), NamedSharding(mesh, P())
  )
  return model, state, mesh


def _expected(model, state, config, entry, normalization):
  """(loss, top-1, top-5, count) from the logits of every batch, by the sets' definitions."""
  from resnet_jax import input_pipeline

  name, split = entry.split(':')
  set_config = extra_eval._set_config(config, name, split)
  builder = input_pipeline.get_builder(set_config)
  start_pass, num_steps = input_pipeline.eval_batches(
    builder, set_config, 8, datasets.eval_images(set_config)
  )
  loss = right1 = right5 = count = 0
  for batch in list(start_pass())[:num_steps]:
    images = normalize.images(batch['image'], normalization)
    logits = np.array(
      model.apply({'params': state.params, 'batch_stats': state.batch_stats}, images, train=False)
    )
    if name in extra_eval.CLASS_SUBSETS:
      outside = np.setdiff1d(np.arange(1000), extra_eval.CLASS_SUBSETS[name])
      logits[:, outside] = -np.inf
    labels = batch['label']
    for row, label, mask in zip(logits, labels, batch['mask'], strict=True):
      answers = set(np.flatnonzero(label)) if np.ndim(label) else {int(label)}
      if not mask or not answers:
        continue
      top5 = np.argsort(-row, kind='stable')[:5]
      if name in extra_eval.CLASS_SUBSETS:
        assert set(top5) <= set(extra_eval.CLASS_SUBSETS[name])
      log_probs = row - np.log(np.sum(np.exp(row[np.isfinite(row)] - row.max()))) - row.max()
      loss -= np.mean([log_probs[a] for a in answers])
      right1 += int(top5[0] in answers)
      right5 += int(bool(answers & set(top5)))
      count += 1
  return loss / count, right1 / count, right5 / count, count


def _examples(builder, split, decoders=None, **kwargs):
  """Mock examples whose labels are what the real sets hold: ImageNet-A's and -R's within their
  200 classes, ReaL's lists of labels (every fourth image has none; the others have hundreds,
  so that a random network's top-1 is often one of them)."""
  del split, decoders, kwargs
  import tensorflow as tf

  rng = np.random.default_rng(len(builder.name))
  images = [
    tf.io.encode_jpeg(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).numpy()
    for _ in range(NUM_EXAMPLES)
  ]
  examples = {'image': images, 'file_name': [b'x.jpeg'] * NUM_EXAMPLES}
  if builder.name == 'imagenet2012_real':
    labels = [rng.choice(1000, 0 if i % 4 == 0 else 300, replace=False).tolist() for i in range(12)]
    examples['real_label'] = tf.ragged.constant(labels, dtype=tf.int64)
    examples['original_label'] = rng.choice(1000, NUM_EXAMPLES)
  else:
    examples['label'] = rng.choice(extra_eval.CLASS_SUBSETS[builder.name], NUM_EXAMPLES)
  return tf.data.Dataset.from_tensor_slices(examples)


@pytest.mark.slow
@pytest.mark.parametrize(
  'sets, as_dataset_fn',
  [
    (('imagenet_v2:test', 'imagenet_sketch:test'), None),
    (('imagenet2012_real:validation', 'imagenet_a:test', 'imagenet_r:test'), _examples),
  ],
)
def test_extra_sets_on_mock_data_match_their_definitions(sets, as_dataset_fn, monkeypatch):
  # Mock data stands for prepared data (ReaL would otherwise ask for ImageNet's tar files).
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'is_prepared', lambda self: True)
  config = _config()
  config.extra_eval = sets
  model, state, mesh = _state(config)
  normalization = normalize.Normalization((124.0, 116.0, 104.0), (58.0, 57.0, 57.0))
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, as_dataset_fn=as_dataset_fn):
    extra = extra_eval.ExtraSets(config)
    results = extra.evaluate(state, mesh, normalization, NamedSharding(mesh, P('data')))
    assert list(results) == list(sets)
    for entry in sets:
      loss, top1, top5, count = _expected(model, state, config, entry, normalization)
      assert results[entry]['count'] == count, entry
      np.testing.assert_allclose(results[entry]['top1'], top1, atol=1e-6, err_msg=entry)
      np.testing.assert_allclose(results[entry]['top5'], top5, atol=1e-6, err_msg=entry)
      np.testing.assert_allclose(results[entry]['loss'], loss, rtol=1e-5, err_msg=entry)
      # ReaL leaves out the images without a label (every fourth of the mock ones).
      assert count == (9 if entry.startswith('imagenet2012_real') else NUM_EXAMPLES), entry


def test_class_subsets_are_the_200_classes_of_each_set():
  for name, classes in extra_eval.CLASS_SUBSETS.items():
    assert len(classes) == len(set(classes)) == 200, name
    assert list(classes) == sorted(classes) and 0 <= classes[0] and classes[-1] < 1000, name
  # Spot checks against the datasets' lists: goldfish (1) is in R only, 988 in both.
  assert 1 in extra_eval.CLASS_SUBSETS['imagenet_r']
  assert 1 not in extra_eval.CLASS_SUBSETS['imagenet_a']
  assert extra_eval.CLASS_SUBSETS['imagenet_a'][-1] == extra_eval.CLASS_SUBSETS['imagenet_r'][-1]


@pytest.mark.parametrize(
  'fields, message',
  [
    ({'extra_eval': ('imagenet_v2',)}, 'entry \'imagenet_v2\' is not a TFDS "name:split" pair'),
    ({'extra_eval': ('imagenet_v2:test',), 'dataset': 'fake'}, 'needs a real dataset'),
  ],
)
def test_malformed_entries_are_config_errors(fields, message):
  config = _config()
  config.update(fields)
  with pytest.raises(errors.ConfigError, match=message):
    train.check_config(config)


@pytest.mark.slow
def test_unknown_set_or_wrong_classes_are_reported_when_the_run_starts():
  config = _config()
  config.extra_eval = ('imagenet_v3:test',)
  with pytest.raises(errors.DataError, match="Unknown dataset 'imagenet_v3'"):
    extra_eval.ExtraSets(config)
  config.extra_eval = ('cifar10_1/v6:test',)
  with pytest.raises(errors.DataError, match='num_classes=1000, but it has 10 classes'):
    extra_eval.ExtraSets(config)
