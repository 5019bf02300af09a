"""Sweep files expand into valid, uniquely named runs; a rerun trains only the missing points."""

import dataclasses
import glob
import json
import os
import shlex
import subprocess
import sys

import pytest

from resnet_jax import sweep, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Shipped sweep -> number of points.
SHIPPED = {
  'digits_ablation': 3 * 2 * 3,  # families x depths x seeds
  'cifar10_shortcuts': 2 * 3 * 3,  # depths x options x seeds
  'degradation_digits': 3 * 2 * 3,  # depths x plain/ResNet x seeds
  'recipes_digits': 8 * 2 * 3,  # option sets x models x seeds
  'recipes_imagenet': 3 * 2 * 3,  # recipes x models x seeds
  # The paper sweeps; tests/test_paper_sweeps.py checks their recipes and networks.
  'he2015_table2_plain_vs_resnet_imagenet': 4,
  'he2015_fig6_cifar_plain_vs_resnet': 2 * 5,  # plain and ResNet x depths
  'he2015_table3_shortcuts': 7,
  'he2015_table4_multiscale': 5,
  'he2015_table6_cifar_depths': 4 + 5 + 1,  # one run per depth, 5 at 110 layers
  'he2016_table1_shortcuts': 16 * 5,  # shortcuts (b_g = 0 ... -5 one each) x seeds
  'he2016_table2_activations': 2 * 5 * 5,  # depths x units x seeds
  'he2016_table3_cifar': 6 * 2 * 5,  # networks x units x seeds
  'he2016_table4_cifar_batch64': 5 * 5,  # networks x seeds
  'he2016_table5_imagenet_320': 2 * 2,  # depths x units
  'he2016_sec5_imagenet_bn_after_addition': 2,
  'duta2020_imagenet': 3 * 4,  # families x depths
  'duta2020_imagenet_deep': 2,
  'duta2020_resgroup_imagenet': 4 * 3,  # families x depths
  'duta2020_cifar_depths': 3 * 4 * 3 + 3 * 2,  # 3 seeds up to 1001 layers, 1 at 1202 and 3002
  'duta2020_cifar100_depths': 3 * 4 * 3 + 3 * 2,
}


def write_sweep(tmp_path, body: str) -> str:
  path = tmp_path / 'sweep_file.py'
  path.write_text(
    f'from resnet_jax.sweep import axis, product, zipit\n\n\ndef get_sweep():\n{body}'
  )
  return str(path)


def test_product_and_zipit():
  points = sweep.product(
    sweep.zipit(sweep.axis('model', ['a1', 'b1']), sweep.axis('learning_rate', [0.1, 0.2])),
    sweep.axis('seed', [0, 1, 2]),
  )
  assert len(points) == 6
  assert points[0] == {'model': 'a1', 'learning_rate': 0.1, 'seed': 0}
  assert points[4] == {'model': 'b1', 'learning_rate': 0.2, 'seed': 1}
  with pytest.raises(sweep.SweepError, match='equal length'):
    sweep.zipit(sweep.axis('model', ['a1', 'b1']), sweep.axis('seed', [0]))
  with pytest.raises(sweep.SweepError, match="'seed' twice"):
    sweep.product(sweep.axis('seed', [0]), sweep.axis('seed', [1]))


def test_point_name():
  overrides = {'model': 'cifar_resnet56', 'model_kwargs.shortcut': 'B', 'lr_decay_at': (3, 4)}
  assert (
    sweep.point_name(overrides) == 'model=cifar_resnet56-model_kwargs.shortcut=B-lr_decay_at=3_4'
  )
  assert sweep.point_name({'data_dir': '/a b/c'}) == 'data_dir=_a_b_c'


def test_every_shipped_sweep_is_tested():
  shipped = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'experiments', '*.py'))}
  assert shipped == set(SHIPPED)


@pytest.mark.parametrize('name', sorted(SHIPPED))
def test_shipped_sweep_expands(name, monkeypatch, tmp_path):
  monkeypatch.chdir(REPO)
  points = sweep.expand(f'experiments/{name}.py', str(tmp_path))
  assert len(points) == SHIPPED[name]
  assert len({p.name for p in points}) == len(points)
  assert len({p.workdir for p in points}) == len(points)
  for point in points:
    for field, value in point.overrides.items():
      node = point.config
      for key in field.split('.'):
        node = node[key]
      assert node == value, (point.name, field)
    train.create_model(point.config)  # Raises for a name, depth or option the zoo lacks.


@pytest.mark.slow
def test_unknown_field_is_rejected_by_name(monkeypatch, tmp_path):
  monkeypatch.chdir(REPO)
  path = write_sweep(
    tmp_path,
    "  return {'config': 'configs/quickstart.py', "
    "'points': product(axis('seed', [0]), axis('weight_decy', [1e-4]))}\n",
  )
  with pytest.raises(sweep.SweepError, match="unknown config field 'weight_decy'"):
    sweep.expand(path, str(tmp_path / 'runs'))
  # From the command line: a one-paragraph error and nothing created.
  result = subprocess.run(
    [sys.executable, '-m', 'resnet_jax.sweep', f'--sweep={path}', f'--workdir={tmp_path}/runs'],
    capture_output=True,
    text=True,
    check=False,
  )
  assert result.returncode == 1
  assert "unknown config field 'weight_decy'" in result.stderr
  assert 'Traceback' not in result.stderr
  assert not os.path.exists(tmp_path / 'runs')


