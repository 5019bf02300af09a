"""Training and evaluation loop: one jit-compiled step over a mesh of every device.

Parameters and optimizer state are replicated; each batch is sharded over the 'data' axis of
the mesh, so XLA reduces BatchNorm statistics and gradients over the global batch, as a pmap
with an axis name would. With `config.bn_group_size` BatchNorm statistics are instead taken over
groups of that many images, each within one device's shard (per-GPU BatchNorm of data-parallel
PyTorch without SyncBatchNorm). Runs are resumable: data order and randomness are functions of
(seed, step), and everything else is in the Orbax checkpoint.
"""

import contextlib
import functools
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from resnet_jax import (
  checkpoints,
  cluster,
  datasets,
  diagnosis,
  ema,
  errors,
  evaluation,
  extra_eval,
  finetune,
  grad_accum,
  metric_logging,
  mixup,
  models,
  normalize,
  optim,
  paths,
)
from resnet_jax import data as data_lib
from resnet_jax import workdir as run_workdir
from resnet_jax.config_checks import check_choice, check_ranges


class TrainState(train_state.TrainState):
  batch_stats: Any
  # The moving average of params and batch_stats (`resnet_jax.ema`); empty when off.
  ema: Any = flax.struct.field(default_factory=dict)


class NonFiniteLossError(errors.Error, FloatingPointError):
  pass


# `config.dtype`: the compute dtype; parameters are always float32.
DTYPES = ('auto', 'float32', 'bfloat16')

# The fields the loop owns: (lowest, highest, whether the lowest is allowed).
RANGES = {
  'depth': (0, math.inf, True),
  'bn_group_size': (0, math.inf, True),
  'stochastic_depth_rate': (0, 1, True),
  'num_epochs': (0, math.inf, True),
  'label_smoothing': (0, 1, True),
  'log_every_steps': (1, math.inf, True),
  'eval_every_steps': (0, math.inf, True),
  'checkpoint_every_steps': (1, math.inf, True),
  'keep_checkpoints': (1, math.inf, True),
}


def model_name(config: ml_collections.ConfigDict) -> str:
  """The registry name of the configured model, with `config.depth` applied."""
  if not config.depth:
    return config.model
  family, _ = models.parse_name(config.model)
  return f'{family}{config.depth}'


def compute_dtype(config: ml_collections.ConfigDict) -> jnp.dtype:
  """`config.dtype`, with 'auto' meaning bfloat16 on accelerators and float32 on CPU."""
  check_choice('config.dtype', config.dtype, DTYPES)
  if config.dtype == 'auto':
    return jnp.dtype(jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16)
  return jnp.dtype(config.dtype)


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
  options = config.model_kwargs.to_dict()
  if config.stochastic_depth_rate:  # Also a model option: `model_kwargs` may set it instead.
    options['stochastic_depth_rate'] = config.stochastic_depth_rate
  return models.create_model(
    model_name(config),
    num_classes=data_lib.known_num_classes(config),
    dtype=compute_dtype(config),
    bn_group_size=config.bn_group_size,
    **options,
  )


def create_train_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  rng: jax.Array,
  input_shape: tuple[int, ...],
  sharding: NamedSharding,
  ema_decay: float = 0.0,
) -> TrainState:
  @functools.partial(jax.jit, out_shardings=sharding)
  def init(rng):
    variables = model.init({'params': rng}, jnp.zeros(input_shape, jnp.float32), train=False)
    batch_stats = variables.get('batch_stats', {})
    return TrainState.create(
      apply_fn=model.apply,
      params=variables['params'],
      batch_stats=batch_stats,
      tx=tx,
      ema=ema.init(variables['params'], batch_stats, ema_decay),
    )

  return init(rng)


# `config.loss`: softmax cross-entropy, or binary cross-entropy of each class's sigmoid (timm's
# BinaryCrossEntropy, as "ResNet strikes back" trains: the mean over classes and examples).
LOSSES = ('softmax_xent', 'sigmoid_xent')


