"""He et al. 2015, Table 6: CIFAR-10 ResNets of 20, 32, 44, 56, 110 and 1202 layers.

Option A shortcuts (zero-padding, no extra parameters), basic blocks, 6n+2 layers. He 2015,
Table 6, test error (%) on CIFAR-10; ResNet-110 is "best (mean +- std)" of 5 runs:

  | layers | params | error              |
  |--------|--------|--------------------|
  | 20     | 0.27 M | 8.75               |
  | 32     | 0.46 M | 7.51               |
  | 44     | 0.66 M | 7.17               |
  | 56     | 0.85 M | 6.97               |
  | 110    | 1.7 M  | 6.43 (6.61 +- 0.16) |
  | 1202   | 19.4 M | 7.93               |

Recipe: `configs/cifar10_resnet20.py`, He 2015 Sec. 4.2 (batch 128, lr 0.1, / 10 at 32k and
48k iterations, 64k in all, weight decay 1e-4, pad-4 crop and flip; trained on all 50k training
images, tested on the 10k test images). For ResNet-110 "0.1 is slightly too large to start
converging", so it uses lr 0.01 "until the training error is below 80% (about 400 iterations)",
and ResNet-1202 is "trained as described above": `warmup_constant_steps=400` at 110 and 1202.
Runs: 5 seeds at 110 layers (the paper's 5 runs; the report prints their best, `STATISTIC`),
one at every other depth, as the paper reports one number for them: 10 runs. The points
of 20-110 layers are also points of `he2015_fig6_cifar_plain_vs_resnet.py` (same names, same
configs): with one `--workdir` for both sweeps they train once.

  python -m resnet_jax.sweep --sweep=experiments/he2015_table6_cifar_depths.py --workdir=DIR
  python -m resnet_jax.report --workdir=DIR --sweep=experiments/he2015_table6_cifar_depths.py
"""

from resnet_jax.sweep import axis, product, zipit

STATISTIC = 'best'  # ResNet-110: "best (mean+-std)" of 5 runs

WARMUP_STEPS = 400  # lr 0.01 until the training error is below 80%, "about 400 iterations".


def runs(depths, warmup, seeds):
  """ResNets of `depths` with option A, `warmup` steps at lr 0.01, one run per seed."""
  return product(
    zipit(
      axis('model', [f'cifar_resnet{depth}' for depth in depths]),
      axis('model_kwargs.shortcut', ['A'] * len(depths)),
      axis('warmup_constant_steps', [warmup] * len(depths)),
    ),
    axis('seed', seeds),
  )


def get_sweep():
  return {
    'config': 'configs/cifar10_resnet20.py',
    'points': (
      runs((20, 32, 44, 56), 0, [0])
      + runs((110,), WARMUP_STEPS, [0, 1, 2, 3, 4])
      + runs((1202,), WARMUP_STEPS, [0])
    ),
  }
