"""The paper sweeps: one file per table or figure, each citing it, with the papers' recipes and
networks of the published parameter counts.

Nothing trains. Parameters are counted from `jax.eval_shape` of `model.init` (no compilation),
once per distinct network; counts do not depend on the image size, so ImageNet networks are
traced at 64 pixels.
"""

import functools
import glob
import json
import os
import re
import shlex

import jax
import jax.numpy as jnp
import pytest

from resnet_jax import config_checks, models, optim, sweep, train
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
  'duta2020_imagenet': 'Duta et al. 2020, ImageNet',
  'duta2020_cifar_depths': 'Duta et al. 2020, CIFAR-10',
}

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
  fields are in the ranges main checks before it trains."""
  points = expand(name, tmp_path)
  for point in points:
    config_checks.check_ranges(point.config)
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


def test_he2016_table1_builds_each_shortcut(repo, tmp_path):
  points = expand('he2016_table1_shortcuts', tmp_path)
  assert len(points) == 8 * 5
  seed0 = [p for p in points if p.config.seed == 0]
  original = seed0[0].config
  assert_published(params(original), '1.7 M')
  assert {f for _, f, _ in blocks_of(original)} == {blocks.PostActBlock}
  expected = [  # (modulation, shortcut_scale, residual_scale, gate_bias_init, shortcut_dropout)
    ('constant_scaling', 0.5, 1.0, None, None),
    ('constant_scaling', 0.5, 0.5, None, None),
    ('exclusive_gating', None, None, -6.0, None),
    ('shortcut_only_gating', None, None, 0.0, None),
    ('shortcut_only_gating', None, None, -6.0, None),
  ]
  for point, (modulation, a, b, bias, _) in zip(seed0[1:6], expected, strict=True):
    for _, block, kw in blocks_of(point.config):
      assert block is blocks.ModulatedShortcutBlock and kw['modulation'] == modulation
      assert a is None or (kw['shortcut_scale'], kw['residual_scale']) == (a, b)
      assert bias is None or kw['gate_bias_init'] == bias
  # Gates add a 1x1 convolution and its bias per unit; scaling adds nothing.
  assert params(seed0[1].config) == params(original)
  assert params(seed0[3].config) > params(original)
  conv_shortcut, dropout = seed0[6].config, seed0[7].config
  assert {kw['shortcut_kind'] for _, _, kw in blocks_of(conv_shortcut)} == {'conv_bn'}
  assert {(kw['modulation'], kw['shortcut_dropout']) for _, _, kw in blocks_of(dropout)} == {
    ('dropout', 0.5)
  }


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


def test_he2016_table3_164_and_1001_layers_on_both_datasets(repo, tmp_path):
  points = expand('he2016_table3_cifar', tmp_path)
  assert len(points) == 2 * 2 * 2 * 3
  for point in points:
    c = point.config
    assert (c.dataset, c.num_classes) in {('cifar10', 10), ('cifar100', 100)}
    assert head_shape(c)[-1] == c.num_classes
    assert c.model_kwargs.shortcut == 'B'
  cifar10 = [p.config for p in points if p.config.dataset == 'cifar10' and p.config.seed == 0]
  counts = {(c.model, c.model_kwargs.activation): c for c in cifar10}
  assert params(counts[('cifar_resnet164', 'full_preactivation')]) == 1_703_258
  for activation in ('original', 'full_preactivation'):
    assert_published(params(counts[('cifar_resnet164', activation)]), '1.7 M')
    # He 2016's 10.2 M for ResNet-1001 counts weights without BatchNorm.
    assert_published(params(counts[('cifar_resnet1001', activation)], without_bn=True), '10.2 M')
  assert params(counts[('cifar_resnet1001', 'full_preactivation')]) == _preact_reference(1001)


# --- Duta et al. 2020 ----------------------------------------------------------------------------


@pytest.mark.slow
def test_duta2020_imagenet_families_have_equal_parameters(repo, tmp_path):
  points = expand('duta2020_imagenet', tmp_path)
  assert len(points) == 3 * 4
  assert {p.config.lr_decay_at for p in points} == {(30, 60, 80)}
  for depth in (50, 101, 152, 200):
    counts = {params(by(points, model=f'{f}{depth}').config) for f in ('resnet', 'resstage')}
    counts.add(params(by(points, model=f'iresnet{depth}').config))
    # The official iResNet code's counts; 50-152 are torchvision's ResNets'.
    assert counts == {TORCHVISION.get(depth, 64_673_832)}, depth
    iresnet = blocks_of(by(points, model=f'iresnet{depth}').config)
    assert {f for _, f, _ in iresnet} == {blocks.StageBlock}
    starts = [kw['shortcut_kind'] for run, _, kw in iresnet if run.name == 'start']
    assert starts == ['pool_conv_bn'] * 4  # the improved projection shortcut


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
