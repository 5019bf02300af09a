"""The MAC counter against published numbers and a closed form, and the summary command."""

import os
import subprocess
import sys

import pytest

from resnet_jax import summary
from resnet_jax.models import create_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
  'name, overrides, giga_macs',
  [
    # torchvision's model metadata ("GFLOPS", multiply-accumulates) at 224 x 224.
    ('resnet18', {}, 1.81),
    ('resnet34', {}, 3.66),
    ('resnet50', {}, 4.09),
    ('resnet101', {}, 7.80),
    ('resnet152', {}, 11.51),
    ('resnet50', {'groups': 32, 'width_per_group': 4}, 4.23),  # resnext50_32x4d
    ('resnet50', {'width_per_group': 128}, 11.40),  # wide_resnet50_2
    # Duta 2020: the improved shortcut's max-pool and stage-1 stride cost 1%.
    ('iresnet50', {}, 4.13),
  ],
)
def test_macs_match_published_numbers(name, overrides, giga_macs):
  assert round(summary.count_macs(create_model(name, **overrides), 224) / 1e9, 2) == giga_macs


def test_macs_of_cifar_resnet_match_closed_form():
  n, size = 9, 32  # cifar_resnet56: scanned runs of 8 blocks per stage
  conv = lambda side, out, inp: side * side * out * 9 * inp  # noqa: E731
  want = (
    conv(size, 16, 3)
    + 2 * n * conv(size, 16, 16)
    + conv(size // 2, 32, 16)
    + (2 * n - 1) * conv(size // 2, 32, 32)
    + conv(size // 4, 64, 32)
    + (2 * n - 1) * conv(size // 4, 64, 64)
    + 64 * 10
  )
  result = summary.summarize(create_model('cifar_resnet56'), size)
  assert result['macs'] == want
  assert [p['name'] for p in result['parts']] == ['stem', 'stage1', 'stage2', 'stage3', 'head']
  assert result['parts'][2]['macs'] == conv(16, 32, 16) + (2 * n - 1) * conv(16, 32, 32)
  assert [p['output'] for p in result['parts']] == [
    (32, 32, 16),
    (32, 32, 16),
    (16, 16, 32),
    (8, 8, 64),
    (10,),
  ]


def test_parts_add_up_and_stacking_does_not_change_counts():
  result = summary.summarize(create_model('iresnet50'), 64)
  assert sum(p['macs'] for p in result['parts']) == result['macs']
  assert sum(p['params'] for p in result['parts']) == result['params'] == 25_557_032
  unrolled = summary.summarize(create_model('iresnet50', unroll=True, remat=True), 64)
  assert unrolled == result


@pytest.mark.slow
def test_summary_command_prints_the_table():
  out = subprocess.run(
    [sys.executable, '-m', 'resnet_jax.summary', '--model=cifar_resnet20'],
    cwd=REPO,
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  assert 'cifar_resnet20 at 32x32' in out
  assert 'parameters  269,722' in out
  assert 'MACs        40.6 M (40,551,040)' in out
  assert out.count('\nstage') == 3


def test_zoo_table(monkeypatch):
  monkeypatch.setattr(summary.models, 'list_models', lambda: ['cifar_resnet20', 'resnet50'])
  assert summary.zoo_table().splitlines()[2:] == [
    '| cifar_resnet20 | 32 | 269,722 | 40.6 M |',
    '| resnet50 | 224 | 25,557,032 | 4.09 G |',
  ]


def test_format_count():
  counts = [4_089_184_256, 15_000_000_000, 269_722, 999_999, 99_960, 999]
  assert [summary.format_count(n) for n in counts] == [
    '4.09 G',
    '15.0 G',
    '270 K',
    '1.00 M',
    '100 K',
    '999',
  ]
