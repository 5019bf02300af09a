"""The project's train and eval steps for one registry model, as `resnet_jax.main` runs them."""

import time

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import default as default_config
from resnet_jax import data as data_lib
from resnet_jax import evaluation, fake_data, optim, train


class JaxModel:
  """The project's train and eval steps for one model, built as `train.train_and_evaluate` does."""

  def __init__(self, name: str, batch: int, image_size: int, dtype: str, **model_kwargs):
    config = default_config.get_config()
    config.model = name
    config.model_kwargs.update(model_kwargs)
    config.dataset = 'fake'
    config.num_classes = 10 if name.startswith('cifar') else 1000
    config.image_size = image_size
    config.batch_size = config.eval_batch_size = batch
    config.dtype = dtype
    train.check_batch_size(batch, 'batch_size')
    self.model = train.create_model(config)
    mesh = train.make_mesh()
    replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    tx = optim.create_optimizer(config)
    shape = (1, image_size, image_size, 3)
    self.state = train.create_train_state(self.model, tx, jax.random.key(0), shape, replicated)
    batch_np = next(fake_data.train_batches(config, batch))
    batch_np['mask'] = np.ones((batch,), np.float32)
    self.batch = data_lib.to_global(batch_np, data)
    self.rng = jax.random.key(1)
    self.learning_rate = np.float32(config.learning_rate)
    normalization = data_lib.Data(config).normalization(train.compute_dtype(config).name)
    step = train.jit_train_step(config, mesh, normalization)
    self.eval_jit = evaluation.jit_eval_step(config, mesh, normalization)
    self.eval_metrics = jax.device_put(evaluation.EvalMetrics.empty(), replicated)
    start = time.perf_counter()
    self.train_compiled = step.lower(self.state, self.batch, self.rng, self.learning_rate).compile()
    self.compile_s = time.perf_counter() - start

  def train_step(self) -> None:
    self.state, metrics = self.train_compiled(self.state, self.batch, self.rng, self.learning_rate)
    jax.block_until_ready(metrics)

  def eval_step(self) -> None:
    jax.block_until_ready(self.eval_jit(self.state, self.eval_metrics, self.batch))

  def memory(self) -> tuple[float, str]:
    """Peak device memory if the device reports it, else XLA's buffer plan of the train step."""
    stats = jax.devices()[0].memory_stats() or {}
    if 'peak_bytes_in_use' in stats:
      return stats['peak_bytes_in_use'] / 2**20, 'device peak'
    plan = self.train_compiled.memory_analysis()
    total = plan.argument_size_in_bytes + plan.output_size_in_bytes + plan.temp_size_in_bytes
    return (total - plan.alias_size_in_bytes) / 2**20, 'XLA plan of the train step'
