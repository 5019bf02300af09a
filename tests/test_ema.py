"""The moving average of the weights (`config.ema_decay`, `config.ema_every_steps`)."""

import functools
import json

import jax
import numpy as np
import pytest
from test_grad_accum import TinyBatchNorm

from configs import default, quickstart
from resnet_jax import ema, errors, optim, train


def test_average_equals_its_formula_after_k_steps():
  """e_0 = w_0; e_t = d e_{t-1} + (1 - d) w_t at every `every`-th step, else e_{t-1}; for the
  parameters and the BatchNorm statistics alike."""
  decay, every = 0.8, 2
  model = TinyBatchNorm()
  rng = np.random.default_rng(0)
  batches = [
    {
      'image': rng.standard_normal((8, 6, 6, 3), dtype=np.float32),
      'label': rng.integers(0, 10, 8).astype(np.int32),
    }
    for _ in range(5)
  ]
  variables = model.init(jax.random.key(0), batches[0]['image'][:1], train=False)
  state = train.TrainState.create(
    apply_fn=model.apply,
    tx=optim.create_optimizer(default.get_config()),
    ema=ema.init(variables['params'], variables['batch_stats'], decay),
    **variables,
  )
  step = jax.jit(
    functools.partial(train.train_step, label_smoothing=0.0, ema_decay=decay, ema_every_steps=every)
  )
  expected = variables
  for t, batch in enumerate(batches, start=1):
    state, _ = step(state, batch, jax.random.key(1), np.float32(0.1))
    if t % every == 0:
      weights = {'params': state.params, 'batch_stats': state.batch_stats}
      expected = jax.tree.map(lambda e, w: decay * e + (1 - decay) * w, expected, weights)
  leaves = jax.tree.leaves(state.ema)
  assert len(leaves) == len(jax.tree.leaves(expected)) == 8  # 6 parameters, 2 statistics
  for a, b in zip(leaves, jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert not np.allclose(
    state.ema['params']['Dense_0']['kernel'], state.params['Dense_0']['kernel']
  )


def test_without_decay_the_state_keeps_no_average():
  state = train.create_train_state(
    TinyBatchNorm(),
    optim.create_optimizer(default.get_config()),
    jax.random.key(0),
    (1, 6, 6, 3),
    jax.sharding.SingleDeviceSharding(jax.devices()[0]),
  )
  assert state.ema == {} and jax.tree.leaves(state.ema) == []


def test_decay_of_one_is_a_config_error():
  config = default.get_config()
  config.ema_decay = 1.0
  with pytest.raises(errors.ConfigError, match=r'ema_decay=1.0 must be in \[0, 1\)'):
    train.check_config(config)


@pytest.mark.slow
def test_every_evaluation_reports_the_average_beside_the_weights(tmp_path):
  config = quickstart.get_config()
  config.model, config.dataset, config.batch_size, config.eval_batch_size = (
    'cifar_resnet8',
    'fake',
    8,
    8,
  )
  config.num_train_steps, config.eval_every_steps, config.checkpoint_every_steps = 4, 2, 4
  config.ema_decay = 0.5
  summary = train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  evaluations = [r for r in records if 'eval_top1' in r]
  assert [r['step'] for r in evaluations] == [2, 4]
  for record in evaluations:
    assert {'ema_eval_loss', 'ema_eval_top1', 'ema_eval_top5'} <= record.keys()
  written = json.loads((tmp_path / 'summary.json').read_text())
  assert written['ema_eval'] == summary['ema_eval']
  assert written['ema_eval']['count'] == written['eval']['count']
  assert written['ema_eval']['loss'] != written['eval']['loss']
  assert written['ema_eval']['loss'] == evaluations[-1]['ema_eval_loss']
