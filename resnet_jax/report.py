r"""Tables and plots of a sweep: one row per variant, mean ± std and median over seeds.

Reads the summary.json and metrics.jsonl of every run under --workdir (the sub-workdirs of
`resnet_jax.sweep`, or any runs of `resnet_jax.main` side by side; a local directory or a
bucket, e.g. gs://bucket/sweep) and writes there:

  results.csv   one row per run: the varied config fields, seed, params, MACs, final metrics
  results.md    Markdown table, one row per variant (runs that differ only in the seed): test
                error (mean ± std and median; the best too where the sweep's paper reports
                it), and the training error of the last log window, which is what He 2015's
                degradation plots (Fig. 1, 4, 6) compare
  curves.png    test error (bold) and training error (thin) against steps, per variant
  variants.png  final test error of each variant, seeds and mean (when options vary)
  depth.png     final test error against depth, per model family (when depth varies)

and with --responses, He 2015's Fig. 7 (see `resnet_jax.responses`) from each run's newest
checkpoint, on the first --response_images images of its evaluation split:

  responses.csv one row per run and layer: the std of that layer's response
  responses.png the stds by layer index, and sorted in descending order; plain nets dashed

With --sweep, the sweep file says which statistic its paper reports, by two module-level
fields: `STATISTIC`, 'mean' (the default), 'median' (He 2016: "the median of 5 runs with
mean±std") or 'best' (He 2015 Table 6: "best (mean±std)"), which the table marks as the paper's;
and `FAIL_ABOVE`, a test error (%) above which that statistic is shown as 'fail' (He 2016
Table 1: "We report 'fail' when the test error is higher than 20%").

The plots need matplotlib (`pip install -r requirements-dev.txt`); --noplots writes the CSV
and table only.

  python -m resnet_jax.report --workdir=/tmp/digits
  python -m resnet_jax.report --workdir=/tmp/t1 --sweep=experiments/he2016_table1_shortcuts.py
  python -m resnet_jax.report --workdir=/tmp/fig6 --responses
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from absl import app, flags
from etils import epath

from resnet_jax.fields import flatten


class ReportError(Exception):
  """Nothing to report, or plots asked for without matplotlib; the message says what to do."""


# Statistics of the test error over a variant's seeds that a sweep's paper may report.
STATISTICS = ('mean', 'median', 'best')

# Fields that never make two runs different variants: the seed is what the mean is taken over,
# and model/depth are shown through the resolved model name.
_NOT_VARIANT_FIELDS = ('seed', 'model', 'depth')


def _read_metrics(path: epath.Path) -> dict[int, dict[str, float]]:
  """metrics.jsonl as {step: {name: value}}; a resumed run's repeated steps keep the last value."""
  by_step = {}
  if path.exists():
    for line in path.read_text().splitlines():
      if line.strip():
        record = json.loads(line)
        by_step.setdefault(record.pop('step'), {}).update(record)
  return by_step


def load_runs(workdir: str) -> tuple[list[dict[str, Any]], list[str]]:
  """Finished runs (sub-directories with a summary.json) and the names of unfinished ones."""
  root = epath.Path(workdir)
  if not root.is_dir():
    raise ReportError(f'--workdir={workdir} is not a directory.')
  runs, unfinished = [], []
  for run_dir in sorted(root.iterdir()):
    if not run_dir.is_dir():
      continue
    if (run_dir / 'summary.json').exists():
      summary = json.loads((run_dir / 'summary.json').read_text())
      summary['name'] = run_dir.name
      summary['flat_config'] = flatten(summary['config'])
      summary['metrics'] = _read_metrics(run_dir / 'metrics.jsonl')
      runs.append(summary)
    elif (run_dir / 'metrics.jsonl').exists():
      unfinished.append(run_dir.name)
  return runs, unfinished


def _varies(runs: Sequence[dict[str, Any]], field: str) -> bool:
  return len({json.dumps(run['flat_config'].get(field)) for run in runs}) > 1


