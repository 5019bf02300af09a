"""Stages, and the one place where runs of identical blocks are stacked.

A network of 3002 layers repeats one block hundreds of times per stage. Tracing and compiling
every copy separately makes compile time grow faster than linearly with depth; `stack_blocks`
instead runs the copies as one `nn.scan`, whose body is traced and compiled once. Each copy keeps
its own parameters and BatchNorm statistics, stacked along a new leading axis (block index), so
the parameter tree is the same whatever `unroll` is: `unroll=1` loops, `unroll=True` unrolls
fully (a plain Python loop's program), values in between unroll that many blocks per iteration,
and `None` (the default) unrolls runs of up to MAX_UNROLLED_BLOCKS and loops over longer ones.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax

from resnet_jax.models.layers import ModuleDef

# With `unroll=None`, runs up to this long are unrolled fully (every ImageNet ResNet up to 200
# layers, CIFAR ones up to 164): the plain program of a Python loop, the well-trodden path on
# every backend. Scanned steps were measured on XLA:CPU only, where with `conv_ops` they are as
# fast as unrolled ones (benchmarks/NOTES.md). Longer runs loop, so that compile time stays flat
# for networks of 1000+ layers.
MAX_UNROLLED_BLOCKS = 36


def stack_blocks(
  block: nn.Module,
  x: jax.Array,
  length: int,
  unroll: int | bool | None = None,
  remat: bool = False,
) -> jax.Array:
  """Applies `length` copies of `block` (same structure, own parameters) one after another.

  `block` is an unbound module whose `__call__(x)` returns an array shaped like `x`. Its
  variables get a leading axis of size `length`. `remat` recomputes each block's activations in
  the backward pass instead of storing them (`nn.remat`), trading compute for memory.
  """

  if unroll is None:
    unroll = True if length <= MAX_UNROLLED_BLOCKS else 1

  def body(module: nn.Module, carry: jax.Array, _) -> tuple[jax.Array, None]:
    return module(carry), None

  if remat:
    body = nn.remat(body, prevent_cse=False)
  scan = nn.scan(
    body,
    variable_axes={'params': 0, 'batch_stats': 0},
    split_rngs={'params': True, 'dropout': True},
    length=length,
    unroll=unroll,
  )
  return scan(block, x, None)[0]


class Stage(nn.Module):
  """Blocks applied in order, given as runs `(name, block constructor, count)`.

  `count=None` is a single block with its own parameters under `name`; an integer is a run of that
  many identical blocks under `name`, stacked by `stack_blocks` (leading axis = block index,
  present even for a run of one; a run of zero is skipped and has no parameters). `unroll` and
  `remat` apply to the runs.
  """

  runs: Sequence[tuple[str, ModuleDef, int | None]]
  unroll: int | bool | None = None
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for name, block, count in self.runs:
      if count is None:
        x = block(name=name)(x)
      elif count > 0:
        x = stack_blocks(block(name=name), x, count, self.unroll, self.remat)
    return x
