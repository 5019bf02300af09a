"""The paper sweeps: one file per table or figure, each citing it, with the papers' recipes and
networks of the published parameter counts.

Nothing trains. Parameters are counted from `jax.eval_shape` of `model.init` (no compilation),
once per distinct network; counts do not depend on the image size, so ImageNet networks are
traced at 64 pixels.
"""

import bisect
import functools
import glob
import json
import os
import re
import shlex

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_jax import models, optim, sweep, train
from resnet_jax.models import blocks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Paper sweep -> the citation its docstring opens with.
PAPER_SWEEPS = {
  'he2015_table2_plain_vs_resnet_imagenet': 'He et al. 2015, Table 2',
  'he2015_fig6_cifar_plain_vs_resnet': 'He et al. 2015, Fig. 6',
  'he2015_table3_shortcuts': 'He et al. 2015, Table 3',
  'he2015_table6_cifar_depths': 'He et al. 2015, Table 6',
  'he2016_table1_shortcuts': 'He et al. 2016, Table 1',
  'he2016_table2_activations': 'He et al. 2016, Table 2',
  'he2016_table3_cifar': 'He et al. 2016, Table 3',
  'he2015_table4_multiscale': 'He et al. 2015, Table 4',
  'he2016_table4_cifar_batch64': 'He et al. 2016, Table 4',
  'he2016_table5_imagenet_320': 'He et al. 2016, Table 5',
  'he2016_sec5_imagenet_bn_after_addition': 'He et al. 2016, Sec. 5',
  'duta2020_imagenet': 'Duta et al. 2020, ImageNet',
  'duta2020_imagenet_deep': 'Duta et al. 2020, ImageNet',
  'duta2020_resgroup_imagenet': 'Duta et al. 2020, ImageNet',
  'duta2020_cifar_depths': 'Duta et al. 2020, CIFAR-10',
  'duta2020_cifar100_depths': 'Duta et al. 2020, CIFAR-100',
}
# The He 2016 sweeps on CIFAR: "the median accuracy of 5 runs for each architecture".
HE2016_CIFAR = (
  'he2016_table1_shortcuts',
  'he2016_table2_activations',
  'he2016_table3_cifar',
  'he2016_table4_cifar_batch64',
)

# torchvision's ResNets (1000 classes): option B, projections where the shape changes.
TORCHVISION = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# The basic-block ResNets' three projections (1x1 conv + BN: 64->128, 128->256, 256->512), the
# parameters option A (and a plain net) does without.
BASIC_PROJECTIONS = sum(c * 2 * c + 2 * (2 * c) for c in (64, 128, 256))
# He 2015 Table 6, CIFAR-10 ResNets (option A), as printed.
HE2015_CIFAR = {
  20: '0.27 M',
  32: '0.46 M',
  44: '0.66 M',
  56: '0.85 M',
  110: '1.7 M',
  1202: '19.4 M',
}


def expand(name, tmp_path):
  return sweep.expand(f'experiments/{name}.py', str(tmp_path))


@pytest.fixture
def repo(monkeypatch):
  monkeypatch.chdir(REPO)


@functools.cache
def _count(model_name, kwargs_json, num_classes, image_size):
  model = models.create_model(model_name, num_classes=num_classes, **json.loads(kwargs_json))
  image = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), image)
  leaves = jax.tree_util.tree_leaves_with_path(variables['params'])
  total = sum(leaf.size for _, leaf in leaves)
  without_bn = sum(leaf.size for path, leaf in leaves if 'bn' not in jax.tree_util.keystr(path))
  head = variables['params']['head']['kernel'].shape
  return total, without_bn, head


def params(config, without_bn=False):
  """Parameters of the network `config` trains (with BatchNorm's, unless `without_bn`)."""
  image_size = 32 if config.image_size <= 32 else 64
  kwargs = json.dumps(config.model_kwargs.to_dict(), sort_keys=True)
  total, no_bn, _ = _count(train.model_name(config), kwargs, config.num_classes, image_size)
  return no_bn if without_bn else total