def varied_fields(runs: Sequence[dict[str, Any]]) -> list[str]:
  """Config fields whose value differs between runs, other than seed, model and depth.

  Where runs differ in `recipe`, the fields each recipe sets are left to its name: only those
  that also vary within one recipe are listed beside it."""
  fields = sorted({k for run in runs for k in run['flat_config']})
  varied = [f for f in fields if f not in _NOT_VARIANT_FIELDS and _varies(runs, f)]
  if 'recipe' not in varied:
    return varied
  recipes = {}
  for run in runs:
    recipes.setdefault(run['flat_config'].get('recipe'), []).append(run)
  return [
    f for f in varied if f == 'recipe' or any(_varies(group, f) for group in recipes.values())
  ]


def model_depth(model: str) -> int:
  """The depth of a registry name: 'cifar_iresnet56' -> 56."""
  from resnet_jax.models import parse_name  # Imported here: JAX.

  return parse_name(model)[1]


def model_family(model: str) -> str:
  """The family of a registry name: 'cifar_iresnet56' -> 'cifar_iresnet'."""
  from resnet_jax.models import parse_name  # Imported here: JAX.

  return parse_name(model)[0]


def count_macs(run: dict[str, Any]) -> int:
  """Multiply-accumulates of one forward pass of one image, by `resnet_jax.summary`."""
  from resnet_jax import models, summary  # Imported here: JAX.

  size, _, channels = run['input_shape']
  config = run['config']
  model = models.create_model(
    run['model'], num_classes=config['num_classes'], **config['model_kwargs']
  )
  return summary.count_macs(model, size, channels)


def group_variants(
  runs: Sequence[dict[str, Any]], fields: Sequence[str]
) -> list[tuple[tuple, list[dict[str, Any]]]]:
  """Runs grouped by (model, varied fields), sorted by depth then model, in a stable order."""
  groups = {}
  for run in runs:
    key = (run['model'], *(json.dumps(run['flat_config'].get(f)) for f in fields))
    groups.setdefault(key, []).append(run)
  return sorted(groups.items(), key=lambda kv: (model_depth(kv[0][0]), kv[0]))


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _pm(values: Sequence[float]) -> str:
  mean, std = _mean_std(values)
  return f'{mean:.2f}' if std is None else f'{mean:.2f} ± {std:.2f}'


def check_statistic(statistic: str, fail_above: float | None) -> None:
  if statistic not in STATISTICS:
    raise ReportError(
      f'STATISTIC={statistic!r} is not one of {", ".join(map(repr, STATISTICS))}: the statistic '
      "of the test error over seeds that the sweep's paper reports."
    )
  if fail_above is not None and not 0 < fail_above <= 100:
    raise ReportError(f'FAIL_ABOVE={fail_above!r} must be a test error in (0, 100] percent.')


def sweep_statistic(path: str) -> tuple[str, float | None]:
  """(STATISTIC, FAIL_ABOVE) of a sweep file: what its paper reports, and its 'fail' threshold."""
  from resnet_jax import sweep  # Imported here: JAX.

  module = sweep._load_python_file(path, 'sweep_file')
  statistic, fail_above = getattr(module, 'STATISTIC', 'mean'), getattr(module, 'FAIL_ABOVE', None)
  check_statistic(statistic, fail_above)
  return statistic, fail_above


def _reported(text: str, value: float, fail_above: float | None) -> str:
  """`text`, or 'fail (text)' where `value` is above the paper's threshold."""
  return f'fail ({text})' if fail_above is not None and value > fail_above else text


def _si(count: float) -> str:
  for unit, scale in (('G', 1e9), ('M', 1e6), ('K', 1e3)):
    if count >= scale:
      return f'{count / scale:.3g}{unit}'
  return f'{count:.0f}'


def _error(run: dict[str, Any], metric: str = 'top1', weights: str = 'eval') -> float:
  """Test error (%) of the weights (`weights='eval'`) or of their moving average ('ema_eval')."""
  return 100 * (1 - run[weights][metric])


def ema_error(run: dict[str, Any]) -> float | None:
  """Top-1 error (%) of the moving average of the weights; None for a run that kept none."""
  return _error(run, 'top1', 'ema_eval') if 'ema_eval' in run else None


