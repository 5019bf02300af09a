"""Config fields by dotted name, and model options given on the command line."""

import json

import ml_collections
import pytest

from conftest import REPO, run_main
from resnet_jax import errors, fields, sweep


def _config(*overrides, config='configs/quickstart.py'):
  return sweep.resolve_config([f'--config={REPO}/{config}', '--workdir=/tmp/w', *overrides])


def test_flatten_names_fields_as_overrides_do():
  config = ml_collections.ConfigDict({'a': 1, 'model_kwargs': {'shortcut': 'B', 'x': {'y': 2}}})
  expected = {'a': 1, 'model_kwargs.shortcut': 'B', 'model_kwargs.x.y': 2}
  assert fields.flatten(config) == fields.flatten(config.to_dict()) == expected


def test_any_option_of_the_model_is_accepted():
  config = _config('--config.model=cifar_resnet56', '--config.model_kwargs.dropout_rate=0.2')
  assert config.model_kwargs.to_dict() == {'dropout_rate': 0.2}
  config = _config('--config.model_kwargs.remat=True', '--config.model_kwargs.shortcut=B')
  assert config.model_kwargs.to_dict() == {'remat': True, 'shortcut': 'B'}


def test_an_option_the_config_file_sets_is_overridden():
  config = _config('--config.model_kwargs.shortcut=B', config='configs/cifar10_resnet20.py')
  assert config.model_kwargs.shortcut == 'B'


def test_an_option_the_model_lacks_lists_those_it_takes():
  with pytest.raises(errors.ConfigError) as error:
    _config('--config.model=cifar_iresnet56', '--config.model_kwargs.dropot_rate=0.2')
  message = str(error.value)
  assert message.startswith(
    '--config.model_kwargs.dropot_rate: cifar_iresnet56 has no option dropot_rate. '
    'Its options: base_width, block, '
  )
  assert 'dropout_rate' in message and '\n' not in message
  with pytest.raises(errors.ConfigError, match='fields of their own: num_classes'):
    _config('--config.model_kwargs.num_classes=5')


@pytest.mark.slow
def test_main_trains_with_a_model_option(tmp_path):
  run_main(tmp_path, '--config.model_kwargs.dropout_rate=0.2', '--config.num_train_steps=2')
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['config']['model_kwargs'] == {'dropout_rate': 0.2}
  result = run_main(tmp_path / 'typo', '--config.model_kwargs.dropot_rate=0.2', check=False)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  [line] = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert line.startswith('error: --config.model_kwargs.dropot_rate: cifar_resnet8 has no option')


def test_a_sweep_varies_any_option_of_its_model(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)
  path = tmp_path / 'sweep.py'
  for option, values in (('dropout_rate', [0.1, 0.2]), ('dropot_rate', [0.1])):
    path.write_text(
      'from resnet_jax.sweep import axis\n\n\ndef get_sweep():\n'
      f"  return {{'config': 'configs/quickstart.py', 'points': axis('model_kwargs.{option}', "
      f'{values})}}\n'
    )
    if option == 'dropout_rate':
      points = sweep.expand(str(path), str(tmp_path / 'runs'))
      assert [p.config.model_kwargs.dropout_rate for p in points] == values
    else:
      with pytest.raises(sweep.SweepError, match='has no option dropot_rate. Its options: '):
        sweep.expand(str(path), str(tmp_path / 'runs'))
