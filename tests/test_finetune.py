"""Fine-tuning: the classifier re-initialised for other classes, frozen and slower parts, exact
resume."""

import logging
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import default
from conftest import restore_checkpoint, run_main, wait_for_checkpoint
from resnet_jax import digits_dataset, finetune, models, optim, train


def _state(num_classes, tx=None, seed=0):
  model = models.create_model('cifar_resnet8', num_classes=num_classes)
  mesh = train.make_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return train.create_train_state(
    model,
    tx or optim.create_optimizer(default.get_config()),
    jax.random.key(seed),
    (1, 8, 8, 3),
    replicated,
  )


def test_a_checkpoint_of_other_classes_restores_all_but_the_classifier(tmp_path, caplog):
  caplog.set_level(logging.INFO)
  trained = _state(10, seed=1)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(
      tmp_path / 'ckpt', {'params': trained.params, 'batch_stats': trained.batch_stats}
    )
  fresh = _state(3)
  restored = finetune.restore_pretrained(fresh, str(tmp_path / 'ckpt'))
  for name in ('stem_conv', 'stage1', 'stage3'):
    for a, b in zip(
      jax.tree.leaves(restored.params[name]), jax.tree.leaves(trained.params[name]), strict=True
    ):
      np.testing.assert_array_equal(a, b)
  for a, b in zip(
    jax.tree.leaves(restored.batch_stats), jax.tree.leaves(trained.batch_stats), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(restored.params['head']['kernel'], fresh.params['head']['kernel'])
  assert restored.params['head']['kernel'].shape == (64, 3)
  assert 'head/kernel (64, 10)' in caplog.text and 'is dropped' in caplog.text
  # The same number of classes restores the classifier too.
  same = finetune.restore_pretrained(_state(10), str(tmp_path / 'ckpt'))
  np.testing.assert_array_equal(same.params['head']['kernel'], trained.params['head']['kernel'])


def _update(config, params):
  tx = finetune.create_optimizer(config)
  state = optim.set_learning_rate(tx.init(params), 0.5)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  return {
    name: float(max(jnp.abs(x).max() for x in jax.tree.leaves(u))) for name, u in updates.items()
  }


def test_frozen_stages_do_not_move_and_the_backbone_learns_slower():
  params = _state(3).params
  config = default.get_config()
  config.weight_decay, config.momentum = 0.0, 0.0
  plain = _update(config, params)
  assert plain == pytest.approx(dict.fromkeys(params, 0.5))
  config.freeze_stages, config.backbone_lr_scale = 1, 0.1
  tuned = _update(config, params)
  assert tuned['stem_conv'] == tuned['stem_bn'] == tuned['stage1'] == 0.0
  assert tuned['stage2'] == tuned['stage3'] == pytest.approx(0.05)
  assert tuned['head'] == pytest.approx(0.5)
  config.freeze_stages, config.backbone_lr_scale = -1, 1.0  # Nothing to tune: the plain optimizer.
  assert jax.tree.structure(finetune.create_optimizer(config).init(params)) == jax.tree.structure(
    optim.create_optimizer(config).init(params)
  )


@pytest.mark.slow
def test_fine_tuning_a_run_onto_three_classes_resumes_bit_identically(tmp_path):
  folder = ['--config.image_size=8', '--config.flip=False', '--config.model=cifar_resnet8']
  digits_dataset.write_folder(str(tmp_path / 'ten'), 8)
  digits_dataset.write_folder(str(tmp_path / 'three'), 8, 3)
  source = tmp_path / 'source'
  run_main(
    source,
    f'--config.data_dir={tmp_path / "ten"}',
    *folder,
    '--config.num_train_steps=10',
    config='configs/folder.py',
  )
  common = [
    f'--config.data_dir={tmp_path / "three"}',
    f'--config.init_from={source}',
    *folder,
    '--config.freeze_stages=1',
    '--config.backbone_lr_scale=0.1',
    '--config.num_train_steps=60',
    '--config.checkpoint_every_steps=10',
  ]
  run_main(tmp_path / 'straight', *common, config='configs/folder.py')
  killed = tmp_path / 'killed'
  devnull = open(os.devnull, 'w')
  process = run_main(killed, *common, config='configs/folder.py', stdout=devnull, stderr=devnull)
  wait_for_checkpoint(killed, 10, process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert restore_checkpoint(killed)[0] < 60, 'the run finished before it was killed'
  run_main(killed, *common, config='configs/folder.py')
  step_a, straight = restore_checkpoint(tmp_path / 'straight')
  step_b, resumed = restore_checkpoint(killed)
  assert step_a == step_b == 60
  assert straight['params']['head']['kernel'].shape[-1] == 3
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
    np.testing.assert_array_equal(a, b)
  # The frozen stem did not move from the source run's.
  _, trained = restore_checkpoint(source)
  np.testing.assert_array_equal(
    straight['params']['stem_conv']['kernel'], trained['params']['stem_conv']['kernel']
  )