def train_error(run: dict[str, Any]) -> float | None:
  """Training error (%) of the last log window: train_top1 is a mean over the window's steps,
  so the last log step's value is the final training error that He 2015's Fig. 1, 4 and 6
  compare. None for a run that logged no training metrics (an evaluation-only run)."""
  steps = [step for step, m in run['metrics'].items() if 'train_top1' in m]
  return 100 * (1 - run['metrics'][max(steps)]['train_top1']) if steps else None


def write_csv(path: epath.Path, runs: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
  columns = ['name', 'model', 'dataset', *fields, 'seed', 'step', 'num_train_steps']
  columns += ['num_params', 'macs', 'eval_loss', 'top1_error', 'top5_error', 'train_error']
  columns += ['ema_top1_error']
  columns += ['wall_time_s']
  text = io.StringIO(newline='')
  writer = csv.DictWriter(text, columns)
  writer.writeheader()
  for run in runs:
    row = {f: run['flat_config'].get(f) for f in fields} | {
      'name': run['name'],
      'model': run['model'],
      'dataset': run['dataset'],
      'seed': run['flat_config']['seed'],
      'step': run['step'],
      'num_train_steps': run['num_train_steps'],
      'num_params': run['num_params'],
      'macs': run['macs'],
      'eval_loss': run['eval']['loss'],
      'top1_error': _error(run, 'top1'),
      'top5_error': _error(run, 'top5'),
      'train_error': train_error(run),
      'ema_top1_error': ema_error(run),
      'wall_time_s': run['wall_time_s'],
    }
    writer.writerow(row)
  path.write_text(text.getvalue())


def markdown_table(
  variants: Sequence[tuple[tuple, list[dict[str, Any]]]],
  fields: Sequence[str],
  statistic: str = 'mean',
  fail_above: float | None = None,
) -> str:
  """One row per variant; top-5 error is shown only for datasets of more than 10 classes.

  The top-1 error's mean ± std and median over seeds, and its best (lowest) if `statistic` is
  'best'; the column of `statistic` is marked as the paper's, and shows 'fail' above
  `fail_above` percent.
  """
  check_statistic(statistic, fail_above)
  runs = [run for _, group in variants for run in group]
  top5 = any(run['flat_config']['num_classes'] > 10 for run in runs)
  columns = ['top-1 error (%)', 'median'] + ['best'] * (statistic == 'best')
  marked = {'mean': 0, 'median': 1, 'best': 2}[statistic]
  if statistic != 'mean' or fail_above is not None:
    columns[marked] += ' (paper)'
  header = ['model', *fields, 'params', 'MACs', 'seeds', *columns]
  header += ['top-5 error (%)'] * top5
  train = all(train_error(run) is not None for run in runs)
  header += ['train error (%)'] * train
  ema = any(ema_error(run) is not None for run in runs)
  header += ['EMA top-1 error (%)'] * ema
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for key, group in variants:
    row = [key[0], *(str(group[0]['flat_config'].get(f)) for f in fields)]
    row += [_si(group[0]['num_params']), _si(group[0]['macs']), str(len(group))]
    errors = [_error(run, 'top1') for run in group]
    cells = [(_pm(errors), statistics.fmean(errors))]
    cells.append((f'{statistics.median(errors):.2f}', statistics.median(errors)))
    if statistic == 'best':
      cells.append((f'{min(errors):.2f}', min(errors)))
    cells[marked] = (_reported(*cells[marked], fail_above), cells[marked][1])
    row += [text for text, _ in cells]
    if top5:
      row.append(_pm([_error(run, 'top5') for run in group]))
    if train:
      row.append(_pm([train_error(run) for run in group]))
    if ema:
      averaged = [ema_error(run) for run in group if ema_error(run) is not None]
      row.append(_pm(averaged) if averaged else '')
    lines.append('| ' + ' | '.join(row) + ' |')
  datasets = sorted({run['dataset'] for run in runs})
  steps = sorted({run['step'] for run in runs})
  lines.append('')
  lines.append(
    f'{", ".join(datasets)}, {"/".join(map(str, steps))} steps; error on the '
    f'{runs[0]["flat_config"]["eval_split"]} split after the last step'
    + (', training error over the last log window' if train else '')
    + (', EMA: the moving average of the weights' if ema else '')
    + ', mean ± sample std, median'
    + ' and best (lowest)' * (statistic == 'best')
    + ' over seeds'
    + ("; (paper): the paper's statistic" if marked or fail_above is not None else '')
    + (f", 'fail' above {fail_above:g}% error" if fail_above is not None else '')
    + '; MACs of one forward pass of one image.'
  )
  return '\n'.join(lines) + '\n'


def _usual_values(variants: Sequence[tuple[tuple, list]]) -> tuple:
  """Each varied field's most frequent value among the variants (a sweep's baseline)."""
  columns = list(zip(*(key[1:] for key, _ in variants), strict=True))
  return tuple(max(column, key=column.count) for column in columns)


def _variant_label(key: tuple, fields: Sequence[str], usual: tuple | None = None) -> str:
  """The model and the fields of `key`; with `usual`, only those that differ from it."""
  values = zip(fields, key[1:], usual or (None,) * len(fields), strict=True)
  return ' '.join(
    [key[0]] + [f'{f.split(".")[-1]}={json.loads(v)}' for f, v, u in values if v != u]
  )


def _mean_curve(group: Sequence[dict[str, Any]], metric: str) -> tuple[list[int], list[float]]:
  """Mean error (%) over the runs at the steps where every run logged `metric`."""
  steps = set.intersection(
    *({s for s, m in run['metrics'].items() if metric in m} for run in group)
  )
  steps = sorted(steps)
  means = [statistics.fmean(100 * (1 - run['metrics'][s][metric]) for run in group) for s in steps]
  return steps, means


def _datasets(variants: Sequence[tuple[tuple, list]]) -> str:
  return ', '.join(sorted({run['dataset'] for _, group in variants for run in group}))


def plot_curves(
  path: epath.Path, variants: Sequence[tuple[tuple, list]], fields: Sequence[str]
) -> None:
  """Test error (bold) and training error (thin) against steps, as in He 2015's Fig. 6."""
  import matplotlib.pyplot as plt
  from matplotlib import ticker

  fig, ax = plt.subplots(figsize=(7, 4.5))
  usual = _usual_values(variants)
  for i, (key, group) in enumerate(variants):
    color = f'C{i % 10}'
    steps, train = _mean_curve(group, 'train_top1')
    ax.plot(steps, train, color=color, linewidth=0.8, alpha=0.6)
    steps, test = _mean_curve(group, 'eval_top1')
    ax.plot(steps, test, color=color, linewidth=2, label=_variant_label(key, fields, usual))
  ax.set_xlabel('training step')
  ax.set_ylabel('error (%)')
  # Log scale: the first steps (near 90% error) and the end (a few %) both stay readable.
  ax.set_yscale('log')
  ax.yaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
  ax.set_title(f'{_datasets(variants)}: test error (bold), training error (thin); mean over seeds')
  _save(fig, ax, path)


def _save(fig, ax, path: epath.Path) -> None:
  """Grid, legend and the PNG: the finish that every one-panel plot shares."""
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small')
  _write_png(fig, path)


def _write_png(fig, path: epath.Path) -> None:
  """The figure as a PNG at `path` (local or bucket), then closed."""
  import matplotlib.pyplot as plt

  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format='png', dpi=120)
  plt.close(fig)
  path.write_bytes(png.getvalue())


