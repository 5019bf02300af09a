"""An exponential moving average of the weights (`config.ema_decay`, `config.ema_every_steps`),
evaluated beside the raw weights, as in torchvision's and timm's modern recipes.

The average covers the parameters and the BatchNorm running statistics, so that the averaged
network is evaluated with statistics that belong to it. It starts as a copy of the initial
weights (or of those `init_from` loads), and every `ema_every_steps` optimizer steps moves
towards the current ones by `optax.incremental_update`:

    ema = decay * ema + (1 - decay) * weights

The decay is per update of the average: updating every N steps with decay d**N averages over
about as many steps as updating every step with d, for N times less work.
The average lives in the train state (`TrainState.ema`), so it is checkpointed and a resumed
run continues it exactly; with `ema_decay=0` it is an empty tree: no arrays, no program change.
"""

import math
from typing import Any

import jax
import ml_collections
import optax

from resnet_jax import errors
from resnet_jax.config_checks import check_ranges


def check(config: ml_collections.ConfigDict) -> None:
  check_ranges(config, {'ema_every_steps': (1, math.inf, True)})
  if not 0 <= config.ema_decay < 1:
    raise errors.ConfigError(
      f'config.ema_decay={config.ema_decay!r} must be in [0, 1): the weight of the old average '
      'at each update of the moving average of the weights (e.g. 0.9998), or 0 for none.'
    )


def init(params: Any, batch_stats: Any, decay: float) -> dict[str, Any]:
  """The average's starting value: a copy of the weights, or nothing (`decay=0`)."""
  return {'params': params, 'batch_stats': batch_stats} if decay else {}


def update(
  ema: dict[str, Any], params: Any, batch_stats: Any, step: jax.Array, decay: float, every: int
) -> dict[str, Any]:
  """`ema` moved towards the weights after optimizer step `step`, if it is a multiple of
  `every`."""
  if not ema:
    return ema
  weights = {'params': params, 'batch_stats': batch_stats}
  moved = optax.incremental_update(weights, ema, 1 - decay)
  return optax.periodic_update(moved, ema, step, every)


def averaged(state: Any) -> Any:
  """`state` with its weights replaced by their average, for evaluation."""
  return state.replace(params=state.ema['params'], batch_stats=state.ema['batch_stats'])