def cross_entropy(
  logits: jax.Array, targets: jax.Array, label_smoothing: float, loss: str = 'softmax_xent'
) -> jax.Array:
  """Per-example loss against integer labels or soft targets (N, classes), both smoothed to
  (1 - label_smoothing) * target + label_smoothing / classes."""
  num_classes = logits.shape[-1]
  if targets.ndim < logits.ndim:
    targets = jax.nn.one_hot(targets, num_classes)
  targets = optax.smooth_labels(targets, label_smoothing)
  if loss == 'sigmoid_xent':
    return optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets).mean(-1)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  dropout_rng: jax.Array,
  learning_rate: jax.Array,
  label_smoothing: float,
  normalization: normalize.Normalization | None = None,
  loss_name: str = 'softmax_xent',
  mix: mixup.Mix = mixup.NONE,
  grad_accum_steps: int = 1,
  ema_decay: float = 0.0,
  ema_every_steps: int = 1,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One update at `learning_rate`, a float32 scalar from the host's schedule table, from the
  mean gradient of `grad_accum_steps` micro-batches (`resnet_jax.grad_accum`); then the moving
  average of the weights, if the state keeps one (`resnet_jax.ema`). With `mix` the normalised
  images of the whole batch and their targets are mixed first, keyed by seed and step; top-1
  counts the images' own labels."""
  rng = jax.random.fold_in(dropout_rng, state.step)
  inputs = {'image': normalize.images(batch['image'], normalization), 'label': batch['label']}
  if mix.active:
    mix_rng, rng = jax.random.split(rng)
    inputs['image'], ratio = mixup.mix(inputs['image'], mix_rng, mix)
    inputs['partner'] = mixup.partners(batch['label'])

  def loss_fn(params, batch_stats, inputs, rng):
    logits, new_model_state = state.apply_fn(
      {'params': params, 'batch_stats': batch_stats},
      inputs['image'],
      train=True,
      mutable=['batch_stats'],
      rngs={'dropout': rng},
    )
    targets = inputs['label']
    if mix.active:
      targets = mixup.targets(inputs['label'], inputs['partner'], ratio, logits.shape[-1])
    loss = cross_entropy(logits, targets, label_smoothing, loss_name).mean()
    return loss, (logits, new_model_state)

  (loss, (logits, new_model_state)), grads = grad_accum.value_and_grad(
    loss_fn, state.params, state.batch_stats, inputs, rng, grad_accum_steps
  )
  metrics = {
    'loss': loss,
    'top1': jnp.mean(jnp.argmax(logits, -1) == batch['label']),
    # One flag catches a NaN/Inf in the loss or in any gradient before it reaches a checkpoint.
    'nonfinite': ~(jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))),
  }
  state = state.replace(opt_state=optim.set_learning_rate(state.opt_state, learning_rate))
  state = state.apply_gradients(grads=grads, batch_stats=new_model_state['batch_stats'])
  average = ema.update(
    state.ema, state.params, state.batch_stats, state.step, ema_decay, ema_every_steps
  )
  return state.replace(ema=average), metrics


def make_mesh() -> jax.sharding.Mesh:
  return jax.make_mesh((jax.device_count(),), ('data',))


def jit_train_step(
  config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh,
  normalization: normalize.Normalization | None = None,
) -> Callable:
  """The compiled step(state, batch, dropout_rng, learning_rate).

  State replicated (and donated), batch sharded over 'data'. The learning rate is a NumPy
  float32 scalar, an entry of `optim.learning_rate_table`, so every call has the same signature.
  `normalization`: that of the uint8 batches of `data.Data`; None for batches of network input.
  """
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  step = functools.partial(
    train_step,
    label_smoothing=config.label_smoothing,
    normalization=normalization,
    loss_name=config.loss,
    mix=mixup.from_config(config),
    grad_accum_steps=config.grad_accum_steps,
    ema_decay=config.ema_decay,
    ema_every_steps=config.ema_every_steps,
  )
  return jax.jit(
    step,
    in_shardings=(replicated, data, replicated, replicated),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
  )


