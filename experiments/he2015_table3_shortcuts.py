r"""He et al. 2015, Table 3: shortcut options A / B / C of ResNet-34, and ResNet-50/101/152.

A: identity shortcuts, zero-padded where the width grows (no parameters); B: 1x1 projections
(conv + BN) where the shape changes, identity elsewhere; C: projections in every block. The
deeper bottleneck networks use option B, and stride on their first 1x1 as the paper's.
He 2015, Table 3, top-1 error (%, 10-crop testing) on the ImageNet validation set:

  | model       | top-1 error |
  |-------------|-------------|
  | plain-34    | 28.54       |
  | ResNet-34 A | 25.03       |
  | ResNet-34 B | 24.52       |
  | ResNet-34 C | 24.19       |
  | ResNet-50   | 22.85       |
  | ResNet-101  | 21.75       |
  | ResNet-152  | 21.43       |

(The table's other rows, VGG-16, GoogLeNet and PReLU-net, are not in the model zoo.)

Recipe: `configs/imagenet_he2015.py` (the 90-epoch recipe of `resnet50.py`, 10-crop evaluation;
its docstring lists where it departs from the paper's). One run per network: 7 runs. The
plain-34 and ResNet-34 A points are also points of `he2015_table2_plain_vs_resnet_imagenet.py`
(same names, same configs): with one `--workdir` for both sweeps they train once.

  python -m resnet_jax.sweep --sweep=experiments/he2015_table3_shortcuts.py --workdir=DIR --dry_run
"""

from resnet_jax.sweep import axis, zipit

MODELS = ('plain34', 'resnet34', 'resnet34', 'resnet34', 'resnet50', 'resnet101', 'resnet152')
SHORTCUTS = ('none', 'A', 'B', 'C', 'B', 'B', 'B')


def get_sweep():
  return {
    'config': 'configs/imagenet_he2015.py',
    'points': zipit(axis('model', MODELS), axis('model_kwargs.shortcut', SHORTCUTS)),
  }