def test_a_point_may_name_its_own_config_file(monkeypatch, tmp_path):
  """Recipes compared in one sweep: each point's command and config come from its own file."""
  monkeypatch.chdir(REPO)
  path = write_sweep(
    tmp_path,
    "  return {'config': 'configs/quickstart.py', 'fixed': {'num_train_steps': 7}, "
    "'points': product(axis('config', ['configs/quickstart.py', 'configs/cifar10_resnet20.py']),"
    " axis('seed', [0]))}\n",
  )
  first, second = sweep.expand(path, str(tmp_path / 'runs'))
  assert first.name == 'config=configs_quickstart.py-seed=0'
  assert second.name == 'config=configs_cifar10_resnet20.py-seed=0'
  assert second.command()[3] == '--config=configs/cifar10_resnet20.py'
  assert not any(a.startswith('--config.config') for a in second.command())
  assert (first.config.dataset, second.config.dataset) == ('digits', 'cifar10')
  assert first.config.num_train_steps == second.config.num_train_steps == 7


def test_bad_value_and_unknown_model_are_rejected(monkeypatch, tmp_path):
  monkeypatch.chdir(REPO)
  path = write_sweep(
    tmp_path, "  return {'config': 'configs/quickstart.py', 'points': axis('depth', ['deep'])}\n"
  )
  with pytest.raises(sweep.SweepError, match='depth'):
    sweep.expand(path, str(tmp_path))
  path = write_sweep(
    tmp_path,
    "  return {'config': 'configs/quickstart.py', 'points': axis('model', ['cifar_resnot20'])}\n",
  )
  with pytest.raises(sweep.SweepError, match='cifar_resnot20'):
    sweep.expand(path, str(tmp_path))


@pytest.mark.slow
def test_dry_run_prints_main_commands(monkeypatch, tmp_path):
  monkeypatch.chdir(REPO)
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'resnet_jax.sweep',
      '--sweep=experiments/cifar10_shortcuts.py',
      f'--workdir={tmp_path}',
      '--dry_run',
    ],
    capture_output=True,
    text=True,
    check=True,
  )
  lines = result.stdout.splitlines()
  points = sweep.expand('experiments/cifar10_shortcuts.py', str(tmp_path))
  assert len(lines) == len(points)
  for line, point in zip(lines, points, strict=True):
    command = shlex.split(line)
    assert command[:3] == ['python', '-m', 'resnet_jax.main']
    # The printed arguments give main exactly the point's config.
    assert sweep.resolve_config(command[3:]) == point.config
  assert not os.listdir(tmp_path)  # A dry run creates nothing.


@pytest.fixture
def four_points(monkeypatch, tmp_path):
  monkeypatch.chdir(REPO)
  path = write_sweep(
    tmp_path,
    "  return {'config': 'configs/quickstart.py', 'fixed': {'num_train_steps': 7},\n"
    "          'points': product(axis('model', ['cifar_resnet20', 'cifar_iresnet20']),\n"
    "                            axis('seed', [0, 1]))}\n",
  )
  return sweep.expand(path, str(tmp_path / 'runs'))


def fake_finish(point):
  """What a finished `resnet_jax.main` leaves behind, as far as the sweep looks."""
  os.makedirs(point.workdir, exist_ok=True)
  summary = {'config': json.loads(point.config.to_json()), 'eval': {'top1': 0.5}}
  with open(os.path.join(point.workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f)


def test_rerun_trains_only_missing_points(four_points, monkeypatch):
  assert [p.name for p in four_points][:2] == [
    'model=cifar_resnet20-seed=0',
    'model=cifar_resnet20-seed=1',
  ]
  assert all(p.overrides['num_train_steps'] == 7 for p in four_points)
  fake_finish(four_points[0])
  fake_finish(four_points[3])
  os.makedirs(os.path.join(four_points[1].workdir, 'checkpoints'))  # Interrupted.
  launched = []

  def fake_run(point, env):
    launched.append(point.name)
    fake_finish(point)
    return 0

  monkeypatch.setattr(sweep, '_run_logged', fake_run)
  assert sweep.run_points(four_points, parallel=2) == []
  assert sorted(launched) == sorted([four_points[1].name, four_points[2].name])
  launched.clear()
  assert sweep.run_points(four_points, parallel=1) == []
  assert launched == []


def test_failed_points_are_reported_and_others_run(four_points, monkeypatch):
  monkeypatch.setattr(sweep, '_run_logged', lambda point, env: 1 if '-seed=0' in point.name else 0)
  for point in four_points:
    os.makedirs(point.workdir)
    with open(os.path.join(point.workdir, 'log.txt'), 'w') as f:
      f.write('error: something broke\n')
  failed = sweep.run_points(four_points, parallel=1)
  # seed=1 points exit 0 without a summary.json (e.g. stopped early): failures too.
  assert sorted(p.name for p in failed) == sorted(p.name for p in four_points)


def test_finished_point_with_another_config_is_refused(four_points):
  fake_finish(four_points[0])
  changed = dataclasses.replace(
    four_points[0], config=four_points[0].config.copy_and_resolve_references()
  )
  changed.config.num_train_steps = 8
  with pytest.raises(sweep.SweepError, match='num_train_steps'):
    sweep.check_finished_config(changed)


def test_device_groups(monkeypatch):
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0,1,2,3,4,5,6,7')
  assert sweep.device_groups(2) == [
    {'CUDA_VISIBLE_DEVICES': '0,1,2,3'},
    {'CUDA_VISIBLE_DEVICES': '4,5,6,7'},
  ]
  assert sweep.device_groups(3)[2] == {'CUDA_VISIBLE_DEVICES': '4,5'}
  with pytest.raises(sweep.SweepError, match='--parallel=9 needs at least 9 GPUs'):
    sweep.device_groups(9)
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')  # No GPU: concurrent processes on the CPU.
  assert sweep.device_groups(2) == [{}, {}]