def check_batch_size(batch_size: int, name: str) -> None:
  devices, processes = jax.device_count(), jax.process_count()
  if batch_size % devices:
    lower = batch_size // devices * devices
    raise errors.ConfigError(
      f'config.{name}={batch_size} does not divide by the {devices} devices '
      f'({processes} process(es) x {jax.local_device_count()} local devices): every device '
      f'must get the same number of examples. Use a multiple of {devices}, e.g. '
      f'{max(lower, devices)} or {lower + devices}.'
    )


def check_bn_group_size(config: ml_collections.ConfigDict) -> None:
  """Each device's share of the batch must be whole BatchNorm groups, so that no group's
  statistics need images from another device."""
  group, devices = config.bn_group_size, jax.device_count()
  per_device = config.batch_size // devices
  if group and per_device % group:
    raise errors.ConfigError(
      f'config.bn_group_size={group} does not divide the {per_device} images each of the '
      f'{devices} devices gets (config.batch_size={config.batch_size}): BatchNorm statistics '
      f'groups must lie within one device. Use a group size that divides {per_device}, a '
      f'batch size that is a multiple of {devices * group}, or bn_group_size=0 (the global '
      'batch).'
    )


# Above this share of a log window spent waiting for batches, the run is input-bound.
INPUT_BOUND_FRACTION = 0.2


def timed_batches(
  batches: Iterator, report_progress: metric_logging.ReportProgress
) -> Iterator[dict[str, np.ndarray]]:
  """The host's batches, each `next` timed as the 'input' part of the progress report.

  Only the host pipeline is timed, not the transfer to the devices, which on a busy device
  (XLA:CPU above all) waits for the steps ahead of it. Closing this ends the pipeline (its
  threads stop with it) before the run's last writes.
  """
  with contextlib.closing(batches):
    while True:
      with report_progress.timed('input', wait_jax_async_dispatch=False):
        batch = next(batches, None)
      if batch is None:
        return
      yield batch


class LogWindow:
  """The steps since the last metrics row: their metrics, fetched from the devices together,
  and the wall time and input wait of those that train (not compilation, not evaluation)."""

  def __init__(
    self,
    restored: dict[str, list[float]],
    batch_size: int,
    report_progress: metric_logging.ReportProgress,
  ):
    # A resumed run starts with the metrics of the steps before its checkpoint, so that its
    # first row averages the same steps as an uninterrupted run's.
    self.pending = [
      {'loss': np.float32(loss), 'top1': np.float32(top1), 'nonfinite': np.False_}
      for loss, top1 in zip(restored.get('loss', []), restored.get('top1', []), strict=True)
    ]
    self.batch_size, self.report_progress, self.last_warning = batch_size, report_progress, None
    self.restart_timing()

  def restart_timing(self) -> None:
    self.start, self.steps = time.time(), 0
    self.input_mark = self.report_progress.seconds('input')

  def add(self, metrics: dict[str, jax.Array]) -> None:
    self.pending.append(metrics)
    self.steps += 1

  def fetch(self) -> list[dict[str, np.ndarray]]:
    self.pending = jax.device_get(self.pending)
    return self.pending

  def saved(self) -> dict[str, list[float]]:
    """What a checkpoint keeps of the window (`checkpoints.Restored.log_window`)."""
    return {k: [float(m[k]) for m in self.pending] for k in ('loss', 'top1')}

  def row(self, step: int, learning_rate: float) -> dict[str, float]:
    """The metrics row of the fetched window at `step`; starts the next window."""
    elapsed = time.time() - self.start
    row = {f'train_{k}': float(np.mean([m[k] for m in self.pending])) for k in ('loss', 'top1')}
    row['learning_rate'] = float(learning_rate)
    if self.steps:
      row['images_per_sec'] = self.steps * self.batch_size / elapsed
      row['input_wait_fraction'] = self._input_wait(elapsed, step)
    self.pending = []
    self.restart_timing()
    return row

  def _input_wait(self, elapsed: float, step: int) -> float:
    """The share of the window's `elapsed` seconds spent waiting for batches; warns (every 10
    min at most) when it exceeds INPUT_BOUND_FRACTION."""
    fraction = (self.report_progress.seconds('input') - self.input_mark) / elapsed
    if fraction > INPUT_BOUND_FRACTION and (
      self.last_warning is None or time.time() - self.last_warning > 600
    ):
      self.last_warning = time.time()
      logging.warning(
        'Input-bound: %.0f%% of the time up to step %d went into waiting for the next batch, '
        'so the input pipeline, not the devices, sets the pace (metric input_wait_fraction). '
        'Give the hosts more CPU or faster storage, cache small datasets (config.cache) or '
        'raise config.prefetch.',
        100 * fraction,
        step,
      )
    return fraction


