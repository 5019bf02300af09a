"""He et al. 2016, Table 1: ResNet-110 on CIFAR-10 with scaled, gated, projected and dropped
shortcuts.

Each point changes the shortcut h(x) (and for some the branch F(x)) of every unit of the
original post-activation ResNet-110, relu(a * h(x) + b * F(x)); the definitions are those of
`resnet_jax.models.blocks.ModulatedShortcutBlock` (gates g(x) = sigmoid(W_g x + b_g), W_g a 1x1
convolution, b_g initialised to `gate_bias_init`), and the paper's 1x1-convolution shortcut is
He 2015's option C (1x1 conv + BN in every unit). He 2016, Table 1, test error (%) on CIFAR-10;
only the numbers that could be checked are quoted, the other rows are left blank here, not
guessed (the paper varies the initialisation of b_g for the gated units and marks the runs that
failed to train):

  | shortcut                       | a = on h(x)  | b = on F(x) | error |
  |--------------------------------|--------------|-------------|-------|
  | original                       | 1            | 1           | 6.61  |
  | constant scaling               | 0.5          | 1           |       |
  | constant scaling               | 0.5          | 0.5         | 12.35 |
  | exclusive gating, b_g init -6  | 1 - g(x)     | g(x)        | 8.70  |
  | shortcut-only gating, b_g 0    | 1 - g(x)     | 1           |       |
  | shortcut-only gating, b_g -6   | 1 - g(x)     | 1           |       |
  | 1x1 conv shortcut (option C)   | 1x1 conv     | 1           | 12.22 |
  | dropout shortcut, ratio 0.5    | dropout      | 1           |       |

Recipe: `configs/cifar_he2016.py` (He 2015's CIFAR recipe with 400 iterations at lr 0.01 first,
as He 2016 trains all its CIFAR networks; zero-padding shortcuts, option A, as the original
ResNet-110). 8 units x 5 seeds: 40 runs.

  python -m resnet_jax.sweep --sweep=experiments/he2016_table1_shortcuts.py --workdir=DIR
  python -m resnet_jax.report --workdir=DIR
"""

from resnet_jax.sweep import axis, product

# Each unit's overrides of `configs/cifar_he2016.py`'s model_kwargs (the original unit).
SHORTCUTS = [
  {'model_kwargs.shortcut': 'A'},  # original
  {
    'model_kwargs.modulation': 'constant_scaling',
    'model_kwargs.shortcut_scale': 0.5,
    'model_kwargs.residual_scale': 1.0,
  },
  {
    'model_kwargs.modulation': 'constant_scaling',
    'model_kwargs.shortcut_scale': 0.5,
    'model_kwargs.residual_scale': 0.5,
  },
  {'model_kwargs.modulation': 'exclusive_gating', 'model_kwargs.gate_bias_init': -6.0},
  {'model_kwargs.modulation': 'shortcut_only_gating', 'model_kwargs.gate_bias_init': 0.0},
  {'model_kwargs.modulation': 'shortcut_only_gating', 'model_kwargs.gate_bias_init': -6.0},
  {'model_kwargs.shortcut': 'C'},  # 1x1 convolution shortcut in every unit
  {'model_kwargs.modulation': 'dropout', 'model_kwargs.shortcut_dropout': 0.5},
]


def get_sweep():
  return {
    'config': 'configs/cifar_he2016.py',
    'fixed': {'model': 'cifar_resnet110'},
    'points': product(SHORTCUTS, axis('seed', [0, 1, 2, 3, 4])),
  }