def plot_variants(
  path: epath.Path, variants: Sequence[tuple[tuple, list]], fields: Sequence[str]
) -> None:
  """Final test error of each variant: every seed a dot, the mean a bar, so that a difference
  can be read against the spread over seeds. Labels name what differs from the usual values."""
  import matplotlib.pyplot as plt

  usual = _usual_values(variants)
  fig, ax = plt.subplots(figsize=(10, 1.2 + 0.4 * len(variants)))
  for row, (_, group) in enumerate(variants):
    errors = [_error(run) for run in group]
    ax.plot(errors, [row] * len(errors), 'o', color='C0', alpha=0.6, markersize=4)
    ax.plot([statistics.fmean(errors)] * 2, [row - 0.3, row + 0.3], color='C3', linewidth=2)
  labels = [textwrap.fill(_variant_label(k, fields, usual), 60) for k, _ in variants]
  ax.set_yticks(range(len(variants)), labels)
  ax.tick_params(axis='y', labelsize='small')
  ax.invert_yaxis()
  ax.set_xlabel('test error (%): seeds (dots), mean (bar)')
  ax.set_title(f'{_datasets(variants)}: final test error of each variant')
  ax.grid(alpha=0.3, axis='x')
  _write_png(fig, path)


def plot_depth(
  path: epath.Path, variants: Sequence[tuple[tuple, list]], fields: Sequence[str]
) -> None:
  """Final test error against depth, one line per family, error bars of one std over seeds."""
  import matplotlib.pyplot as plt

  lines = {}
  for key, group in variants:
    line_key = (model_family(key[0]), *key[1:])
    lines.setdefault(line_key, []).append((model_depth(key[0]), [_error(r) for r in group]))
  fig, ax = plt.subplots(figsize=(6, 4))
  for line_key, points in lines.items():
    points.sort()
    depths = [d for d, _ in points]
    means, stds = zip(*(_mean_std(errors) for _, errors in points), strict=True)
    stds = [s or 0.0 for s in stds]
    label = _variant_label(line_key, fields)
    ax.errorbar(depths, means, yerr=stds, marker='o', capsize=3, label=label)
  all_depths = sorted({model_depth(key[0]) for key, _ in variants})
  ax.set_xscale('log')
  ax.set_xticks(all_depths, [str(d) for d in all_depths])
  ax.minorticks_off()
  ax.set_xlabel('depth (layers)')
  ax.set_ylabel('test error (%)')
  ax.set_title(f'{_datasets(variants)}: final test error, mean ± std over seeds')
  _save(fig, ax, path)


