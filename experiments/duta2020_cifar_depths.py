"""Duta et al. 2020, CIFAR-10 depth series: ResNet vs ResStage vs iResNet from 56 to 3002 layers.

The CIFAR-layout networks of the three families at 56, 110, 164, 1001, 1202 and 3002 layers
(164 and 1001: bottleneck blocks, 9n+2 layers; the others basic blocks, 6n+2), each trained with
the He et al. 2015 CIFAR recipe (`configs/cifar10_iresnet.py`: 64k iterations, batch 128, every
family with its registry defaults: the ResNet with option A shortcuts, ResStage with
projections, iResNet with its improved shortcut). Duta et al. (abstract) report consistent
gains over the baseline, and a 3002-layer network trained on CIFAR-10 and CIFAR-100 "while the
baseline is not able to converge at such extreme depths". No table number or error is quoted
here: neither could be checked against the paper, and the repository holds none of its numbers.

ResStage and iResNet have the same parameters at every depth (the improved shortcut's max-pool
has none); the ResNet has fewer, as option A's zero-padding shortcuts have no parameters.
Runs: 3 seeds at 56-1001 layers, one at 1202 and 3002 (in multiply-adds a 3002-layer network
is 2.5 1202-layer ones, 56 ResNet-56 ones): 36 + 6 = 42 runs. CIFAR-100 is this sweep with
`dataset='cifar100'` and `num_classes=100` added to `fixed`.

  python -m resnet_jax.sweep --sweep=experiments/duta2020_cifar_depths.py --workdir=DIR --parallel=8
  python -m resnet_jax.report --workdir=DIR
"""

from resnet_jax.sweep import axis, product

FAMILIES = ('resnet', 'resstage', 'iresnet')
DEPTHS = (56, 110, 164, 1001)
DEEP = (1202, 3002)  # one seed each


def models(depths):
  return [f'cifar_{family}{depth}' for depth in depths for family in FAMILIES]


def get_sweep():
  return {
    'config': 'configs/cifar10_iresnet.py',
    'points': (
      product(axis('model', models(DEPTHS)), axis('seed', [0, 1, 2]))
      + product(axis('model', models(DEEP)), axis('seed', [0]))
    ),
  }