def num_train_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  if config.num_train_steps > 0:
    return config.num_train_steps
  if config.num_epochs > 0:
    return int(round(config.num_epochs * steps_per_epoch))
  raise errors.ConfigError('Set config.num_train_steps or config.num_epochs to a positive value.')


class _PreemptionFlag:
  """Set by SIGTERM in single-process runs; multi-process runs use JAX's preemption service."""

  def __init__(self):
    self.raised = False
    if jax.process_count() == 1:
      signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def reached(self, manager: ocp.CheckpointManager, step: int) -> bool:
    return self.raised or manager.reached_preemption(step)


def write_summary(workdir: epath.Path, summary: dict[str, Any]) -> None:
  if jax.process_index() == 0:
    paths.write_text_atomic(workdir / 'summary.json', json.dumps(summary, indent=2))


def check_config(config: ml_collections.ConfigDict) -> None:
  """Every check that needs neither data nor compilation (`create_model` then checks the model's
  name and options)."""
  check_ranges(config, RANGES)
  check_choice('config.dtype', config.dtype, DTYPES)
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    raise errors.ConfigError(
      'Set config.num_train_steps or config.num_epochs to a positive value: the run trains for '
      'one of them.'
    )
  datasets.validate(config)
  extra_eval.entries(config)
  optim.validate(config)
  finetune.validate(config)
  mixup.validate(config)
  check_choice('config.loss', config.loss, LOSSES)
  check_batch_size(config.batch_size, 'batch_size')
  check_batch_size(config.eval_batch_size, 'eval_batch_size')
  check_bn_group_size(config)
  grad_accum.check(config)
  ema.check(config)


def _on_process_0(action: Callable[[], None]) -> None:
  """Runs `action` on process 0; every process raises if it failed, so none waits for the
  others in a collective."""
  failure = None
  if jax.process_index() == 0:
    try:
      action()
    except errors.Error as error:
      failure = error
  if jax.process_count() > 1:
    failed = multihost_utils.broadcast_one_to_all(np.int32(failure is not None))
    if failed and failure is None:
      raise errors.WorkdirError(
        'Process 0 could not prepare the workdir and stopped; its log says why.'
      )
  if failure is not None:
    raise failure


@contextlib.contextmanager
def _compiling(what: str, first: bool) -> Iterator[None]:
  """Around the first call of a compiled step, which compiles before it runs (minutes for a big
  model on a busy CPU): says so before, and how long it took after."""
  if not first:
    yield
    return
  logging.info('Compiling the %s ...', what)
  start = time.time()
  yield
  logging.info('Compiled and ran the %s: %.1f s', what, time.time() - start)