def head_shape(config):
  kwargs = json.dumps(config.model_kwargs.to_dict(), sort_keys=True)
  return _count(train.model_name(config), kwargs, config.num_classes, 32)[2]


def assert_published(count, published):
  """`count` is the published one: exact ('21,797,672') or as printed ('0.27 M', '19.4 M')."""
  if ',' in published:
    assert count == int(published.replace(',', '')), (count, published)
    return
  number = published.removesuffix(' M')
  decimals = len(number.partition('.')[2])
  assert round(count / 1e6, decimals) == float(number), (count, published)


def expected_citation(name):
  """'he2015_table3_shortcuts' -> 'He et al. 2015, Table 3'; the file names its table."""
  match = re.fullmatch(r'he(\d{4})_(table|fig)(\d+)_\w+', name)
  if match:
    kind = 'Table' if match[2] == 'table' else 'Fig.'
    return f'He et al. {match[1]}, {kind} {match[3]}'
  return PAPER_SWEEPS[name]


def assert_cites(name, docstring, num_points):
  """The first line cites the table; the docstring has the command line and the run count."""
  first_line = docstring.strip().splitlines()[0]
  assert first_line.startswith(expected_citation(name)), (name, first_line)
  assert f'python -m resnet_jax.sweep --sweep=experiments/{name}.py' in docstring
  runs = re.findall(r'(\d+) runs\.', docstring)
  assert runs and int(runs[-1]) == num_points, f'{name}: {runs} runs in the docstring'


def blocks_of(config):
  """Every (run, block options) of the network `config` trains, in order."""
  model = train.create_model(config)
  return [(run, run.block.func, run.block.keywords) for s in model.stages for run in s.runs]


def by(points, **overrides):
  """The one point with these overrides (dotted fields spelt with '__')."""
  wanted = {k.replace('__', '.'): v for k, v in overrides.items()}
  found = [p for p in points if all(p.overrides.get(k) == v for k, v in wanted.items())]
  assert len(found) == 1, (wanted, [p.name for p in found])
  return found[0]


# --- Every sweep ---------------------------------------------------------------------------------


def test_readme_lists_every_sweep():
  readme = open(os.path.join(REPO, 'experiments', 'README.md')).read()
  for path in glob.glob(os.path.join(REPO, 'experiments', '*.py')):
    assert f'`{os.path.basename(path)}`' in readme, path


def test_every_paper_sweep_is_shipped():
  shipped = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'experiments', '*.py'))}
  assert set(PAPER_SWEEPS) <= shipped
  # One file per table: no two He sweeps cite the same table.
  he = [expected_citation(n) for n in shipped if n.startswith('he20')]
  assert len(he) == len(set(he))


@pytest.mark.parametrize(
  'name', sorted(os.path.basename(p)[:-3] for p in glob.glob(f'{REPO}/experiments/*.py'))
)
def test_sweep_dry_runs(name, repo, tmp_path):
  """What `--dry_run` prints: every point's main command gives main exactly its config, whose
  fields pass the checks main makes before it trains."""
  points = expand(name, tmp_path)
  for point in points:
    train.check_config(point.config)
    command = shlex.split(shlex.join(point.command()))
    assert command[:3] == ['python', '-m', 'resnet_jax.main']
    assert sweep.resolve_config(command[3:]) == point.config
    for field, value in point.overrides.items():
      node = point.config
      for key in field.split('.'):
        node = node[key]
      assert node == value, (point.name, field)


@pytest.mark.parametrize('name', sorted(PAPER_SWEEPS))
def test_docstring_cites_its_table(name, repo, tmp_path):
  module = sweep._load_python_file(os.path.join(REPO, 'experiments', f'{name}.py'), name)
  assert_cites(name, module.__doc__, len(expand(name, tmp_path)))


