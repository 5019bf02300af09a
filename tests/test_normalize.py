"""uint8 batches normalised on the device: the network's input, logits and updates of the float
batches the host used to normalise."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import quickstart
from resnet_jax import data, datasets, evaluation, fake_data, normalize, optim, train

NORMALIZATION = normalize.Normalization((80.0, 120.0, 33.0), (60.0, 70.0, 50.0))


def _pixels(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _host_normalized(pixels, normalization=NORMALIZATION):
  """What the input pipeline shipped before: float32 (x - mean) / std."""
  mean, std = np.float32(normalization.mean), np.float32(normalization.std)
  return (pixels.astype(np.float32) - mean) / std


def test_images_are_the_host_normalisation_cast_to_the_compute_dtype():
  pixels = _pixels((4, 5, 5, 3))
  got = normalize.images(pixels, NORMALIZATION)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, _host_normalized(pixels), rtol=1e-6, atol=1e-6)
  bf16 = normalize.images(
    (pixels, pixels[:, :3, :3]), normalize.Normalization((1.0,), (2.0,), 'bfloat16')
  )
  assert [x.dtype for x in bf16] == [jnp.bfloat16] * 2
  assert normalize.images(got, None) is got  # Network input made elsewhere stays as it is.


def _state(config, mesh):
  model = train.create_model(config)
  return train.create_train_state(
    model, optim.create_optimizer(config), jax.random.key(0), (1, 8, 8, 3), NamedSharding(mesh, P())
  )


def test_train_and_eval_steps_on_uint8_equal_host_normalised_floats():
  config = quickstart.get_config()
  config.model, config.num_classes = 'cifar_resnet8', 10
  mesh = train.make_mesh()
  pixels = _pixels((8, 8, 8, 3))
  labels = np.arange(8, dtype=np.int32) % 10
  uint8_batch = {'image': pixels, 'label': labels}
  float_batch = {'image': _host_normalized(pixels), 'label': labels}
  results = []
  for batch, normalization in ((uint8_batch, NORMALIZATION), (float_batch, None)):
    step = train.jit_train_step(config, mesh, normalization)
    state = _state(config, mesh)
    for _ in range(2):
      state, metrics = step(state, batch, jax.random.key(1), np.float32(0.1))
    eval_step = evaluation.jit_eval_step(config, mesh, normalization)
    eval_batch = {**batch, 'mask': np.ones(8, np.float32)}
    eval_metrics = eval_step(state, evaluation.EvalMetrics.empty(), eval_batch).compute()
    results.append((metrics['loss'], state.params, eval_metrics['loss']))
  (loss, params, eval_loss), (float_loss, float_params, float_eval_loss) = results
  np.testing.assert_allclose(loss, float_loss, rtol=1e-5)
  np.testing.assert_allclose(eval_loss, float_eval_loss, rtol=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), params, float_params
  )


def test_fake_data_ships_uint8_with_statistics_that_normalise_it():
  config = quickstart.get_config()
  config.dataset, config.image_size, config.batch_size = 'fake', 16, 8
  dataset = data.Data(config)
  batch = next(dataset.train(0))
  assert batch['image'].dtype == np.uint8 and batch['image'].shape == (8, 16, 16, 3)
  assert dataset.image_shape == (16, 16, 3)
  images = np.asarray(normalize.images(batch['image'], dataset.normalization()))
  assert abs(images.mean()) < 0.1 and abs(images.std() - 1) < 0.1
  eval_batch = next(fake_data.eval_batches(config, 8, datasets.eval_images(config))[0]())
  assert eval_batch['image'].dtype == np.uint8