@cluster.leave_on_lost_peer
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from the newest checkpoint in `workdir`), evaluates, writes summary.json.

  The workdir is locked for the whole run, so a second run started in it stops at once."""
  workdir = paths.resolve(workdir)
  check_config(config)  # Before any data is read or anything compiles.
  model = create_model(config)  # Checks the model's name and options, also before any data.
  if not config.num_classes:
    config = data_lib.with_num_classes(config)
    model = create_model(config)
  held = run_workdir.Held(workdir)  # Process 0's is the lock's; the others' is never taken.
  with contextlib.ExitStack() as stack:

    def prepare_workdir():
      nonlocal held
      run_workdir.create(workdir)
      held = stack.enter_context(run_workdir.lock(workdir))
      resuming = checkpoints.has_checkpoint(workdir / 'checkpoints')
      run_workdir.check_config(workdir, config, resuming)
      checkpoints.set_aside_unfinished(workdir / 'checkpoints')

    _on_process_0(prepare_workdir)
    try:
      return _train_and_evaluate(config, model, workdir, held)
    except Exception as error:
      if diagnosis.disk_full(error):
        raise diagnosis.disk_full_error(workdir) from None
      raise


def _train_and_evaluate(
  config: ml_collections.ConfigDict, model: nn.Module, workdir: epath.Path, held: run_workdir.Held
) -> dict[str, Any]:
  clock = run_workdir.WallClock(workdir, write=jax.process_index() == 0)
  data = data_lib.Data(config)
  extra_sets = extra_eval.ExtraSets(config)  # Found and checked now, evaluated at the end.
  total_steps = num_train_steps(config, data.steps_per_epoch)
  learning_rates = optim.learning_rate_table(
    optim.create_learning_rate_fn(config, data.steps_per_epoch, total_steps), total_steps
  )

  mesh = make_mesh()
  replicated = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P('data'))
  eval_data = data.eval()
  # Parameters are drawn with XLA's RngBitGenerator: on XLA:CPU its initialisation program
  # compiles about 3x faster than threefry's, and the state is replicated, so the values do not
  # depend on the device count (tested). Dropout keeps threefry, keyed by (seed, step).
  init_rng = jax.random.key(config.seed, impl='rbg')
  dropout_rng = jax.random.key(config.seed)
  state = create_train_state(
    model,
    finetune.create_optimizer(config),
    init_rng,
    (1, *data.image_shape),
    replicated,
    config.ema_decay,
  )
  num_params = sum(x.size for x in jax.tree.leaves(state.params))

  manager = ocp.CheckpointManager(
    workdir / 'checkpoints',
    options=ocp.CheckpointManagerOptions(
      max_to_keep=config.keep_checkpoints,
      save_interval_steps=config.checkpoint_every_steps,
    ),
  )
  cluster.set_checkpoint_directory(manager.directory)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  restored = checkpoints.restore_newest(manager, abstract, workdir / 'checkpoints')
  log_window = {}
  if restored is not None:
    state, log_window = restored
    logging.info('Restored the checkpoint of step %d from %s.', int(state.step), workdir)
  elif config.init_from:
    state = finetune.restore_pretrained(state, config.init_from)
    # The average starts from the loaded weights.
    state = state.replace(ema=ema.init(state.params, state.batch_stats, config.ema_decay))
  start_step = int(state.step)
  if start_step > total_steps and not config.eval_only:
    raise errors.ConfigError(
      f'config.num_train_steps={total_steps} is below step {start_step}, where the run in '
      f'{workdir} stands: a run cannot be shortened after it trained past the new end. Rerun '
      f'with --config.num_train_steps={start_step} or more, add --config.eval_only=True to '
      'evaluate the checkpoint as it is, or use a new --workdir.'
    )

  writer = metric_logging.create_writer(workdir, start_step, finished=start_step >= total_steps)
  if start_step == 0:
    writer.write_hparams(
      {k: v for k, v in config.to_dict().items() if isinstance(v, int | float | str | bool)}
    )

  normalization = data.normalization(compute_dtype(config).name)
  train_step_fn = jit_train_step(config, mesh, normalization)
  eval_step_fn = evaluation.jit_eval_step(config, mesh, normalization)

  evaluated = []

  def run_eval(step):
    """{'eval': metrics} of the weights, and 'ema_eval' of their average if the run keeps one."""
    with _compiling('eval step (first evaluation)', not evaluated):
      results = {'eval': evaluation.evaluate(state, eval_step_fn, eval_data, data_sharding)}
      if state.ema:
        averaged = ema.averaged(state)
        results['ema_eval'] = evaluation.evaluate(averaged, eval_step_fn, eval_data, data_sharding)
    evaluated.append(step)
    writer.write_scalars(
      step,
      {
        f'{name}_{k}': v
        for name, metrics in results.items()
        for k, v in metrics.items()
        if k != 'count'
      },
    )
    return results

  def save(step, force, window):
    # The previous save may still be writing in the background: its bytes are not yet missing
    # from the free space that `_check_room` reads. Orbax's save would wait for it anyway.
    manager.wait_until_finished()
    diagnosis.check_room(workdir)
    # Metrics first: every record a checkpoint covers is on disk before the checkpoint is.
    writer.flush()
    clock.record()
    manager.save(step, args=checkpoints.save_args(state, window), force=force)

  eval_metrics = None
  if not config.eval_only:
    preemption = _PreemptionFlag()
    report_progress = metric_logging.ReportProgress(
      num_train_steps=total_steps, writer=writer, every_steps=config.log_every_steps
    )
    window = LogWindow(log_window, config.batch_size, report_progress)
    host_batches = data.train(start_step)
    batches = data_lib.prefetch(
      (data_lib.to_global(b, data_sharding) for b in timed_batches(host_batches, report_progress)),
      config.prefetch,
    )
    for step in range(start_step + 1, total_steps + 1):
      first = step == start_step + 1
      with (
        _compiling('train step (first step)', first),
        jax.profiler.StepTraceAnnotation('train', step_num=step),
      ):
        state, metrics = train_step_fn(state, next(batches), dropout_rng, learning_rates[step - 1])
        if first:  # Compilation stays out of images_per_sec.
          jax.block_until_ready(metrics)
      window.add(metrics)
      if first:
        window.restart_timing()
      report_progress(step)
      held.check()
      is_last = step == total_steps
      preempted = preemption.reached(manager, step)
      log = step % config.log_every_steps == 0 or is_last
      should_save = manager.should_save(step) or is_last or preempted
      if log or should_save:
        diagnosis.check_finite(window.fetch(), step, manager, workdir, start_step)
      if log:
        writer.write_scalars(step, window.row(step, learning_rates[step - 1]))
      if (config.eval_every_steps and step % config.eval_every_steps == 0) or is_last:
        with report_progress.timed('eval'):
          eval_metrics = run_eval(step)
        window.restart_timing()  # Evaluation time is not training time.
      if should_save:
        save(step, force=is_last or preempted, window=window.saved())
      if preempted:
        host_batches.close()
        manager.close()
        writer.close()
        logging.info('Preempted: saved the checkpoint of step %d; rerun to resume.', step)
        return {'preempted_at_step': step}
    host_batches.close()
  if eval_metrics is None:  # A finished run started again: evaluate its final state.
    eval_metrics = run_eval(int(state.step))
  extra_metrics = extra_sets.evaluate(state, mesh, normalization, data_sharding)
  for entry, metrics in extra_metrics.items():
    logging.info('%s: %s', entry, metrics)
    writer.write_scalars(int(state.step), {f'{entry}/{k}': v for k, v in metrics.items()})
  # Closed, not only flushed: their threads end with the run (a sweep worker runs many).
  manager.close()
  writer.close()
  wall_time_s, restarts = clock.record()
  summary = {
    'model': model_name(config),
    'dataset': config.dataset,
    'dtype': compute_dtype(config).name,
    'config': config.to_dict(),
    'step': int(state.step),
    'num_train_steps': total_steps,
    'num_params': int(num_params),
    'input_shape': list(data.image_shape),
    **eval_metrics,
    **({'extra_eval': extra_metrics} if extra_metrics else {}),
    'wall_time_s': wall_time_s,
    'restarts': restarts,
  }
  write_summary(workdir, summary)
  return summary
