"""He et al. 2016, Table 2: where BN and ReLU sit in the unit, ResNet-110 and ResNet-164 on
CIFAR-10.

The five unit orderings of the paper's Fig. 4, by `model_kwargs.activation` of the
post-activation family (`resnet_jax.models.ACTIVATIONS`): original (conv-BN-ReLU-conv-BN, add,
ReLU), BN after addition, ReLU before addition, ReLU-only pre-activation and full
pre-activation (BN-ReLU-conv-BN-ReLU-conv, add; the network of `cifar_preact_resnet*`).
He 2016, Table 2, test error (%) on CIFAR-10:

  | unit                       | ResNet-110 | ResNet-164 |
  |----------------------------|------------|------------|
  | original                   | 6.61       | 5.93       |
  | BN after addition          | 8.17       | 6.50       |
  | ReLU before addition       | 7.84       | 6.14       |
  | ReLU-only pre-activation   | 6.71       | 5.91       |
  | full pre-activation        | 6.37       | 5.46       |

Recipe: `configs/cifar_he2016.py` (He 2015's CIFAR recipe with 400 iterations at lr 0.01 first,
as He 2016 trains all its CIFAR networks). Shortcuts as in the authors' code: zero-padding
(option A) at 110 layers, basic blocks (fb.resnet.torch's CIFAR default, 1.7 M parameters);
1x1 projections (option B) at 164 layers, bottlenecks striding on their first 1x1
(resnet-1k-layers: 1,703,258 parameters with full pre-activation); with ReLU-only
pre-activation the projections take the activated input, as the paper's ("when pre-activation
is used, these projection shortcuts are also with pre-activation"). He 2016 reports "the median
accuracy of 5 runs" (`STATISTIC`): 2 depths x 5 units x 5 seeds: 50 runs.

  python -m resnet_jax.sweep --sweep=experiments/he2016_table2_activations.py --workdir=DIR
  python -m resnet_jax.report --workdir=DIR --sweep=experiments/he2016_table2_activations.py
"""

from resnet_jax.sweep import axis, product, zipit

STATISTIC = 'median'  # "the median accuracy of 5 runs"

ACTIVATIONS = (
  'original',
  'bn_after_addition',
  'relu_before_addition',
  'relu_preactivation',
  'full_preactivation',
)


def get_sweep():
  return {
    'config': 'configs/cifar_he2016.py',
    'points': product(
      zipit(
        axis('model', ['cifar_resnet110', 'cifar_resnet164']),
        axis('model_kwargs.shortcut', ['A', 'B']),
      ),
      axis('model_kwargs.activation', ACTIVATIONS),
      axis('seed', [0, 1, 2, 3, 4]),
    ),
  }