def test_the_checks_catch_a_wrong_citation_and_count():
  doc = sweep._load_python_file(f'{REPO}/experiments/he2015_table3_shortcuts.py', 'x').__doc__
  assert_cites('he2015_table3_shortcuts', doc, 7)
  with pytest.raises(AssertionError):
    assert_cites('he2015_table2_plain_vs_resnet_imagenet', doc, 7)
  with pytest.raises(AssertionError):
    assert_cites('he2015_table3_shortcuts', doc.replace('Table 3', 'Table 4', 1), 7)
  with pytest.raises(AssertionError):
    assert_cites('he2015_table3_shortcuts', doc, 8)
  assert_published(269_722, '0.27 M')
  assert_published(1_727_962, '1.7 M')
  with pytest.raises(AssertionError):
    assert_published(269_722, '0.28 M')
  with pytest.raises(AssertionError):
    assert_published(21_623_848, '21,797,672')


# --- He et al. 2015 ------------------------------------------------------------------------------


def test_he2015_imagenet_recipe_is_10crop_at_224(repo, tmp_path):
  for name in ('he2015_table2_plain_vs_resnet_imagenet', 'he2015_table3_shortcuts'):
    for point in expand(name, tmp_path):
      c = point.config
      assert (c.dataset, c.num_classes, c.image_size) == ('imagenet2012', 1000, 224)
      assert (c.eval_protocol, c.eval_crop_fraction) == ('10crop', 0.875)  # 224 of 256
      assert (c.batch_size, c.learning_rate, c.momentum, c.weight_decay) == (256, 0.1, 0.9, 1e-4)


def test_he2015_table2_plain_nets_have_their_resnets_parameters(repo, tmp_path):
  points = expand('he2015_table2_plain_vs_resnet_imagenet', tmp_path)
  assert [p.config.model for p in points] == ['plain18', 'resnet18', 'plain34', 'resnet34']
  for depth in (18, 34):
    plain = by(points, model=f'plain{depth}').config
    resnet = by(points, model=f'resnet{depth}').config
    assert params(plain) == params(resnet) == TORCHVISION[depth] - BASIC_PROJECTIONS
    assert {kw['shortcut_kind'] for _, _, kw in blocks_of(plain)} == {'none'}
    assert {kw['shortcut_kind'] for _, _, kw in blocks_of(resnet)} == {'identity', 'zero_pad'}


def test_he2015_table3_shortcut_options_and_deeper_resnets(repo, tmp_path):
  points = expand('he2015_table3_shortcuts', tmp_path)
  counts = {(p.config.model, p.config.model_kwargs.shortcut): params(p.config) for p in points}
  assert counts[('plain34', 'none')] == counts[('resnet34', 'A')] == 21_623_848
  assert counts[('resnet34', 'B')] == TORCHVISION[34]
  assert counts[('resnet34', 'C')] > counts[('resnet34', 'B')]
  for depth in (50, 101, 152):
    assert counts[(f'resnet{depth}', 'B')] == TORCHVISION[depth]
    # The paper's bottleneck ("v1") strides on its first 1x1.
    runs = blocks_of(by(points, model=f'resnet{depth}').config)
    assert all(kw['stride_in_1x1'] and kw['bottleneck'] for _, _, kw in runs)
  conv_everywhere = blocks_of(by(points, model='resnet34', model_kwargs__shortcut='C').config)
  assert {kw['shortcut_kind'] for _, _, kw in conv_everywhere} == {'conv_bn'}


def test_he2015_table2_and_table3_share_their_34_layer_points(repo, tmp_path):
  table2 = {p.name: p for p in expand('he2015_table2_plain_vs_resnet_imagenet', tmp_path)}
  table3 = {p.name: p for p in expand('he2015_table3_shortcuts', tmp_path)}
  shared = sorted(table2.keys() & table3.keys())
  assert shared == [
    'model=plain34-model_kwargs.shortcut=none',
    'model=resnet34-model_kwargs.shortcut=A',
  ]
  for name in shared:
    assert table2[name].config == table3[name].config


