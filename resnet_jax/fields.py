"""Config fields by their dotted names (`model_kwargs.shortcut`), as `--config.FIELD=` names them.

Light on purpose: main, sweeps and reports use it before (or without) loading JAX.
"""

import ast
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from resnet_jax import errors

_MODEL_KWARGS = '--config.model_kwargs.'

# Options of a model that other fields set (config.num_classes, config.dtype, config.depth).
_SET_ELSEWHERE = ('num_classes', 'dtype', 'depth')


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}, for configs as dicts (summary.json) or ConfigDicts."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping | ml_collections.ConfigDict):
      flat |= flatten(value, f'{prefix}{key}.')
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def split_model_kwargs(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
  """(the other arguments, {option: text}) of `--config.model_kwargs.OPTION=TEXT` arguments.

  A model's options are checked against the model (`set_model_kwargs`), not against the config
  file: `model_kwargs` holds only what a config file sets, and any option of the chosen model
  may be given.
  """
  rest, options = [], {}
  for arg in argv:
    name, has_value, text = arg.removeprefix(_MODEL_KWARGS).partition('=')
    if arg.startswith(_MODEL_KWARGS) and has_value and '.' not in name:
      options[name] = text
    else:
      rest.append(arg)
  return rest, options


def _parse(text: str, current: Any) -> Any:
  """A Python literal ('0.2', 'True', '(1, 2)'); anything else, or a text field, as text."""
  if isinstance(current, str):
    return text
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def set_model_kwargs(config: ml_collections.ConfigDict, options: Mapping[str, str]) -> None:
  """Sets `config.model_kwargs.OPTION` for each option; raises ConfigError for one that
  `config.model` does not take, listing those it does."""
  if not options:
    return
  from resnet_jax import models  # Imported here: JAX, only when a model option is given.

  valid = [o for o in models.model_options(config.model) if o not in _SET_ELSEWHERE]
  unknown = sorted(set(options) - set(valid))
  if unknown:
    raise errors.ConfigError(
      f'--config.model_kwargs.{unknown[0]}: {config.model} has no option '
      f'{", ".join(unknown)}. Its options: {", ".join(valid)}. Options set by fields of their '
      f'own: {", ".join(_SET_ELSEWHERE)} (--config.num_classes, --config.dtype, --config.depth).'
    )
  with config.unlocked():
    for name, text in options.items():
      value = _parse(text, config.model_kwargs.get(name))
      try:
        config.model_kwargs[name] = value
      except TypeError as error:
        raise errors.ConfigError(f'--config.model_kwargs.{name}={text}: {error}.') from None
