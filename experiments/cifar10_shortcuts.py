"""He et al. 2015, shortcut options A / B / C, on CIFAR-10 ResNet-20 and ResNet-56.

A: identity shortcuts, zero-padded where the width grows (no parameters); B: projection
shortcuts where the shape changes, identity elsewhere; C: projections everywhere. The paper
compares them on ImageNet ResNet-34 (Table 3: C < B < A in error, by small margins) and uses
A on CIFAR; this sweep repeats the comparison at CIFAR scale, 3 seeds each: 18 runs.

  python -m resnet_jax.sweep --sweep=experiments/cifar10_shortcuts.py --workdir=DIR
"""

from resnet_jax.sweep import axis, product


def get_sweep():
  return {
    'config': 'configs/cifar10_resnet20.py',
    'points': product(
      axis('model', ['cifar_resnet20', 'cifar_resnet56']),
      axis('model_kwargs.shortcut', ['A', 'B', 'C']),
      axis('seed', [0, 1, 2]),
    ),
  }