def test_he2015_cifar_depths_have_table6_parameters_and_warmup(repo, tmp_path):
  points = expand('he2015_table6_cifar_depths', tmp_path)
  depths = [models.parse_name(p.config.model)[1] for p in points]
  assert depths == [20, 32, 44, 56, 110, 110, 110, 110, 110, 1202]  # 5 runs at 110, as He 2015
  assert len({p.config.seed for p in points if p.config.model == 'cifar_resnet110'}) == 5
  for point, depth in zip(points, depths, strict=True):
    c = point.config
    assert_published(params(c), HE2015_CIFAR[depth])
    assert c.model_kwargs.shortcut == 'A'
    assert c.warmup_constant_steps == (400 if depth >= 110 else 0)
    assert (c.batch_size, c.num_train_steps, c.lr_decay_at) == (128, 64_000, (32_000, 48_000))
  # lr 0.01 for the first 400 iterations at 110 layers, then 0.1; 0.1 from the start at 20.
  for point, first in ((points[4], 0.01), (points[0], 0.1)):
    schedule = optim.create_learning_rate_fn(point.config, 390, 64_000)
    lr = optim.learning_rate_table(schedule, 401)
    assert lr[0] == pytest.approx(first) and lr[399] == pytest.approx(first)
    assert lr[400] == pytest.approx(0.1)


def test_he2015_fig6_plain_nets_match_the_resnets(repo, tmp_path):
  points = expand('he2015_fig6_cifar_plain_vs_resnet', tmp_path)
  assert len(points) == 10
  for depth in (20, 32, 44, 56, 110):
    plain = by(points, model=f'cifar_plain{depth}').config
    resnet = by(points, model=f'cifar_resnet{depth}').config
    assert params(plain) == params(resnet)
    assert_published(params(resnet), HE2015_CIFAR[depth])
    assert {kw['shortcut_kind'] for _, _, kw in blocks_of(plain)} == {'none'}
    assert (
      plain.warmup_constant_steps == resnet.warmup_constant_steps == (400 if depth == 110 else 0)
    )
  # The ResNet points are Table 6's: same names, same configs.
  table6 = {p.name: p.config for p in expand('he2015_table6_cifar_depths', tmp_path)}
  resnets = [p for p in points if 'resnet' in p.config.model]
  assert all(table6[p.name] == p.config for p in resnets)


# --- He et al. 2016 ------------------------------------------------------------------------------


def test_he2016_sweeps_warm_up_every_run(repo, tmp_path):
  """He 2016, Appendix: lr 0.01 for the first 400 iterations in all CIFAR runs."""
  for name in ('he2016_table1_shortcuts', 'he2016_table2_activations', 'he2016_table3_cifar'):
    for point in expand(name, tmp_path):
      c = point.config
      assert (c.warmup_constant_steps, c.warmup_constant_lr) == (400, 0.01), point.name
      assert (c.batch_size, c.num_train_steps, c.lr_decay_at) == (128, 64_000, (32_000, 48_000))


