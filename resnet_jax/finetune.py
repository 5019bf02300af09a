"""Fine-tuning: a trained or converted network onto other classes, parts of it frozen or slower.

`restore_pretrained` loads `config.init_from` into a network whose classifier has another
number of outputs: every array but the classifier is restored, the classifier keeps its fresh
initialisation. `create_optimizer` freezes the stem and the first stages
(`config.freeze_stages`) and scales the backbone's learning rate against the classifier's
(`config.backbone_lr_scale`) with `optax.multi_transform`; the labels are a function of the
parameter names, so a resumed run builds the same optimizer state and resumes exactly.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from resnet_jax import checkpoints, errors, optim, paths
from resnet_jax.config_checks import check_ranges
from resnet_jax.models import network

# The fields this module owns: (lowest, highest, whether the lowest is allowed).
RANGES = {'freeze_stages': (-1, math.inf, True), 'backbone_lr_scale': (0, math.inf, True)}


def validate(config: ml_collections.ConfigDict) -> None:
  check_ranges(config, RANGES)


def _head_shapes(directory: str) -> dict[str, tuple[int, ...]] | None:
  """Shapes of the classifier's arrays in the checkpoint at `directory`, read from its metadata."""
  try:
    metadata = ocp.StandardCheckpointer().metadata(paths.resolve(directory))
  except (FileNotFoundError, ValueError):
    return None  # `_restore` reports what is wrong with the directory.
  tree = getattr(metadata, 'item_metadata', metadata)
  head = (tree.get('params') or {}).get(network.HEAD) if hasattr(tree, 'get') else None
  return {name: tuple(array.shape) for name, array in head.items()} if head else None


def _restore(state, directory: str):
  """Loads `params` and `batch_stats` from an Orbax checkpoint (converted weights or a run)."""
  tree = ocp.StandardCheckpointer().restore(paths.resolve(directory))
  if 'params' not in tree:
    raise errors.ConfigError(
      f'config.init_from={directory!r} holds no `params`: point it at a directory written by '
      '`python -m resnet_jax.convert` or at a step directory of a run, e.g. '
      'WORKDIR/checkpoints/1000/default.'
    )
  restored = {'params': tree['params'], 'batch_stats': tree.get('batch_stats', {})}
  current = {'params': state.params, 'batch_stats': state.batch_stats}
  if jax.tree.structure(restored) != jax.tree.structure(current):
    raise errors.ConfigError(
      f'The checkpoint in {directory!r} does not match the parameters of the configured model '
      f'{state.apply_fn}: check config.model and config.model_kwargs.'
    )
  mismatched = [
    ('/'.join(str(getattr(key, 'key', key)) for key in path), np.shape(new), old.shape)
    for (path, new), old in zip(
      jax.tree_util.tree_leaves_with_path(restored), jax.tree.leaves(current), strict=True
    )
    if np.shape(new) != old.shape
  ]
  if mismatched:
    name, shape, expected = mismatched[0]
    others = f' (and {len(mismatched) - 1} more arrays)' if len(mismatched) > 1 else ''
    raise errors.ConfigError(
      f'The checkpoint in {directory!r} holds {name} of shape {shape}, where the configured '
      f'model has shape {expected}{others}: check config.num_classes, config.model and '
      'config.model_kwargs against the run or conversion that wrote it.'
    )
  restored = jax.tree.map(
    lambda new, old: jax.device_put(jnp.asarray(new, old.dtype), old.sharding), restored, current
  )
  return state.replace(**restored)


def checkpoint_directory(directory: str) -> str:
  """The checkpoint `directory` names: a run's workdir stands for its newest checkpoint."""
  newest = checkpoints.newest_state(paths.resolve(directory))
  return str(newest) if newest else directory


def restore_pretrained(state, directory: str):
  """`state` with the checkpoint's `params` and `batch_stats`, the classifier kept fresh where
  the checkpoint's has another number of classes; `directory` may be a run's workdir.

  The restore runs on a state whose classifier has the checkpoint's shapes, so that any other
  mismatch is still the error that names the array and both shapes.
  """
  directory = checkpoint_directory(directory)
  fresh = state.params.get(network.HEAD)
  saved = _head_shapes(directory)
  if fresh is None or saved is None or saved == {k: v.shape for k, v in fresh.items()}:
    return _restore(state, directory)
  if set(saved) != set(fresh):
    raise errors.ConfigError(
      f'The classifier of the checkpoint in {directory!r} has arrays {sorted(saved)}, where the '
      f'configured model has {sorted(fresh)}: check config.model and config.model_kwargs.'
    )
  placeholder = {
    name: jax.device_put(jnp.zeros(shape, fresh[name].dtype), fresh[name].sharding)
    for name, shape in saved.items()
  }
  restored = _restore(state.replace(params={**state.params, network.HEAD: placeholder}), directory)
  logging.info(
    'Fine-tuning: the classifier of %s (%s) is dropped; the new one (%s) starts afresh.',
    directory,
    ', '.join(f'{network.HEAD}/{k} {saved[k]}' for k in sorted(saved)),
    ', '.join(f'{k} {fresh[k].shape}' for k in sorted(fresh)),
  )
  return restored.replace(params={**restored.params, network.HEAD: fresh})


FROZEN, BACKBONE, HEAD = 'frozen', 'backbone', 'head'


def parameter_groups(params: optax.Params, freeze_stages: int) -> optax.Params:
  """'head' for the classifier; 'frozen' for the stem and the first `freeze_stages` stages
  (none if negative); 'backbone' for the rest."""
  frozen = set()
  if freeze_stages >= 0:
    frozen = {network.STEM_CONV, network.STEM_BN}
    frozen |= {network.stage_name(i) for i in range(freeze_stages)}

  def group(path, _):
    top = str(getattr(path[0], 'key', path[0]))
    if top == network.HEAD:
      return HEAD
    return FROZEN if top in frozen else BACKBONE

  return jax.tree_util.tree_map_with_path(group, params)


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`optim.create_optimizer`, with the frozen parts not updated and the backbone's updates
  scaled by `config.backbone_lr_scale` (the same as scaling its learning rate, weight decay
  and momentum included). Without either it is `optim.create_optimizer` itself, so that runs
  that fine-tune nothing keep their optimizer state."""
  if config.freeze_stages < 0 and config.backbone_lr_scale == 1:
    return optim.create_optimizer(config)
  base = optim.create_optimizer(config)
  backbone = optax.chain(base, optax.scale(config.backbone_lr_scale))
  return optax.multi_transform(
    {HEAD: base, BACKBONE: backbone, FROZEN: optax.set_to_zero()},
    lambda params: parameter_groups(params, config.freeze_stages),
  )
