"""Optimizers and learning-rate schedules, chosen by config.

The learning rate is an input of the compiled train step, not a constant inside it: the
optimizer is wrapped in `optax.inject_hyperparams`, so the rate lives in the optimizer state and
the step sets it from its `learning_rate` argument (`set_learning_rate`). The host evaluates the
whole schedule once (`learning_rate_table`). A run's program therefore does not depend on its
length, and runs that differ only in length, seed or workdir hit the same entry of the persistent
compilation cache.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from resnet_jax.config_checks import check_choice, check_ranges

OPTIMIZERS = ('sgd', 'lars', 'adamw', 'lamb')
SCHEDULES = ('step', 'cosine', 'constant', 'polynomial')
SCHEDULE_UNITS = ('steps', 'epochs')


# The fields this module owns: (lowest, highest, whether the lowest is allowed).
RANGES = {
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
}


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for an unknown optimizer, schedule or schedule unit, or a value out of
  its range."""
  check_choice('config.optimizer', config.optimizer, OPTIMIZERS)
  check_choice('config.schedule', config.schedule, SCHEDULES)
  check_choice('config.schedule_unit', config.schedule_unit, SCHEDULE_UNITS)
  check_ranges(config, RANGES)


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
  """`learning_rate`, scaled linearly with the batch if `lr_base_batch_size` is set."""
  if config.lr_base_batch_size:
    return config.learning_rate * config.batch_size / config.lr_base_batch_size
  return config.learning_rate


def create_learning_rate_fn(
  config: ml_collections.ConfigDict, steps_per_epoch: int, num_train_steps: int
) -> optax.Schedule:
  """The configured schedule, as a function of the optimizer step (0 for the first update).

  Linear warmup from 0 over `warmup`, then 'step', 'cosine', 'constant' or 'polynomial'; decay
  points are absolute (warmup does not shift them). If `warmup_constant_steps` > 0, the first
  steps run at `warmup_constant_lr` instead, the constant warm-up of He et al. 2015 (Sec. 4.2).
  """
  validate(config)
  peak = peak_learning_rate(config)
  unit = {'steps': 1, 'epochs': steps_per_epoch}[config.schedule_unit]
  warmup = int(round(config.warmup * unit))
  decay_steps = max(num_train_steps - warmup, 1)
  if config.schedule == 'step':
    boundaries = {int(round(b * unit)) - warmup: config.lr_decay_factor for b in config.lr_decay_at}
    main = optax.piecewise_constant_schedule(peak, boundaries)
  elif config.schedule == 'cosine':
    main = optax.cosine_decay_schedule(peak, decay_steps, alpha=config.lr_end / peak if peak else 0)
  elif config.schedule == 'constant':
    main = optax.constant_schedule(peak)
  else:
    # One step longer than the run, as the MLPerf reference's PolynomialDecayWithWarmup.
    main = optax.polynomial_schedule(peak, config.lr_end, config.lr_decay_power, decay_steps + 1)
  schedule = main
  if warmup:
    schedule = optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])
  if not config.warmup_constant_steps:
    return schedule
  constant_steps, constant_lr = config.warmup_constant_steps, config.warmup_constant_lr
  return lambda step: jnp.where(step < constant_steps, constant_lr, schedule(step))


def learning_rate_table(schedule: optax.Schedule, num_train_steps: int) -> np.ndarray:
  """The rate of every optimizer step, float32, evaluated by one jitted call on the host CPU."""
  with jax.default_device(jax.local_devices(backend='cpu')[0]):
    steps = jnp.arange(num_train_steps)
    table = jnp.broadcast_to(jax.jit(schedule)(steps), steps.shape)  # Constant: one scalar.
  return np.asarray(table, np.float32)


def _leaf_name(path: tuple) -> str:
  return str(getattr(path[-1], 'key', path[-1])) if path else ''


def weight_decay_mask(params: optax.Params) -> optax.Params:
  """False for BatchNorm's scale and bias and every layer's bias (Flax names them so), else True.

  Selected by name, not rank: parameters of stacked blocks (the `nn.scan` of `models.network`)
  carry a leading block axis, so a stacked BatchNorm scale is 2-D.
  """
  return jax.tree_util.tree_map_with_path(
    lambda path, _: _leaf_name(path) not in ('scale', 'bias'), params
  )