def test_he2016_table1_has_every_row(repo, tmp_path):
  """All eleven rows of Table 1, the exclusive gates' "b_g = 0 to -5" row as one point per b_g."""
  points = expand('he2016_table1_shortcuts', tmp_path)
  assert len(points) == 16 * 5
  seed0 = [p.config for p in points if p.config.seed == 0]
  original = seed0[0]
  assert_published(params(original), '1.7 M')
  assert {f for _, f, _ in blocks_of(original)} == {blocks.PostActBlock}
  rows = []
  for c in seed0[1:]:
    kw = c.model_kwargs
    if kw.modulation == 'constant_scaling':
      rows.append((kw.modulation, kw.shortcut_scale, kw.residual_scale))
    elif kw.modulation in ('exclusive_gating', 'shortcut_only_gating'):
      rows.append((kw.modulation, kw.gate_bias_init))
    elif kw.modulation == 'dropout':
      rows.append((kw.modulation, kw.shortcut_dropout))
    else:
      rows.append(('shortcut', kw.shortcut))
  assert rows == [
    ('constant_scaling', 0.0, 1.0),  # "This is a plain net"
    ('constant_scaling', 0.5, 1.0),
    ('constant_scaling', 0.5, 0.5),
    *(('exclusive_gating', float(-b)) for b in range(6)),
    ('exclusive_gating', -6.0),
    ('exclusive_gating', -7.0),
    ('shortcut_only_gating', 0.0),
    ('shortcut_only_gating', -6.0),
    ('shortcut', 'C'),
    ('dropout', 0.5),
  ]
  for c in seed0[1:-2]:
    for _, block, kw in blocks_of(c):
      assert (
        block is blocks.ModulatedShortcutBlock and kw['modulation'] == c.model_kwargs.modulation
      )
      assert kw['gate_bias_init'] == c.model_kwargs.gate_bias_init
  # Gates add a 1x1 convolution and its bias per unit; scaling and dropout add nothing.
  assert params(seed0[1]) == params(seed0[-1]) == params(original)
  assert params(seed0[4]) > params(original)
  assert {kw['shortcut_kind'] for _, _, kw in blocks_of(seed0[-2])} == {'conv_bn'}
  # The published numbers, every row; None for the rows the paper reports as 'fail'.
  module = sweep._load_python_file(f'{REPO}/experiments/he2016_table1_shortcuts.py', 't1')
  published = [error for _, error in module.SHORTCUTS]
  assert published == [6.61, None, None, 12.35, *[None] * 6, 8.70, 9.81, 12.86, 6.91, 12.22, None]
  assert (module.STATISTIC, module.FAIL_ABOVE) == ('median', 20.0)
  for error in ('6.61', '12.35', '8.70', '9.81', '12.86', '6.91', '12.22'):
    assert re.search(rf'\| {re.escape(error)} +\|', module.__doc__), error


def test_he2016_cifar_sweeps_have_5_seeds_and_report_the_median(repo, tmp_path):
  for name in HE2016_CIFAR:
    points = expand(name, tmp_path)
    seeds = {}
    for p in points:
      variant = tuple(sorted((k, str(v)) for k, v in p.overrides.items() if k != 'seed'))
      seeds.setdefault(variant, set()).add(p.config.seed)
    assert {len(s) for s in seeds.values()} == {5}, name
    module = sweep._load_python_file(f'{REPO}/experiments/{name}.py', name)
    assert module.STATISTIC == 'median', name


def _preact_reference(depth, num_classes=10):
  """The authors' layout, `cifar_preact_resnet*` with its own shortcuts (A at 110, B at 164+)."""
  return _count(f'cifar_preact_resnet{depth}', '{}', num_classes, 32)[0]


def test_he2016_table2_builds_each_unit(repo, tmp_path):
  points = expand('he2016_table2_activations', tmp_path)
  assert len(points) == 2 * 5 * 5
  for point in points:
    c = point.config
    depth = models.parse_name(c.model)[1]
    assert c.model_kwargs.shortcut == ('A' if depth == 110 else 'B')
    assert_published(params(c), '1.7 M')
    block_classes = {f for _, f, _ in blocks_of(c)}
    assert block_classes == {models.ACTIVATIONS[c.model_kwargs.activation]}, point.name
    if c.model_kwargs.activation == 'full_preactivation':
      assert params(c) == _preact_reference(depth)
  full_164 = by(
    points, model='cifar_resnet164', model_kwargs__activation='full_preactivation', seed=0
  )
  assert params(full_164.config) == 1_703_258  # resnet-1k-layers' pre-activation ResNet-164


