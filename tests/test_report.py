"""The report turns finished runs into a CSV, a table per variant (mean ± std, median, and the
statistic the sweep's paper reports), and plots."""

import csv
import json
import os
import sys

import jax
import pytest

from configs import quickstart
from resnet_jax import report, sweep, train


def write_run(
  workdir, name, model, seed, test_top1, steps=(50, 100), train_top1=None, **config_fields
):
  """A finished run as `resnet_jax.main` leaves it: summary.json and metrics.jsonl.

  `train_top1`: the training accuracy of each log window (one per step), 0.5 if not given.
  """
  config = quickstart.get_config()
  config.model, config.seed = model, seed
  for field, value in config_fields.items():
    config[field] = value
  run_dir = os.path.join(workdir, name)
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, 'metrics.jsonl'), 'w') as f:
    for step, top1 in zip(steps, train_top1 or [0.5] * len(steps), strict=True):
      f.write(
        json.dumps({'step': step, 'train_loss': 1.0, 'train_top1': top1, 'learning_rate': 0.1})
      )
      f.write(
        '\n' + json.dumps({'step': step, 'eval_loss': 1.0, 'eval_top1': 0.1, 'eval_top5': 0.5})
      )
      f.write('\n')
    # A resumed run logs its last step again; the later value counts.
    f.write(json.dumps({'step': steps[-1], 'eval_top1': test_top1, 'eval_top5': 1.0}) + '\n')
  summary = {
    'model': model,
    'dataset': config.dataset,
    'config': config.to_dict(),
    'step': steps[-1],
    'num_train_steps': steps[-1],
    'num_params': 1000,
    'input_shape': [config.image_size, config.image_size, 1],
    'eval': {'loss': 0.5, 'top1': test_top1, 'top5': 1.0},
    'wall_time_s': 60.0,
  }
  with open(os.path.join(run_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f)


@pytest.fixture
def runs_dir(tmp_path):
  """Two families at two depths, three seeds each, and one unfinished run."""
  for model, accuracies in {
    'cifar_resnet20': (0.90, 0.88, 0.86),
    'cifar_iresnet20': (0.92, 0.92, 0.92),
    'cifar_resnet56': (0.91, 0.89, 0.87),
    'cifar_iresnet56': (0.95, 0.94, 0.93),
  }.items():
    for seed, accuracy in enumerate(accuracies):
      write_run(tmp_path, f'model={model}-seed={seed}', model, seed, accuracy)
  os.makedirs(tmp_path / 'model=cifar_resnet20-seed=3')
  (tmp_path / 'model=cifar_resnet20-seed=3' / 'metrics.jsonl').write_text('{"step": 10}\n')
  return tmp_path


def test_table_csv_and_plots(runs_dir, capsys):
  written = report.write_report(str(runs_dir))
  assert sorted(os.path.basename(p) for p in written) == [
    'curves.png',
    'depth.png',
    'results.csv',
    'results.md',
  ]
  for path in written[2:]:
    with open(path, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert os.path.getsize(path) > 10_000

  with open(runs_dir / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 12
  row = next(r for r in rows if r['name'] == 'model=cifar_resnet56-seed=2')
  assert row['model'] == 'cifar_resnet56'
  assert row['seed'] == '2'
  assert float(row['top1_error']) == pytest.approx(13.0)
  # He 2015's 6n+2 network, n = 9, on 8x8x1 digits: 3x3 convolutions at 8², 4², 2² positions
  # (each later stage opens with a strided one) and the 64 x 10 classifier; at 32x32x3 the same
  # count gives the 125.5M usually quoted for ResNet-56.
  assert int(row['macs']) == (
    8**2 * 16 * 9
    + 18 * 8**2 * 16 * 16 * 9
    + (4**2 * 32 * 16 * 9 + 17 * 4**2 * 32 * 32 * 9)
    + (2**2 * 64 * 32 * 9 + 17 * 2**2 * 64 * 64 * 9)
    + 64 * 10
  )

  table = (runs_dir / 'results.md').read_text()
  lines = [line for line in table.splitlines() if line.startswith('| cifar_')]
  # Sorted by depth, then name; mean ± sample std of the error over 3 seeds.
  assert [line.split(' | ')[0] for line in lines] == [
    '| cifar_iresnet20',
    '| cifar_resnet20',
    '| cifar_iresnet56',
    '| cifar_resnet56',
  ]
  assert '| 3 | 12.00 ± 2.00 |' in lines[1]
  assert '| 3 | 8.00 ± 0.00 |' in lines[0]
  assert '| 3 | 6.00 ± 1.00 |' in lines[2]
  assert 'top-5' not in table  # 10 classes: top-5 error says nothing.
  assert 'Not finished, left out: model=cifar_resnet20-seed=3' in table
  assert 'unfinished' in capsys.readouterr().out


def test_varied_fields_become_columns(tmp_path):
  for shortcut, accuracy in (('A', 0.9), ('B', 0.8)):
    for seed in (0, 1):
      write_run(
        tmp_path,
        f'shortcut={shortcut}-seed={seed}',
        'cifar_resnet20',
        seed,
        accuracy,
        model_kwargs={'shortcut': shortcut},
      )
  written = report.write_report(str(tmp_path))
  assert not any(p.endswith('depth.png') for p in written)  # One depth: no depth plot.
  assert any(p.endswith('variants.png') for p in written)  # Options vary: their spread.
  table = (tmp_path / 'results.md').read_text()
  assert table.splitlines()[0].startswith('| model | model_kwargs.shortcut | params |')
  assert '| cifar_resnet20 | A |' in table and '| 10.00 ± 0.00 |' in table
  assert '| cifar_resnet20 | B |' in table and '| 20.00 ± 0.00 |' in table


def test_a_recipe_stands_for_the_fields_it_sets(tmp_path):
  """Runs of two recipes differ in many fields; the table lists the recipe and, beside it, only
  a field that also varies within a recipe."""
  recipes = {
    'old': {'learning_rate': 0.1, 'weight_decay': 1e-4},
    'new': {'learning_rate': 0.5, 'weight_decay': 2e-5},
  }
  for recipe, fields in recipes.items():
    for batch_size in (32, 64):
      write_run(
        tmp_path,
        f'recipe={recipe}-batch_size={batch_size}',
        'cifar_resnet20',
        0,
        0.9,
        recipe=recipe,
        batch_size=batch_size,
        **fields,
      )
  runs, _ = report.load_runs(str(tmp_path))
  assert report.varied_fields(runs) == ['batch_size', 'recipe']
  for run in runs:
    run['flat_config']['recipe'] = ''
  assert report.varied_fields(runs) == ['batch_size', 'learning_rate', 'weight_decay']


def test_the_moving_average_has_its_own_column(tmp_path):
  """Runs that keep an EMA of the weights show its error beside the weights'; others none."""
  for ema, seed in ((0.0, 0), (0.99, 0), (0.99, 1)):
    name = f'ema_decay={ema}-seed={seed}'
    write_run(tmp_path, name, 'cifar_resnet20', seed, 0.9, ema_decay=ema)
    if ema:
      summary_path = tmp_path / name / 'summary.json'
      summary = json.loads(summary_path.read_text())
      summary['ema_eval'] = {'loss': 0.4, 'top1': 0.95 - 0.01 * seed, 'top5': 1.0}
      summary_path.write_text(json.dumps(summary))
  report.write_report(str(tmp_path))
  table = (tmp_path / 'results.md').read_text()
  assert 'EMA top-1 error (%)' in table.splitlines()[0]
  last_cell = [line.split('|')[-2].strip() for line in table.splitlines()[2:4]]
  assert last_cell == ['', '5.50 ± 0.71']  # The run without an average has none.
  rows = list(csv.DictReader(open(tmp_path / 'results.csv')))
  assert rows[0]['ema_top1_error'] == ''
  assert [round(float(r['ema_top1_error']), 6) for r in rows[1:]] == [5.0, 6.0]


def test_train_error_is_the_last_log_window(tmp_path):
  """He 2015's degradation is a training error: the table shows the last window's, per seed."""
  for seed, last in enumerate((0.9, 0.8)):
    name = f'seed={seed}'
    write_run(tmp_path, name, 'cifar_plain20', seed, 0.9, train_top1=(0.1, last))
  report.write_report(str(tmp_path), plots=False)
  table = (tmp_path / 'results.md').read_text()
  assert table.splitlines()[0].endswith('| top-1 error (%) | median | train error (%) |')
  assert '| 10.00 ± 0.00 | 10.00 | 15.00 ± 7.07 |' in table
  assert 'training error over the last log window' in table
  with open(tmp_path / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert [float(row['train_error']) for row in rows] == pytest.approx([10.0, 20.0])


def write_seeds(workdir, variant, errors):
  """A variant of cifar_resnet20 (`shortcut` of `variant`) with these test errors (%)."""
  for seed, error in enumerate(errors):
    write_run(
      workdir,
      f'shortcut={variant}-seed={seed}',
      'cifar_resnet20',
      seed,
      1 - error / 100,
      model_kwargs={'shortcut': variant},
    )


def test_median_and_the_papers_statistic(tmp_path):
  """He 2016 reports the median of 5 runs with mean ± std, He 2015 Table 6 the best; He 2016
  Table 1 reports 'fail' above 20% error."""
  write_seeds(tmp_path, 'A', (6.0, 7.0, 6.5, 9.0, 6.0))
  write_seeds(tmp_path, 'B', (88.0, 90.0, 19.0, 90.0, 90.0))
  report.write_report(str(tmp_path), plots=False)
  table = (tmp_path / 'results.md').read_text()
  assert '| top-1 error (%) | median |' in table
  assert '| 5 | 6.90 ± 1.24 | 6.50 |' in table  # mean ± std, then median
  report.write_report(str(tmp_path), plots=False, statistic='median', fail_above=20.0)
  table = (tmp_path / 'results.md').read_text()
  assert '| top-1 error (%) | median (paper) |' in table
  assert '| 5 | 6.90 ± 1.24 | 6.50 |' in table
  assert '| 5 | 75.40 ± 31.54 | fail (90.00) |' in table
  assert "'fail' above 20% error" in table
  report.write_report(str(tmp_path), plots=False, statistic='best')
  table = (tmp_path / 'results.md').read_text()
  assert '| top-1 error (%) | median | best (paper) |' in table
  assert '| 5 | 6.90 ± 1.24 | 6.50 | 6.00 |' in table
  assert '| 5 | 75.40 ± 31.54 | 90.00 | 19.00 |' in table
  with pytest.raises(report.ReportError, match="STATISTIC='average' is not one of"):
    report.write_report(str(tmp_path), plots=False, statistic='average')


def test_sweep_files_declare_their_papers_statistic():
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  statistic = lambda name: report.sweep_statistic(f'{repo}/experiments/{name}.py')  # noqa: E731
  assert statistic('he2016_table1_shortcuts') == ('median', 20.0)
  for name in ('he2016_table2_activations', 'he2016_table3_cifar'):
    assert statistic(name) == ('median', None)
  assert statistic('he2015_table6_cifar_depths') == ('best', None)
  assert statistic('digits_ablation') == ('mean', None)


def test_plots_without_matplotlib_fail_clearly(runs_dir, monkeypatch):
  monkeypatch.setitem(sys.modules, 'matplotlib', None)  # As if not installed.
  with pytest.raises(report.ReportError, match='--noplots'):
    report.write_report(str(runs_dir))
  written = report.write_report(str(runs_dir), plots=False)
  assert sorted(os.path.basename(p) for p in written) == ['results.csv', 'results.md']


def test_empty_workdir_fails_clearly(tmp_path):
  with pytest.raises(report.ReportError, match='No finished run'):
    report.write_report(str(tmp_path))


@pytest.fixture
def compilation_cache(tmp_path):
  """The second seed loads the first one's compiled steps, as under `resnet_jax.main`."""
  previous = jax.config.jax_compilation_cache_dir
  jax.config.update('jax_compilation_cache_dir', str(tmp_path / 'xla'))
  yield
  jax.config.update('jax_compilation_cache_dir', previous)


@pytest.mark.slow
def test_report_on_real_runs(tmp_path, monkeypatch, compilation_cache):
  """Two tiny real trainings through the sweep's own configs: the report reads what main writes."""
  monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  path = tmp_path / 'tiny.py'
  path.write_text(
    'from resnet_jax.sweep import axis\n\n\ndef get_sweep():\n'
    "  return {'config': 'configs/quickstart.py',\n"
    "          'fixed': {'model': 'cifar_resnet8', 'num_train_steps': 6, 'eval_every_steps': 3,\n"
    "                    'log_every_steps': 3, 'checkpoint_every_steps': 6},\n"
    "          'points': axis('seed', [0, 1])}\n"
  )
  for point in sweep.expand(str(path), str(tmp_path / 'runs')):
    train.train_and_evaluate(point.config, point.workdir)
  report.write_report(str(tmp_path / 'runs'))
  with open(tmp_path / 'runs' / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['seed'] for r in rows] == ['0', '1']
  assert all(0 <= float(r['top1_error']) <= 100 for r in rows)
  table = (tmp_path / 'runs' / 'results.md').read_text()
  assert '| cifar_resnet8 |' in table and '| 2 |' in table
  assert os.path.getsize(tmp_path / 'runs' / 'curves.png') > 10_000


def test_macs_are_counted_from_the_registry_without_train(monkeypatch):
  import resnet_jax
  from resnet_jax import models, summary

  monkeypatch.delattr(resnet_jax, 'train')
  monkeypatch.setitem(sys.modules, 'resnet_jax.train', None)  # Importing train now fails.
  config = quickstart.get_config().to_dict() | {'num_classes': 100}
  run = {'model': 'cifar_resnet20', 'config': config, 'input_shape': [32, 32, 3]}
  option_c = {**run, 'config': config | {'model_kwargs': {'shortcut': 'C'}}}
  expected = [
    summary.count_macs(models.create_model('cifar_resnet20', num_classes=100, **kwargs), 32)
    for kwargs in ({}, {'shortcut': 'C'})
  ]
  assert [report.count_macs(run), report.count_macs(option_c)] == expected
  assert expected[0] < expected[1]  # Option C's projections add MACs.
