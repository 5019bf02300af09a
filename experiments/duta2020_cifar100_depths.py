"""Duta et al. 2020, CIFAR-100 depth series: ResNet vs ResStage vs iResNet from 56 to 3002
layers.

The points of `duta2020_cifar_depths.py` (the three families at 56, 110, 164, 1001, 1202 and
3002 layers, 400 warm-up iterations at lr 0.01 from 110 layers on) on CIFAR-100: the paper
trains its depth series, up to the 3002-layer network, on CIFAR-10 and CIFAR-100. No table
number or error is quoted: neither could be checked against the paper.

Recipe: `configs/cifar10_iresnet.py` (He 2015's CIFAR recipe: 64k iterations at batch 128, lr
0.1 / 10 at 32k and 48k) with `dataset='cifar100'` and `num_classes=100`, as He 2016 trains
CIFAR-100 with its CIFAR-10 recipe. Runs: 3 seeds at 56-1001 layers, one at 1202 and 3002:
36 + 6 = 42 runs.

  python -m resnet_jax.sweep --sweep=experiments/duta2020_cifar100_depths.py --workdir=DIR \
    --parallel=8
  python -m resnet_jax.report --workdir=DIR
"""

from experiments import duta2020_cifar_depths as cifar10


def get_sweep():
  """The CIFAR-10 series' points, on CIFAR-100."""
  return cifar10.get_sweep() | {'fixed': {'dataset': 'cifar100', 'num_classes': 100}}
