"""How a config field is checked: one choice check and one range check, used by every module
next to the fields it owns (`configs/default.py` documents each field).

Checked before any data is read or anything compiles, so that `image_size=0` or a negative
learning rate is reported by its field name, not by an error deep inside TensorFlow or XLA.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from resnet_jax import errors

# field: (lowest, highest, whether the lowest is allowed); the highest is always allowed.
Ranges = Mapping[str, tuple[float, float, bool]]


def check_choice(field: str, value: Any, valid: Sequence[Any]) -> None:
  """Raises ConfigError naming `field`, the bad `value` and the valid ones."""
  if value not in valid:
    raise errors.ConfigError(
      f'{field}={value!r} is not one of {", ".join(map(repr, valid))}: use one of them.'
    )


def _in_range(value: float, low: float, high: float, low_allowed: bool) -> bool:
  return (value >= low if low_allowed else value > low) and value <= high


def _describe(low: float, high: float, low_allowed: bool) -> str:
  if high == math.inf:
    return f'at least {low}' if low_allowed else f'greater than {low}'
  return f'in [{low}, {high}]' if low_allowed else f'in ({low}, {high}]'


def check_ranges(config: ml_collections.ConfigDict, ranges: Ranges) -> None:
  """Raises ConfigError naming every field of `ranges` whose value is out of its range."""
  wrong = [
    f'config.{field}={config[field]!r} must be {_describe(low, high, low_allowed)}'
    for field, (low, high, low_allowed) in ranges.items()
    if config.get(field) is not None and not _in_range(config[field], low, high, low_allowed)
  ]
  if wrong:
    raise errors.ConfigError(
      f'{"; ".join(wrong)}. See configs/default.py for what each field means.'
    )
