r"""Duta et al. 2020, ImageNet, the ResGroup family: wide grouped bottlenecks with and without
the improved residual network.

The official code's four grouped models (github.com/iduta/iresnet, `models/resgroup.py`,
`resgroupfix.py`, `iresgroup.py`, `iresgroupfix.py`) at 50, 101 and 152 layers: bottlenecks of
256 ... 2048 channels inside and half that at the output, the 3x3 grouped. 'resgroup' and
'iresgroup' use 8, 16, 32 and 64 groups in the four stages, the 'fix' variants 64 in every stage;
'i' is the improved residual network (ResStage organisation and the improved shortcut). Each
pair with and without 'i' has the same parameters. No number is quoted: the paper's ResGroup
results could not be checked against its text, and the official README lists none.

Recipe: `configs/iresnet50.py`, the official script's (SGD, lr 0.1 at batch 256, drops after
epochs 29, 59 and 79, 90 epochs, centre-crop evaluation at 224 of 256), one seed per model:
4 families x 3 depths: 12 runs.

  python -m resnet_jax.sweep --sweep=experiments/duta2020_resgroup_imagenet.py --workdir=DIR \
    --dry_run
"""

from resnet_jax.sweep import axis

FAMILIES = ('resgroup', 'iresgroup', 'resgroupfix', 'iresgroupfix')
DEPTHS = (50, 101, 152)


def get_sweep():
  return {
    'config': 'configs/iresnet50.py',
    'points': axis('model', [f'{family}{depth}' for depth in DEPTHS for family in FAMILIES]),
  }
