"""The one network every family is built from: a stem, stages of residual blocks, a classifier.

A family is a plan (see `resnet_jax.models`): the `Stem`, and for each stage a `StagePlan` with
its output features, inner width, groups, stride and runs of blocks, each `Run` a block class
with the options of its position (shortcut kind, place in a ResStage stage, pre-activation);
then an optional final BN-ReLU (pre-activation networks) and the classifier. `ResNet` builds the
layers once (compute dtype, train mode, BatchNorm settings) and hands them to every block, as
Flax's examples/imagenet does.

A network of 3002 layers repeats one block hundreds of times per stage. Tracing and compiling
every copy separately makes compile time grow faster than linearly with depth; `stack_blocks`
instead runs the copies as one `nn.scan`, whose body is traced and compiled once. Each copy keeps
its own parameters and BatchNorm statistics, stacked along a new leading axis (block index), so
the parameter tree is the same whatever `unroll` is: `unroll=1` loops, `unroll=True` unrolls
fully (a plain Python loop's program), values in between unroll that many blocks per iteration,
and `None` (the default) unrolls runs of up to MAX_UNROLLED_BLOCKS and loops over longer ones.
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax import errors
from resnet_jax.models.blocks import Conv, Dropout, DType, ModuleDef, batch_norm, max_pool

# Names of the network's top-level modules and of the runs of blocks inside a stage. A post- or
# pre-activation stage is a `first` block and a stacked run `rest`; a ResStage stage a `start`
# block, a `first_middle` block, a stacked run `middle` and an `end` block.
STEM_CONV, STEM_BN, FINAL_BN, HEAD = 'stem_conv', 'stem_bn', 'final_bn', 'head'
STAGE_PREFIX = 'stage'
FIRST, REST = 'first', 'rest'
START, FIRST_MIDDLE, MIDDLE, END = 'start', 'first_middle', 'middle', 'end'


def stage_name(index: int) -> str:
  """Module name of stage `index` (from 0): 'stage1', 'stage2', ..."""
  return f'{STAGE_PREFIX}{index + 1}'


# With `unroll=None`, runs up to this long are unrolled fully (every ImageNet ResNet up to 200
# layers, CIFAR ones up to 164): the plain program of a Python loop, the well-trodden path on
# every backend. Scanned steps were measured on XLA:CPU only, where with `conv_ops` they are as
# fast as unrolled ones (benchmarks/NOTES.md). Longer runs loop, so that compile time stays flat
# for networks of 1000+ layers.
MAX_UNROLLED_BLOCKS = 36


@dataclasses.dataclass(frozen=True)
class Stem:
  """A `kernel_size` convolution with `strides`, then BN-ReLU (`norm`) and a 3x3/2 max-pool
  (`pool`). ImageNet: 7x7/2 with both; CIFAR: 3x3/1 with BN-ReLU only."""

  features: int = 64
  kernel_size: int = 7
  strides: int = 2
  norm: bool = True
  pool: bool = True


@dataclasses.dataclass(frozen=True)
class Run:
  """Blocks of one kind in a stage, under one parameter scope `name`.

  `block` is a block class, or a `functools.partial` of one that sets the options of this
  position; the network adds conv, norm, act, train and the stage's features, width, groups and
  stride.
  `count=None` is a single block; an integer is a run of that many identical blocks, stacked by
  `stack_blocks` (leading axis = block index, present even for a run of one; a run of zero is
  skipped and has no parameters).
  """

  name: str
  block: ModuleDef
  count: int | None = None


@dataclasses.dataclass(frozen=True)
class StagePlan:
  """One stage: `features` output channels, a bottleneck's `width` inner channels and `groups`,
  and its runs of blocks in order; the first block strides by `strides`."""

  features: int
  width: int
  groups: int
  strides: int
  runs: tuple[Run, ...]

  def __post_init__(self):
    if self.strides != 1 and self.runs[0].count is not None:
      raise errors.ConfigError(
        f'A stage with strides={self.strides} must begin with a single block (count=None), '
        f'not a stacked run of {self.runs[0].count}: stacked blocks keep their input shape.'
      )

  @property
  def num_blocks(self) -> int:
    return sum(1 if run.count is None else run.count for run in self.runs)


def stack_blocks(
  block: nn.Module,
  x: jax.Array,
  length: int,
  unroll: int | bool | None = None,
  remat: bool = False,
  drop_rates: jax.Array | None = None,
) -> jax.Array:
  """Applies `length` copies of `block` (same structure, own parameters) one after another.

  `block` is an unbound module whose `__call__(x)` returns an array shaped like `x`. Its
  variables get a leading axis of size `length`. `drop_rates` (one per block) are scanned over
  as an input, `__call__(x, drop_rate)`: the stochastic depth rates differ from block to block
  while the body stays one program. `remat` recomputes each block's activations in
  the backward pass instead of storing them (`nn.remat`), trading compute for memory.

  'intermediates' (Flax's `capture_intermediates` and `sow`) are stacked the same way, so that
  the blocks' activations can be read out of a scan (`resnet_jax.responses`); otherwise Flax
  drops them silently. Not collected, that collection is empty and the program unchanged.
  """

  if unroll is None:
    unroll = True if length <= MAX_UNROLLED_BLOCKS else 1

  def body(module: nn.Module, carry: jax.Array, rate: jax.Array | None) -> tuple[jax.Array, None]:
    return (module(carry) if rate is None else module(carry, rate)), None

  if remat:
    body = nn.remat(body, prevent_cse=False)
  scan = nn.scan(
    body,
    variable_axes={'params': 0, 'batch_stats': 0, 'intermediates': 0},
    split_rngs={'params': True, 'dropout': True},
    length=length,
    unroll=unroll,
  )
  return scan(block, x, drop_rates)[0]


class Stage(nn.Module):
  """The runs of blocks of a `StagePlan`, in order, made with the injected conv, norm and act."""

  plan: StagePlan
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]
  train: bool
  unroll: int | bool | None = None
  remat: bool = False
  drop_rates: tuple[float, ...] = ()  # stochastic depth rate of each block; empty: none

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p, strides = self.plan, self.plan.strides
    rates = list(self.drop_rates or (0.0,) * p.num_blocks)
    for run in p.runs:
      block = functools.partial(
        run.block,
        conv=self.conv,
        norm=self.norm,
        act=self.act,
        train=self.train,
        features=p.features,
        width=p.width,
        groups=p.groups,
      )
      if run.count is None:
        x = block(strides=strides, name=run.name)(x, rates.pop(0))
        strides = 1
      elif run.count > 0:
        run_rates = [rates.pop(0) for _ in range(run.count)]
        scanned = jnp.asarray(run_rates, jnp.float32) if self.drop_rates else None
        x = stack_blocks(block(name=run.name), x, run.count, self.unroll, self.remat, scanned)
    return x


class ResNet(nn.Module):
  """Stem, stages, optional final BN and ReLU, global average pooling, dropout, linear classifier.

  The classifier is initialised as PyTorch's `nn.Linear` (uniform in +-1/sqrt(fan_in)); its
  logits are float32 whatever `dtype` computes the rest.
  """

  stem: Stem
  stages: Sequence[StagePlan]
  final_norm: bool = False  # BN before the pooling (pre-activation networks)
  final_act: bool = False  # ReLU before the pooling (pre-activation networks)
  num_classes: int = 1000
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  unroll: int | bool | None = None
  remat: bool = False
  bn_group_size: int = 0  # images per BatchNorm statistics group in training; 0: the batch
  stochastic_depth_rate: float = 0.0  # the last block's; see `drop_rates`

  def __post_init__(self):
    if not 0 <= self.stochastic_depth_rate < 1:
      raise errors.ConfigError(
        f'stochastic_depth_rate={self.stochastic_depth_rate!r} must be in [0, 1): the '
        "probability that the last residual block's branch is dropped in training (Huang et al. "
        '2016 use 0.5), or 0 for none.'
      )
    super().__post_init__()

  def drop_rates(self) -> list[tuple[float, ...]]:
    """Per stage, the stochastic depth rate of each block: l / L * stochastic_depth_rate for
    block l of the network's L blocks (Huang et al. 2016's linear decay rule), from the first
    block's small rate to the last block's `stochastic_depth_rate`; empty tuples when off."""
    if not self.stochastic_depth_rate:
      return [() for _ in self.stages]
    total = sum(plan.num_blocks for plan in self.stages)
    rates, first = [], 1
    for plan in self.stages:
      blocks = range(first, first + plan.num_blocks)
      rates.append(tuple(index / total * self.stochastic_depth_rate for index in blocks))
      first += plan.num_blocks
    return rates

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    conv = functools.partial(Conv, dtype=self.dtype)
    norm = batch_norm(train, self.dtype, self.bn_group_size)
    act = nn.relu
    stem = self.stem
    x = conv(stem.features, stem.kernel_size, stem.strides, name=STEM_CONV)(x)
    if stem.norm:
      x = act(norm(name=STEM_BN)(x))
    if stem.pool:
      x = max_pool(x)
    for i, (plan, rates) in enumerate(zip(self.stages, self.drop_rates(), strict=True)):
      stage = Stage(
        plan, conv, norm, act, train, self.unroll, self.remat, rates, name=stage_name(i)
      )
      x = stage(x)
    if self.final_norm:
      x = norm(name=FINAL_BN)(x)
    if self.final_act:
      x = act(x)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    if self.dropout_rate > 0:
      x = Dropout(self.dropout_rate, deterministic=not train)(x)
    bound = x.shape[-1] ** -0.5
    x = nn.Dense(
      self.num_classes,
      dtype=self.dtype,
      kernel_init=nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
      bias_init=lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound),
      name=HEAD,
    )(x)
    return x.astype(jnp.float32)
