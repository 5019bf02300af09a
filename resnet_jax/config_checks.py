"""Numeric ranges of the config fields (configs/default.py documents each field).

Checked before any data is read or anything compiles, so that `image_size=0` or a negative
learning rate is reported by its field name, not by an error deep inside TensorFlow or XLA.
"""

import math

import ml_collections

from resnet_jax import errors

# field: (lowest, highest, whether the lowest is allowed); the highest is always allowed.
RANGES = {
  'batch_size': (1, math.inf, True),
  'eval_batch_size': (1, math.inf, True),
  'bn_group_size': (0, math.inf, True),
  'grad_accum_steps': (1, math.inf, True),
  'stochastic_depth_rate': (0, 1, True),
  'image_size': (1, math.inf, True),
  'num_classes': (0, math.inf, True),
  'depth': (0, math.inf, True),
  'freeze_stages': (-1, math.inf, True),
  'backbone_lr_scale': (0, math.inf, True),
  'eval_image_size': (0, math.inf, True),
  'fake_eval_batches': (1, math.inf, True),
  'shuffle_buffer_size': (1, math.inf, True),
  'prefetch': (0, math.inf, True),
  'num_epochs': (0, math.inf, True),
  'learning_rate': (0, math.inf, True),
  'lr_base_batch_size': (0, math.inf, True),
  'lr_decay_factor': (0, math.inf, False),
  'lr_decay_power': (0, math.inf, False),
  'lr_end': (0, math.inf, True),
  'warmup': (0, math.inf, True),
  'warmup_constant_steps': (0, math.inf, True),
  'warmup_constant_lr': (0, math.inf, True),
  'momentum': (0, 1, True),
  'adam_b1': (0, 1, True),
  'adam_b2': (0, 1, True),
  'lars_trust_coefficient': (0, math.inf, False),
  'lars_eps': (0, math.inf, True),
  'weight_decay': (0, math.inf, True),
  'label_smoothing': (0, 1, True),
  'ema_decay': (0, 1, True),
  'ema_every_steps': (1, math.inf, True),
  'log_every_steps': (1, math.inf, True),
  'eval_every_steps': (0, math.inf, True),
  'checkpoint_every_steps': (1, math.inf, True),
  'keep_checkpoints': (1, math.inf, True),
}


def _in_range(value: float, low: float, high: float, low_allowed: bool) -> bool:
  return (value >= low if low_allowed else value > low) and value <= high


def _describe(low: float, high: float, low_allowed: bool) -> str:
  if high == math.inf:
    return f'at least {low}' if low_allowed else f'greater than {low}'
  return f'in [{low}, {high}]' if low_allowed else f'in ({low}, {high}]'


def check_ranges(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming every field whose value is out of its range."""
  wrong = []
  for field, (low, high, low_allowed) in RANGES.items():
    value = config.get(field)
    if value is not None and not _in_range(value, low, high, low_allowed):
      wrong.append(f'config.{field}={value!r} must be {_describe(low, high, low_allowed)}')
  if config.num_classes == 1:
    wrong.append("config.num_classes=1 must be at least 2, or 0 for the dataset's number")
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    wrong.append('config.num_train_steps or config.num_epochs must be positive')
  if wrong:
    raise errors.ConfigError(
      f'{"; ".join(wrong)}. See configs/default.py for what each field means.'
    )