def test_he2016_table3_every_network_on_both_units(repo, tmp_path):
  points = expand('he2016_table3_cifar', tmp_path)
  assert len(points) == 6 * 2 * 5
  for point in points:
    c = point.config
    assert (c.dataset, c.num_classes) in {('cifar10', 10), ('cifar100', 100)}
    assert head_shape(c)[-1] == c.num_classes
    depth = models.parse_name(c.model)[1]
    assert c.model_kwargs.shortcut == ('A' if depth == 110 else 'B')
  cifar10 = [p.config for p in points if p.config.dataset == 'cifar10' and p.config.seed == 0]
  counts = {(c.model, c.model_kwargs.block, c.model_kwargs.activation): c for c in cifar10}
  assert len(counts) == 8
  assert params(counts[('cifar_resnet164', None, 'full_preactivation')]) == 1_703_258
  for activation in ('original', 'full_preactivation'):
    assert_published(params(counts[('cifar_resnet164', None, activation)]), '1.7 M')
    # He 2016's 10.2 M for ResNet-1001 counts weights without BatchNorm.
    one_thousand = counts[('cifar_resnet1001', None, activation)]
    assert_published(params(one_thousand, without_bn=True), '10.2 M')
    # ResNet-110(1layer): 108 units of one 3x3 convolution, ResNet-110's parameters.
    one_layer = counts[('cifar_resnet110', 'one_layer', activation)]
    two_layer = counts[('cifar_resnet110', None, activation)]
    assert params(one_layer) == params(two_layer) == 1_727_962
    units = blocks_of(one_layer)
    assert all(kw['one_layer'] for _, _, kw in units)
    assert sum(run.count or 1 for run, _, _ in units) == 108
    assert sum(run.count or 1 for run, _, _ in blocks_of(two_layer)) == 54
  preact_1001 = counts[('cifar_resnet1001', None, 'full_preactivation')]
  assert params(preact_1001) == _preact_reference(1001)


def test_he2016_table4_batch_64_and_the_points_of_table3(repo, tmp_path):
  points = expand('he2016_table4_cifar_batch64', tmp_path)
  assert len(points) == 5 * 5
  table3 = {p.name: p.config for p in expand('he2016_table3_cifar', tmp_path)}
  batch_64 = [p for p in points if p.config.batch_size == 64]
  assert len(batch_64) == 5
  for point in points:
    assert point.config.model_kwargs.activation == 'full_preactivation'
    if point.config.batch_size == 128:  # Table 3's pre-activation points, trained once
      assert table3[point.name] == point.config
  c = batch_64[0].config
  assert (c.model, c.dataset, c.learning_rate, c.lr_base_batch_size) == (
    'cifar_resnet1001',
    'cifar10',
    0.1,
    0,
  )
  assert_published(params(c, without_bn=True), '10.2 M')
  assert c.bn_group_size == 32  # 2 GPUs, 32 images each
  # resnet-1k-layers in fb.resnet.torch: 200 epochs, lr / 10 from the 81st and 122nd epoch.
  steps_per_epoch = 50_000 // 64
  schedule = optim.create_learning_rate_fn(c, steps_per_epoch, 200 * steps_per_epoch)
  lr = optim.learning_rate_table(schedule, 200 * steps_per_epoch)
  per_epoch = lr.reshape(200, steps_per_epoch)
  assert (per_epoch == per_epoch[:, :1]).all()  # constant within each epoch
  fb_resnet_torch = [0.1 * 0.1 ** ((e >= 81) + (e >= 122)) for e in range(1, 201)]
  np.testing.assert_allclose(per_epoch[:, 0], fb_resnet_torch, rtol=1e-6)