def collect_responses(
  workdir: str, runs: Sequence[dict[str, Any]], num_images: int
) -> list[tuple[dict[str, Any], dict[str, float]]]:
  """(run, {layer: std}) of each run with a checkpoint; the others are skipped with a note."""
  from resnet_jax import errors, responses  # Imported here: JAX.

  found = []
  for run in runs:
    try:
      std = responses.run_responses(str(epath.Path(workdir) / run['name']), num_images=num_images)
    except (errors.CheckpointError, errors.ConfigError) as error:
      print(f'Responses: {run["name"]} skipped: {error}')
      continue
    found.append((run, std.std))
  return found


def _is_plain(run: dict[str, Any]) -> bool:
  """Whether the run's network has no shortcuts: a plain family, unless overridden."""
  default = 'none' if model_family(run['model']).endswith('plain') else None
  return run['config']['model_kwargs'].get('shortcut', default) == 'none'


def write_responses_csv(
  path: epath.Path, found: Sequence[tuple[dict[str, Any], dict[str, float]]]
) -> None:
  columns = ['name', 'model', 'plain', 'seed', 'step', 'layer_index', 'layer', 'std']
  text = io.StringIO(newline='')
  writer = csv.DictWriter(text, columns)
  writer.writeheader()
  for run, std in found:
    for index, (layer, value) in enumerate(std.items(), start=1):
      row = {'name': run['name'], 'model': run['model'], 'plain': _is_plain(run)}
      row |= {'seed': run['flat_config']['seed'], 'step': run['step']}
      writer.writerow(row | {'layer_index': index, 'layer': layer, 'std': value})
  path.write_text(text.getvalue())


def plot_responses(
  path: epath.Path, found: Sequence[tuple[dict[str, Any], dict[str, float]]]
) -> None:
  """He 2015's Fig. 7: std of each 3x3 layer's response by layer index (left) and sorted in
  descending order (right), one line per run; plain nets dashed, ResNets solid."""
  import matplotlib.pyplot as plt

  models = [run['model'] for run, _ in found]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
  for i, (run, std) in enumerate(found):
    values = list(std.values())
    label = run['model'] if models.count(run['model']) == 1 else run['name']
    style = dict(color=f'C{i % 10}', linestyle='--' if _is_plain(run) else '-', label=label)
    layers = range(1, len(values) + 1)
    axes[0].plot(layers, values, **style)
    axes[1].plot(layers, sorted(values, reverse=True), **style)
  axes[0].set_xlabel('layer index (original)')
  axes[1].set_xlabel('layer index (sorted by magnitude)')
  for ax in axes:
    ax.set_ylabel('std')
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize='small')
  fig.suptitle("std of the 3x3 layers' responses (after BN, before addition and ReLU)")
  _write_png(fig, path)


