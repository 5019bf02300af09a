"""Duta et al. 2020, CIFAR-10: ResNet vs ResStage vs iResNet at 56, 110, 164 and 1001 layers.

The CIFAR-layout networks of the three families (164 and 1001 layers: bottleneck blocks),
each trained with the He et al. 2015 CIFAR recipe (`configs/cifar10_iresnet.py`: 64k
iterations, batch 128), 3 seeds each: 36 runs. Duta et al. report iResNet ahead of the
baseline and trainable at depths (up to 3002 layers) where the baseline fails to converge.

  python -m resnet_jax.sweep --sweep=experiments/cifar10_iresnet.py --workdir=DIR --parallel=8
"""

from resnet_jax.sweep import axis, product

FAMILIES = ('resnet', 'resstage', 'iresnet')
DEPTHS = (56, 110, 164, 1001)


def get_sweep():
  return {
    'config': 'configs/cifar10_iresnet.py',
    'points': product(
      axis('model', [f'cifar_{family}{depth}' for depth in DEPTHS for family in FAMILIES]),
      axis('seed', [0, 1, 2]),
    ),
  }
