"""He et al. 2015, Fig. 6: plain nets vs ResNets on CIFAR-10 at 20, 32, 44, 56 and 110 layers.

Fig. 6 plots training and test error against iterations: the plain nets get worse as they get
deeper (the degradation problem), the ResNets (option A, no extra parameters) get better. The
figure gives curves, not numbers; the ResNets' final test errors are those of Table 6
(`he2015_table6_cifar_depths.py`; at 110 layers the best of 5 runs):

  | layers | plain          | ResNet (Table 6) |
  |--------|----------------|------------------|
  | 20     | (curves only)  | 8.75             |
  | 32     | (curves only)  | 7.51             |
  | 44     | (curves only)  | 7.17             |
  | 56     | (curves only)  | 6.97             |
  | 110    | (curves only)  | 6.43             |

Recipe: `configs/cifar10_resnet20.py`, He 2015 Sec. 4.2 (batch 128, lr 0.1, / 10 at 32k and
48k iterations, 64k in all, weight decay 1e-4). At 110 layers both nets start with 400 iterations
at lr 0.01, the paper's warm-up for ResNet-110, so that the two differ only in their shortcuts.
One run per network: 10 runs. `python -m resnet_jax.report` plots the curves (`curves.png`:
test error bold, training error thin, as the figure) and error against depth (`depth.png`).
The ResNet points have the same names and configs as those of `he2015_table6_cifar_depths.py`:
with one `--workdir` for both sweeps they train once.

  python -m resnet_jax.sweep --sweep=experiments/he2015_fig6_cifar_plain_vs_resnet.py --workdir=DIR
  python -m resnet_jax.report --workdir=DIR
"""

from resnet_jax.sweep import axis, product, zipit

DEPTHS = (20, 32, 44, 56, 110)
WARMUP_FROM = 110  # He 2015: ResNet-110 warms up at lr 0.01 for about 400 iterations.
RUNS = [(family, depth) for depth in DEPTHS for family in ('plain', 'resnet')]


def get_sweep():
  return {
    'config': 'configs/cifar10_resnet20.py',
    'points': product(
      zipit(
        axis('model', [f'cifar_{family}{depth}' for family, depth in RUNS]),
        axis('model_kwargs.shortcut', ['none' if family == 'plain' else 'A' for family, _ in RUNS]),
        axis('warmup_constant_steps', [400 if depth >= WARMUP_FROM else 0 for _, depth in RUNS]),
      ),
      axis('seed', [0]),
    ),
  }