def write_report(
  workdir: str,
  plots: bool = True,
  responses: bool = False,
  response_images: int = 500,
  statistic: str = 'mean',
  fail_above: float | None = None,
) -> list[str]:
  """Writes results.csv, results.md and (if `plots`) the PNGs; with `responses` also
  responses.csv and (if `plots`) responses.png. Returns the paths written. `statistic` and
  `fail_above`: see `markdown_table` (a sweep file's, from `sweep_statistic`)."""
  check_statistic(statistic, fail_above)
  if plots:
    try:
      import matplotlib

      matplotlib.use('Agg')
    except ImportError:
      raise ReportError(
        'The plots need matplotlib, which is not installed: pip install -r requirements-dev.txt '
        '(or pip install matplotlib), or pass --noplots to write only results.csv and results.md.'
      ) from None
  runs, unfinished = load_runs(workdir)
  if not runs:
    raise ReportError(
      f'No finished run under {workdir}: the report reads WORKDIR/*/summary.json, written when '
      'a run completes. Run the sweep (or resnet_jax.main) there first.'
    )
  if unfinished:
    print(f'Warning: {len(unfinished)} unfinished run(s) left out: {", ".join(unfinished)}')
  macs = {}  # Seeds of a variant share one count.
  for run in runs:
    key = json.dumps([run['model'], run['dataset'], run['config']['model_kwargs']])
    if key not in macs:
      macs[key] = count_macs(run)
    run['macs'] = macs[key]
  fields = varied_fields(runs)
  variants = group_variants(runs, fields)
  root = epath.Path(workdir)
  written = [root / 'results.csv', root / 'results.md']
  write_csv(written[0], runs, fields)
  table = markdown_table(variants, fields, statistic, fail_above)
  if unfinished:
    table += f'\nNot finished, left out: {", ".join(unfinished)}.\n'
  written[1].write_text(table)
  print(table)
  if plots:
    written.append(root / 'curves.png')
    plot_curves(written[-1], variants, fields)
    if fields:  # Options varied, not only networks: each variant's spread over seeds.
      written.append(root / 'variants.png')
      plot_variants(written[-1], variants, fields)
    if len({model_depth(run['model']) for run in runs}) > 1:
      written.append(root / 'depth.png')
      plot_depth(written[-1], variants, fields)
  if responses:
    found = collect_responses(
      workdir, [run for _, group in variants for run in group], response_images
    )
    if found:
      written.append(root / 'responses.csv')
      write_responses_csv(written[-1], found)
      if plots:
        written.append(root / 'responses.png')
        plot_responses(written[-1], found)
    else:
      print('Responses: no run with a checkpoint and a post-activation network; none written.')
  return [str(path) for path in written]


FLAGS = flags.FLAGS


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    statistic, fail_above = sweep_statistic(FLAGS.sweep) if FLAGS.sweep else ('mean', None)
    written = write_report(
      FLAGS.workdir, FLAGS.plots, FLAGS.responses, FLAGS.response_images, statistic, fail_above
    )
  except (ReportError, FileNotFoundError) as e:
    sys.exit(f'Error: {e}')
  print('Wrote', ', '.join(written))


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Directory of the runs (one sub-directory each).')
  flags.DEFINE_string(
    'sweep', None, "The runs' sweep file: its STATISTIC and FAIL_ABOVE say what its paper reports."
  )
  flags.DEFINE_bool('plots', True, 'Write the PNG plots (needs matplotlib).')
  flags.DEFINE_bool(
    'responses', False, "He 2015 Fig. 7: std of each 3x3 layer's response, from the checkpoints."
  )
  flags.DEFINE_integer('response_images', 500, 'Evaluation images the responses are taken on.')
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