def test_he2016_imagenet_protocols(repo, tmp_path):
  """Table 5: "a single 320x320 crop from s = 320"; Sec. 5: a 224 crop of ResNet-101 with BN
  after addition. Both with He 2016's schedule: lr 0.1, / 10 at 30 and 60 epochs."""
  table5 = expand('he2016_table5_imagenet_320', tmp_path)
  assert [(p.config.model, p.config.model_kwargs.activation) for p in table5] == [
    ('resnet152', 'original'),
    ('resnet152', 'full_preactivation'),
    ('resnet200', 'original'),
    ('resnet200', 'full_preactivation'),
  ]
  for point in table5:
    c = point.config
    assert (c.eval_protocol, c.eval_image_size, c.eval_crop_fraction) == ('center', 320, 1.0)
    assert round(c.eval_image_size / c.eval_crop_fraction) == 320  # the resized shorter side
    assert (c.image_size, c.lr_decay_at, c.warmup) == (224, (30, 60), 0.0)
  assert params(table5[0].config) == TORCHVISION[152]
  preact = blocks_of(table5[1].config)
  assert {f for _, f, _ in preact} == {blocks.PreActBlock}
  sec5 = expand('he2016_sec5_imagenet_bn_after_addition', tmp_path)
  assert [p.config.model_kwargs.activation for p in sec5] == ['original', 'bn_after_addition']
  for point in sec5:
    c = point.config
    assert (c.model, c.eval_protocol, c.eval_image_size, c.eval_crop_fraction) == (
      'resnet101',
      'center',
      0,
      0.875,
    )
    assert params(c) == TORCHVISION[101]
  assert {f for _, f, _ in blocks_of(sec5[1].config)} == {blocks.BNAfterAdditionBlock}


def test_he2015_table4_is_table3s_networks_tested_at_five_scales(repo, tmp_path):
  points = expand('he2015_table4_multiscale', tmp_path)
  table3 = {p.name: p.config for p in expand('he2015_table3_shortcuts', tmp_path)}
  assert [p.name for p in points] == [
    'model=resnet34-model_kwargs.shortcut=B',
    'model=resnet34-model_kwargs.shortcut=C',
    'model=resnet50-model_kwargs.shortcut=B',
    'model=resnet101-model_kwargs.shortcut=B',
    'model=resnet152-model_kwargs.shortcut=B',
  ]
  for point in points:
    c = point.config
    assert (c.eval_protocol, c.eval_sizes) == ('multiscale', (224, 256, 384, 480, 640))
    assert c.eval_max_aspect == 2.0  # whole images, as the paper's fully convolutional test
    trained = table3[point.name].copy_and_resolve_references()
    evaluation = ('eval_protocol', 'eval_sizes', 'eval_max_aspect', 'eval_batch_size')
    for field in (*evaluation, 'eval_every_steps'):
      trained[field] = c[field]
    assert trained == c  # the same training as Table 3's point
  module = sweep._load_python_file(f'{REPO}/experiments/he2015_table4_multiscale.py', 't4')
  assert module.PUBLISHED[('resnet152', 'B')] == (19.38, 4.49)
  assert [p.name for p in points] == [
    f'model={m}-model_kwargs.shortcut={o}' for m, o in module.PUBLISHED
  ]


# --- Duta et al. 2020 ----------------------------------------------------------------------------


@pytest.mark.slow
def test_duta2020_imagenet_families_have_equal_parameters(repo, tmp_path):
  points = expand('duta2020_imagenet', tmp_path)
  assert len(points) == 3 * 4
  assert {p.config.lr_decay_at for p in points} == {(29, 59, 79)}
  for depth in (50, 101, 152, 200):
    counts = {params(by(points, model=f'{f}{depth}').config) for f in ('resnet', 'resstage')}
    counts.add(params(by(points, model=f'iresnet{depth}').config))
    # The official iResNet code's counts; 50-152 are torchvision's ResNets'.
    assert counts == {TORCHVISION.get(depth, 64_673_832)}, depth
    iresnet = blocks_of(by(points, model=f'iresnet{depth}').config)
    assert {f for _, f, _ in iresnet} == {blocks.StageBlock}
    starts = [kw['shortcut_kind'] for run, _, kw in iresnet if run.name == 'start']
    assert starts == ['pool_conv_bn'] * 4  # the improved projection shortcut


