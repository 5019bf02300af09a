"""He et al. 2016, Table 1: ResNet-110 on CIFAR-10 with scaled, gated, projected and dropped
shortcuts.

Each point changes the shortcut h(x) (and for some the branch F(x)) of every unit of the
original post-activation ResNet-110, relu(a * h(x) + b * F(x)); the definitions are those of
`resnet_jax.models.blocks.ModulatedShortcutBlock` (gates g(x) = sigmoid(W_g x + b_g), W_g a 1x1
convolution, b_g initialised to `gate_bias_init`), and the paper's 1x1-convolution shortcut is
He 2015's option C (1x1 conv + BN in every unit). He 2016, Table 1, test error (%) on CIFAR-10,
every row of the table ("We report 'fail' when the test error is higher than 20%"):

  | shortcut                          | a = on h(x) | b = on F(x) | error | remark             |
  |-----------------------------------|-------------|-------------|-------|--------------------|
  | original                          | 1           | 1           | 6.61  |                    |
  | constant scaling                  | 0           | 1           | fail  | "a plain net"      |
  | constant scaling                  | 0.5         | 1           | fail  |                    |
  | constant scaling                  | 0.5         | 0.5         | 12.35 | frozen gating      |
  | exclusive gating, b_g init 0..-5  | 1 - g(x)    | g(x)        | fail  | one point per b_g  |
  | exclusive gating, b_g init -6     | 1 - g(x)    | g(x)        | 8.70  |                    |
  | exclusive gating, b_g init -7     | 1 - g(x)    | g(x)        | 9.81  |                    |
  | shortcut-only gating, b_g init 0  | 1 - g(x)    | 1           | 12.86 |                    |
  | shortcut-only gating, b_g init -6 | 1 - g(x)    | 1           | 6.91  |                    |
  | 1x1 conv shortcut (option C)      | 1x1 conv    | 1           | 12.22 |                    |
  | dropout shortcut, ratio 0.5       | dropout 0.5 | 1           | fail  |                    |

The "plain net" row is the original unit with its shortcut scaled by 0 (the same layers and
parameters as ResNet-110; its zero-padding shortcuts then add nothing). The dropout shortcut is
the paper's, not rescaled: "Dropout statistically imposes a scale of lambda with an expectation
of 0.5 on the shortcut" (Sec. 3.1), so a unit keeps each element of x or zeroes it in training
and uses 0.5 x at test (`modulation='dropout'`; 'inverted_dropout' is the rescaled form). The
authors' code for this table is not public, so the paper's text is the definition. The paper
chose b_g = -6 of the exclusive gates by cross-validation over 0 ... -10 on the training set;
the points train every initial value the table reports.

Recipe: `configs/cifar_he2016.py` (He 2015's CIFAR recipe with 400 iterations at lr 0.01 first,
as He 2016 trains all its CIFAR networks; zero-padding shortcuts, option A, as the original
ResNet-110). He 2016 reports "the median accuracy of 5 runs for each architecture on CIFAR":
16 units x 5 seeds: 80 runs. The report prints the median (`STATISTIC`) and 'fail' above 20%
error (`FAIL_ABOVE`).

  python -m resnet_jax.sweep --sweep=experiments/he2016_table1_shortcuts.py --workdir=DIR
  python -m resnet_jax.report --workdir=DIR --sweep=experiments/he2016_table1_shortcuts.py
"""

from resnet_jax.sweep import axis, product

STATISTIC = 'median'  # "the median accuracy of 5 runs"
FAIL_ABOVE = 20.0  # "We report 'fail' when the test error is higher than 20%"


def scaling(shortcut_scale, residual_scale):
  return {
    'model_kwargs.modulation': 'constant_scaling',
    'model_kwargs.shortcut_scale': shortcut_scale,
    'model_kwargs.residual_scale': residual_scale,
  }


def gating(modulation, gate_bias_init):
  return {'model_kwargs.modulation': modulation, 'model_kwargs.gate_bias_init': gate_bias_init}


# Each unit's overrides of `configs/cifar_he2016.py`'s model_kwargs (the original unit), in the
# table's order; the published error (%) of each, None for 'fail'.
SHORTCUTS = [
  ({'model_kwargs.shortcut': 'A'}, 6.61),  # original
  (scaling(0.0, 1.0), None),  # a plain net
  (scaling(0.5, 1.0), None),
  (scaling(0.5, 0.5), 12.35),  # frozen gating
  *((gating('exclusive_gating', float(-b)), None) for b in range(6)),  # b_g = 0 ... -5
  (gating('exclusive_gating', -6.0), 8.70),
  (gating('exclusive_gating', -7.0), 9.81),
  (gating('shortcut_only_gating', 0.0), 12.86),
  (gating('shortcut_only_gating', -6.0), 6.91),
  ({'model_kwargs.shortcut': 'C'}, 12.22),  # 1x1 convolution shortcut in every unit
  ({'model_kwargs.modulation': 'dropout', 'model_kwargs.shortcut_dropout': 0.5}, None),
]


def get_sweep():
  return {
    'config': 'configs/cifar_he2016.py',
    'fixed': {'model': 'cifar_resnet110'},
    'points': product([unit for unit, _ in SHORTCUTS], axis('seed', [0, 1, 2, 3, 4])),
  }
