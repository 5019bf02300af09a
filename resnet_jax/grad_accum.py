"""Gradient accumulation: one optimizer step from the mean gradient of micro-batches, so that a
recipe's global batch fits on fewer devices (`config.grad_accum_steps`).

The micro-batches run one after another in a `jax.lax.scan` inside the compiled train step, not
as separate steps (optax.MultiSteps): one call of the step is still one optimizer step, so the
step counter, the learning-rate table, the data order, checkpoints and resumption all count
optimizer steps exactly as without accumulation, and a checkpoint never falls between the
micro-batches of a step. The scan's body is compiled once, whatever the number of micro-batches.

BatchNorm normalises each micro-batch by its own statistics (as a smaller batch would), and the
running statistics are updated once per micro-batch, one after another. Without BatchNorm the
step equals the step on the whole batch up to float rounding (tested).
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from resnet_jax import errors
from resnet_jax.config_checks import check_ranges


def check(config: ml_collections.ConfigDict) -> None:
  """Every device's share of the batch must split into `grad_accum_steps` equal micro-batches,
  each of whole BatchNorm groups."""
  check_ranges(config, {'grad_accum_steps': (1, math.inf, True)})
  steps, devices = config.grad_accum_steps, jax.device_count()
  per_device = config.batch_size // devices
  group = config.bn_group_size
  if steps > 1 and (per_device % steps or (group and per_device // steps % group)):
    need = steps * (group or 1)
    raise errors.ConfigError(
      f'config.grad_accum_steps={steps} does not split the {per_device} images each of the '
      f'{devices} devices gets (config.batch_size={config.batch_size}) into equal '
      f'micro-batches{f" of whole BatchNorm groups of {group}" if group else ""}: the number '
      f'of images per device must be a multiple of {need}. Change config.batch_size or '
      'config.grad_accum_steps.'
    )


def split(x: jax.Array, steps: int) -> jax.Array:
  """(steps, batch / steps, ...): micro-batch j holds images j, j + steps, j + 2 steps, ...

  Every device's contiguous share of the batch holds the same number of images of each
  micro-batch, so no image moves between devices, and the micro-batches are the same whatever
  the number of devices.
  """
  return jnp.swapaxes(x.reshape(-1, steps, *x.shape[1:]), 0, 1)


def merge(x: jax.Array) -> jax.Array:
  """The inverse of `split`: (steps, micro-batch, ...) back to the batch's order."""
  return jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:])


def value_and_grad(
  loss_fn: Callable,
  params: Any,
  batch_stats: Any,
  batch: dict[str, jax.Array],
  rng: jax.Array,
  steps: int,
) -> tuple[tuple[jax.Array, tuple[jax.Array, dict[str, Any]]], Any]:
  """`jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, batch, rng)`, over `steps`
  micro-batches.

  `loss_fn` returns (mean loss, (logits, {'batch_stats': updated statistics})). The loss and the
  gradient are the means over the micro-batches, the logits those of the whole batch in its
  order, the statistics those after the last micro-batch; micro-batch j draws its randomness
  from `fold_in(rng, j)`. With `steps=1` it is the plain call, the same program as without
  accumulation.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if steps == 1:
    return grad_fn(params, batch_stats, batch, rng)

  def micro_step(carry, inputs):
    grad_sum, stats = carry
    micro_batch, index = inputs
    (loss, (logits, model_state)), grads = grad_fn(
      params, stats, micro_batch, jax.random.fold_in(rng, index)
    )
    return (jax.tree.map(jnp.add, grad_sum, grads), model_state['batch_stats']), (loss, logits)

  micro_batches = jax.tree.map(lambda x: split(x, steps), batch)
  zeros = jax.tree.map(jnp.zeros_like, params)
  (grad_sum, stats), (losses, logits) = jax.lax.scan(
    micro_step, (zeros, batch_stats), (micro_batches, jnp.arange(steps))
  )
  grads = jax.tree.map(lambda g: g / steps, grad_sum)
  return (losses.mean(), (merge(logits), {'batch_stats': stats})), grads