def test_iresnet_schedule_is_the_official_scripts(repo, tmp_path):
  """github.com/iduta/iresnet main.py: MultiStepLR([30, 60, 80]), stepped at the start of each
  epoch, so epoch e (0-based) trains at 0.1 x 0.1 ** bisect_right([30, 60, 80], e + 1)."""
  steps_per_epoch = 10
  configs = [p.config for p in expand('duta2020_imagenet', tmp_path)]
  configs += [p.config for p in expand('duta2020_imagenet_deep', tmp_path)]
  configs += [p.config for p in expand('duta2020_resgroup_imagenet', tmp_path)]
  for c in configs:
    assert (c.num_epochs, c.batch_size, c.schedule_unit) == (90, 256, 'epochs')
    schedule = optim.create_learning_rate_fn(c, steps_per_epoch, 90 * steps_per_epoch)
    lr = optim.learning_rate_table(schedule, 90 * steps_per_epoch).reshape(90, steps_per_epoch)
    official = [0.1 * 0.1 ** bisect.bisect_right([30, 60, 80], e + 1) for e in range(90)]
    np.testing.assert_allclose(lr[:, 0], official, rtol=1e-6)
    assert np.unique(lr, return_counts=True)[1][::-1].tolist() == [290, 300, 200, 110]
  # The learning rate agrees with the script's fixed 0.1 at batch 256 only.
  assert optim.peak_learning_rate(configs[0]) == pytest.approx(0.1)


def test_duta2020_readme_numbers(repo, tmp_path):
  """The official README's ImageNet top-1 accuracies, quoted with their source."""
  module = sweep._load_python_file(f'{REPO}/experiments/duta2020_imagenet.py', 'duta')
  assert [module.PUBLISHED[('resnet', d)] for d in (50, 101, 152, 200)] == [
    76.12,
    78.00,
    78.45,
    77.55,
  ]
  assert [module.PUBLISHED[('iresnet', d)] for d in (50, 101, 152, 200)] == [
    77.31,
    78.64,
    79.34,
    79.48,
  ]
  assert 'github.com/iduta/iresnet, README.md' in module.__doc__


def test_duta2020_cifar_warms_up_from_110_layers(repo, tmp_path):
  for name, dataset in (
    ('duta2020_cifar_depths', 'cifar10'),
    ('duta2020_cifar100_depths', 'cifar100'),
  ):
    points = expand(name, tmp_path)
    assert len(points) == 42
    for point in points:
      c = point.config
      depth = models.parse_name(c.model)[1]
      assert c.warmup_constant_steps == (400 if depth >= 110 else 0), point.name
      assert (c.warmup_constant_lr, c.dataset) == (0.01, dataset)
      assert c.num_classes == (100 if dataset == 'cifar100' else 10)


@pytest.mark.slow
def test_duta2020_deep_and_grouped_imagenet_networks(repo, tmp_path):
  deep = expand('duta2020_imagenet_deep', tmp_path)
  assert [p.config.model for p in deep] == ['iresnet302', 'iresnet404']
  stages = [train.create_model(p.config).stages for p in deep]
  sizes = [[sum(run.count or 1 for run in stage.runs) for stage in net] for net in stages]
  assert sizes == [[4, 34, 58, 4], [4, 46, 80, 4]]
  grouped = expand('duta2020_resgroup_imagenet', tmp_path)
  assert len(grouped) == 4 * 3
  for depth in (50, 101, 152):
    for family in ('resgroup', 'resgroupfix'):
      plain = params(by(grouped, model=f'{family}{depth}').config)
      assert params(by(grouped, model=f'i{family}{depth}').config) == plain, (family, depth)


@pytest.mark.slow
def test_duta2020_cifar_depths_reach_3002_layers(repo, tmp_path):
  points = expand('duta2020_cifar_depths', tmp_path)
  assert len(points) == 3 * 4 * 3 + 3 * 2
  depths = sorted({models.parse_name(p.config.model)[1] for p in points})
  assert depths == [56, 110, 164, 1001, 1202, 3002]
  for depth in depths:
    resnet, resstage, iresnet = (
      params(by(points, model=f'cifar_{f}{depth}', seed=0).config)
      for f in ('resnet', 'resstage', 'iresnet')
    )
    assert resstage == iresnet > resnet, depth  # option A's shortcuts have no parameters
    if depth in HE2015_CIFAR:
      assert_published(resnet, HE2015_CIFAR[depth])
