"""He et al. 2016, Table 3: original vs pre-activation ResNet-164 and ResNet-1001 on CIFAR-10
and CIFAR-100.

Bottleneck networks of 164 and 1001 layers, each with the original post-activation units of
He 2015 and the full pre-activation units of He 2016 (`model_kwargs.activation`), shortcuts as
the authors' resnet-1k-layers code: 1x1 projections where the shape changes (option B), the
bottleneck striding on its first 1x1. He 2016, Table 3, test error (%):

  | dataset   | network     | original | pre-activation |
  |-----------|-------------|----------|----------------|
  | CIFAR-10  | ResNet-164  | 5.93     | 5.46           |
  | CIFAR-10  | ResNet-1001 | 7.61     | 4.92           |
  | CIFAR-100 | ResNet-164  | 25.16    | 24.33          |
  | CIFAR-100 | ResNet-1001 | 27.82    | 22.71          |

Parameters: 1.7 M at 164 layers (1,703,258 with pre-activation), 10.2 M at 1001 (weights
without BatchNorm; 10.3 M with it).

Recipe: `configs/cifar_he2016.py` (He 2015's CIFAR recipe with 400 iterations at lr 0.01 first,
as He 2016 trains all its CIFAR networks), the same for CIFAR-100. 2 datasets x 2 depths x
2 units x 3 seeds: 24 runs. A 1001-layer run costs about six 164-layer ones.

  python -m resnet_jax.sweep --sweep=experiments/he2016_table3_cifar.py --workdir=DIR --parallel=8
  python -m resnet_jax.report --workdir=DIR
"""

from resnet_jax.sweep import axis, product, zipit


def get_sweep():
  return {
    'config': 'configs/cifar_he2016.py',
    'fixed': {'model_kwargs.shortcut': 'B'},
    'points': product(
      zipit(axis('dataset', ['cifar10', 'cifar100']), axis('num_classes', [10, 100])),
      axis('model', ['cifar_resnet164', 'cifar_resnet1001']),
      axis('model_kwargs.activation', ['original', 'full_preactivation']),
      axis('seed', [0, 1, 2]),
    ),
  }
