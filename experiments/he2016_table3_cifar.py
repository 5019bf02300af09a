"""He et al. 2016, Table 3: original vs pre-activation units in ResNet-110, ResNet-110(1layer),
ResNet-164 and ResNet-1001 on CIFAR-10, and ResNet-164 and -1001 on CIFAR-100.

Each network with the original post-activation units of He 2015 and the full pre-activation
units of He 2016 (`model_kwargs.activation`). ResNet-110: 54 two-layer basic units, zero-padding
shortcuts (option A, as both papers' ResNet-110). "ResNet-110(1layer)": "a 110-layer ResNet
architecture in which each shortcut skips only 1 layer (i.e., a Residual Unit has only 1
layer)", 108 one-layer units of a 3x3 convolution (`model_kwargs.block='one_layer'`), option A.
ResNet-164 and -1001: bottlenecks with shortcuts as the authors' resnet-1k-layers code, 1x1
projections where the shape changes (option B), striding on the first 1x1. He 2016, Table 3,
test error (%), "the median accuracy of 5 runs":

  | dataset   | network            | original | pre-activation |
  |-----------|--------------------|----------|----------------|
  | CIFAR-10  | ResNet-110(1layer) | 9.90     | 8.91           |
  | CIFAR-10  | ResNet-110         | 6.61     | 6.37           |
  | CIFAR-10  | ResNet-164         | 5.93     | 5.46           |
  | CIFAR-10  | ResNet-1001        | 7.61     | 4.92           |
  | CIFAR-100 | ResNet-164         | 25.16    | 24.33          |
  | CIFAR-100 | ResNet-1001        | 27.82    | 22.71          |

Parameters: 1.7 M at 110 layers, with one- or two-layer units alike (the same 108 3x3
convolutions), and at 164 (1,703,258 with pre-activation); 10.2 M at 1001 (weights without
BatchNorm; 10.3 M with it).

Recipe: `configs/cifar_he2016.py` (He 2015's CIFAR recipe with 400 iterations at lr 0.01 first,
as He 2016 trains all its CIFAR networks), the same for CIFAR-100. 6 networks x 2 units x
5 seeds (the paper's 5 runs; the report prints the median, `STATISTIC`): 60 runs. A 1001-layer
run costs about six 164-layer ones.

  python -m resnet_jax.sweep --sweep=experiments/he2016_table3_cifar.py --workdir=DIR --parallel=8
  python -m resnet_jax.report --workdir=DIR --sweep=experiments/he2016_table3_cifar.py
"""

from resnet_jax.sweep import axis, product

STATISTIC = 'median'  # "the median accuracy of 5 runs"


def network(dataset, model, shortcut, **extra):
  classes = {'cifar10': 10, 'cifar100': 100}[dataset]
  overrides = {'dataset': dataset, 'num_classes': classes, 'model': model}
  return overrides | {'model_kwargs.shortcut': shortcut} | extra


# The table's rows: (dataset, network, shortcut option).
NETWORKS = [
  network('cifar10', 'cifar_resnet110', 'A', **{'model_kwargs.block': 'one_layer'}),
  network('cifar10', 'cifar_resnet110', 'A'),
  *(
    network(dataset, model, 'B')
    for dataset in ('cifar10', 'cifar100')
    for model in ('cifar_resnet164', 'cifar_resnet1001')
  ),
]


def get_sweep():
  return {
    'config': 'configs/cifar_he2016.py',
    'points': product(
      NETWORKS,
      axis('model_kwargs.activation', ['original', 'full_preactivation']),
      axis('seed', [0, 1, 2, 3, 4]),
    ),
  }
