"""The shipped train step against PyTorch's: from the same weights and batches, two steps of
`train.train_step` with the 'sgd' optimizer give the losses, parameters and BatchNorm statistics
of two `torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=1e-4)` steps of the reference code in
training mode. Two steps, because the first one starts from zero momentum, where momentum SGD is
plain SGD.

The fixtures (tests/fixtures/train_step_*.npz, made by make_train_step_fixtures.py as
tests/fixtures/README.md says) hold the float16 state_dict, the batches, PyTorch's losses and the
change of every parameter and running statistic over the two steps; no PyTorch is needed here.
"""

import functools
import os

import jax
import numpy as np
import pytest
from flax import traverse_util
from test_convert import BASIC, FIXTURES, reduced_model

from configs import default
from resnet_jax import convert, optim, train

# fixture: (registry name, create_model options, reduced `Dims` of the reference model)
CASES = {
  'train_step_resnet18': ('resnet18', {}, BASIC | dict(sizes=(2, 2, 2, 2))),
  'train_step_iresnet18': ('iresnet18', {}, BASIC | dict(sizes=(2, 2, 2, 2))),
  'train_step_cifar_resnet20': ('cifar_resnet20', dict(base_width=4), {}),
}
REFERENCE_ONLY = ('input', 'label', 'loss', 'learning_rate', 'momentum', 'weight_decay')


def load(name: str) -> tuple[dict, dict, dict]:
  """(state_dict, its change over the steps, the rest) of fixture `name`."""
  with np.load(os.path.join(FIXTURES, name + '.npz')) as npz:
    arrays = dict(npz)
  reference = {k: arrays.pop(k) for k in REFERENCE_ONLY}
  updates = {
    k.removeprefix('update.'): arrays.pop(k) for k in list(arrays) if k.startswith('update.')
  }
  return arrays, updates, reference


@pytest.mark.parametrize('name', sorted(CASES))
def test_two_sgd_steps_equal_pytorch(name):
  state_dict, updates, reference = load(name)
  model = reduced_model(*CASES[name])
  variables = convert.convert_state_dict(model, state_dict)
  expected = convert.convert_state_dict(model, updates)

  config = default.get_config()
  config.optimizer, config.nesterov = 'sgd', False
  config.momentum, config.weight_decay = (
    float(reference['momentum']),
    float(reference['weight_decay']),
  )
  config.weight_decay_bn_and_bias = True  # torch.optim.SGD decays every parameter
  state = train.TrainState.create(
    apply_fn=model.apply,
    params=variables['params'],
    batch_stats=variables['batch_stats'],
    tx=optim.create_optimizer(config),
  )
  step = jax.jit(functools.partial(train.train_step, label_smoothing=0.0))
  learning_rate = np.float32(reference['learning_rate'])
  losses = []
  for images, labels in zip(reference['input'], reference['label'], strict=True):
    batch = {'image': images.astype(np.float32).transpose(0, 2, 3, 1), 'label': labels}
    state, metrics = step(state, batch, jax.random.key(0), learning_rate)
    losses.append(float(metrics['loss']))
  np.testing.assert_allclose(losses, reference['loss'], rtol=1e-5)

  ours = {'params': state.params, 'batch_stats': state.batch_stats}
  changes = jax.tree.map(lambda new, old: np.asarray(new) - old, ours, variables)
  flat_changes, flat_expected = map(traverse_util.flatten_dict, (changes, expected))
  assert flat_changes.keys() == flat_expected.keys()
  for path, want in flat_expected.items():
    # Relative to the largest change of the tensor: float32 here, float64 in the reference.
    error = np.abs(flat_changes[path] - want).max() / np.abs(want).max()
    tolerance = 2e-4 if path[0] == 'batch_stats' else 2e-3
    assert error < tolerance, (path, error)