def _layer_axes(path: tuple, x: jax.Array) -> tuple[int, ...]:
  """The axes of one layer's parameter; leading axes beyond them index stacked blocks."""
  name = _leaf_name(path)
  if name == 'kernel':
    rank = 4 if x.ndim >= 4 else 2  # a 2-D convolution's HWIO, or a dense layer's (in, out)
  elif name in ('scale', 'bias'):
    rank = 1
  else:
    rank = x.ndim
  return tuple(range(x.ndim - min(rank, x.ndim), x.ndim))


def scale_by_layer_trust_ratio(
  trust_coefficient: float, eps: float
) -> optax.GradientTransformation:
  """`optax.scale_by_trust_ratio`, with one ratio per layer also inside stacked blocks.

  ratio = trust_coefficient * |w| / (|u| + eps), norms over one layer's parameter; 1 where
  either norm is 0. optax's version takes the norm of the whole leaf, which for stacked blocks
  would give every block of a run the same ratio.
  """

  def update_fn(updates, state, params):
    def scale(path, update, param):
      axes = _layer_axes(path, param)
      param_norm = jnp.sqrt(jnp.sum(jnp.square(param), axis=axes, keepdims=True))
      update_norm = jnp.sqrt(jnp.sum(jnp.square(update), axis=axes, keepdims=True))
      ratio = trust_coefficient * param_norm / (update_norm + eps)
      return update * jnp.where((param_norm == 0) | (update_norm == 0), 1.0, ratio)

    return jax.tree_util.tree_map_with_path(scale, updates, params), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The configured optimizer; its learning rate is set each step by `set_learning_rate`.

  'sgd': PyTorch's SGD, the papers' recipe: the decay term joins the gradient before momentum.
  'lars': optax.lars (You et al. 2017), with per-layer trust ratios inside stacked blocks;
    parameters left out of weight decay by
    `weight_decay_bn_and_bias=False` also keep their plain learning rate (no trust ratio), as in
    the MLPerf reference.
  'adamw': optax.adamw, decay decoupled from the gradient and scaled by the learning rate.
  'lamb': optax.lamb (You et al. 2019, the optimizer of Wightman et al. 2021's "ResNet strikes
    back" A2 and A3), with per-layer trust ratios inside stacked blocks; as with 'lars',
    parameters left out of weight decay also keep their plain Adam step (no trust ratio), as
    timm's Lamb does for its parameters without decay.
  """
  validate(config)
  mask = True if config.weight_decay_bn_and_bias else weight_decay_mask

  def make(learning_rate):
    if config.optimizer == 'sgd':
      return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask),
        optax.sgd(learning_rate, momentum=config.momentum, nesterov=config.nesterov),
      )
    if config.optimizer == 'lars':
      # optax.lars's chain, with the trust ratio computed per layer.
      trust_ratio = scale_by_layer_trust_ratio(config.lars_trust_coefficient, config.lars_eps)
      return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask),
        optax.masked(trust_ratio, mask),
        optax.scale_by_learning_rate(learning_rate),
        optax.trace(decay=config.momentum, nesterov=config.nesterov),
      )
    if config.optimizer == 'lamb':
      # optax.lamb's chain (its eps), with the trust ratio |w| / |u| computed per layer.
      return optax.chain(
        optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=1e-6),
        optax.add_decayed_weights(config.weight_decay, mask),
        optax.masked(scale_by_layer_trust_ratio(1.0, 0.0), mask),
        optax.scale_by_learning_rate(learning_rate),
      )
    return optax.adamw(
      learning_rate,
      b1=config.adam_b1,
      b2=config.adam_b2,
      weight_decay=config.weight_decay,
      mask=mask,
    )

  # float32 (not weakly typed), so that fresh and restored states compile to the same program.
  return optax.inject_hyperparams(make, hyperparam_dtype=jnp.float32)(learning_rate=0.0)


def set_learning_rate(opt_state: optax.OptState, learning_rate: jax.Array) -> optax.OptState:
  """The optimizer state of `create_optimizer` with its learning rate replaced."""
  return optax.tree_utils.tree_set(opt_state, learning_rate=jnp.asarray(learning_rate, jnp.float32))
