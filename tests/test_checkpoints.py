"""A damaged checkpoint's cause, as the warning that sets it aside names it."""

import pathlib

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from resnet_jax import checkpoints


def test_the_cause_of_a_truncated_checkpoint_is_tensorstores_message(tmp_path):
  """Orbax wraps the read error in one whose message ends in the multi-line array spec."""
  state = {'kernel': jnp.arange(20_000, dtype=jnp.float32), 'bias': jnp.ones(3)}
  directory = epath.Path(tmp_path)
  with ocp.CheckpointManager(directory) as manager:
    manager.save(1, args=checkpoints.save_args(state, {}))
  step = pathlib.Path(tmp_path) / '1' / 'default'
  data = [p for p in step.rglob('*') if p.is_file() and p.parent.name == 'd']
  largest = max(data, key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])

  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  restored, cause = checkpoints._try_restore(directory / '1', abstract)  # noqa: SLF001
  assert restored is None
  assert cause.startswith('unreadable arrays: ValueError: OUT_OF_RANGE: Error reading'), cause
  assert 'is not valid for value of size' in cause and '\n' not in cause, cause
