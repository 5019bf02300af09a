"""Duta et al. 2020, CIFAR-10 depth series: ResNet vs ResStage vs iResNet from 56 to 3002 layers.

The CIFAR-layout networks of the three families at 56, 110, 164, 1001, 1202 and 3002 layers
(164 and 1001: bottleneck blocks, 9n+2 layers; the others basic blocks, 6n+2), each trained with
the He et al. 2015 CIFAR recipe (`configs/cifar10_iresnet.py`: 64k iterations, batch 128, every
family with its registry defaults: the ResNet with option A shortcuts, ResStage with
projections, iResNet with its improved shortcut). Duta et al. (abstract) report consistent
gains over the baseline, and a 3002-layer network trained on CIFAR-10 and CIFAR-100 "while the
baseline is not able to converge at such extreme depths". No table number or error is quoted
here: neither could be checked against the paper, and the repository holds none of its numbers.

Warm-up: from 110 layers on, every network starts with 400 iterations at lr 0.01, He 2015's
warm-up for ResNet-110 ("0.1 is slightly too large to start converging") and ResNet-1202
("trained as described above"). Without it the deep baselines could fail for a reason the paper
of the baseline already removed; all three families warm up alike, so that they differ only in
the network.

ResStage and iResNet have the same parameters at every depth (the improved shortcut's max-pool
has none); the ResNet has fewer, as option A's zero-padding shortcuts have no parameters.
Runs: 3 seeds at 56-1001 layers, one at 1202 and 3002 (in multiply-adds a 3002-layer network
is 2.5 1202-layer ones, 56 ResNet-56 ones): 36 + 6 = 42 runs. CIFAR-100:
`duta2020_cifar100_depths.py`.

  python -m resnet_jax.sweep --sweep=experiments/duta2020_cifar_depths.py --workdir=DIR --parallel=8
  python -m resnet_jax.report --workdir=DIR
"""

from resnet_jax.sweep import axis, product, zipit

FAMILIES = ('resnet', 'resstage', 'iresnet')
DEPTHS = (56, 110, 164, 1001)
DEEP = (1202, 3002)  # one seed each
WARMUP_FROM = 110  # He 2015: 400 iterations at lr 0.01 for ResNet-110 and -1202.
WARMUP_STEPS = 400


def models(depths):
  """The three families at `depths`, each warmed up from `WARMUP_FROM` layers on."""
  runs = [(family, depth) for depth in depths for family in FAMILIES]
  return zipit(
    axis('model', [f'cifar_{family}{depth}' for family, depth in runs]),
    axis('warmup_constant_steps', [WARMUP_STEPS if d >= WARMUP_FROM else 0 for _, d in runs]),
  )


def get_sweep():
  return {
    'config': 'configs/cifar10_iresnet.py',
    'points': (
      product(models(DEPTHS), axis('seed', [0, 1, 2])) + product(models(DEEP), axis('seed', [0]))
    ),
  }
