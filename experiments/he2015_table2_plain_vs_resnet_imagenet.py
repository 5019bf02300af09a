r"""He et al. 2015, Table 2: plain-18 and plain-34 vs ResNet-18 and ResNet-34 on ImageNet.

The degradation problem: without shortcuts the 34-layer net is worse than the 18-layer one;
with identity shortcuts (option A: zero-padding where the width grows, so each ResNet has exactly
the parameters of its plain net) the 34-layer net is the better one. He 2015, Table 2, top-1
error (%, 10-crop testing) on the ImageNet validation set:

  | layers | plain | ResNet (A) |
  |--------|-------|------------|
  | 18     | 27.94 | 27.88      |
  | 34     | 28.54 | 25.03      |

(The 34-layer numbers are also Table 3's plain-34 and ResNet-34 A rows.)

Recipe: `configs/imagenet_he2015.py` (the 90-epoch recipe of `resnet50.py`, 10-crop evaluation;
its docstring lists where it departs from the paper's). One run per network as in the paper:
4 runs. `plain34` and `resnet34` with option A are also points of
`he2015_table3_shortcuts.py`, with the same names and configs: give both sweeps the same
`--workdir` and those two train once.

  python -m resnet_jax.sweep --sweep=experiments/he2015_table2_plain_vs_resnet_imagenet.py \
    --workdir=DIR --dry_run
"""

from resnet_jax.sweep import axis, zipit

MODELS = ('plain18', 'resnet18', 'plain34', 'resnet34')
SHORTCUTS = ('none', 'A', 'none', 'A')


def get_sweep():
  return {
    'config': 'configs/imagenet_he2015.py',
    'points': zipit(axis('model', MODELS), axis('model_kwargs.shortcut', SHORTCUTS)),
  }
