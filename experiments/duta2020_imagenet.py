r"""Duta et al. 2020, ImageNet: ResNet vs ResStage vs iResNet at 50, 101, 152 and 200 layers.

ResStage is the paper's stage-wise organisation of the blocks (one ReLU on the main path per
stage) with the usual projection shortcut; iResNet adds the improved shortcut (max-pool, then
1x1 conv + BN) and moves the stem's max-pool into the first stage. All three have the same
parameters at each depth (ResNet-50: 25,557,032). Duta et al. (abstract) report consistent
gains of iResNet over the baseline "without increasing the model complexity". No table of the
paper is quoted here: its numbers could not be checked against the paper's text. The official
code's README (github.com/iduta/iresnet, README.md, "The accuracy on ImageNet (using the
default training settings)") gives these top-1 accuracies (%), and the published models:

  | network | 50 layers | 101 layers | 152 layers | 200 layers |
  |---------|-----------|------------|------------|------------|
  | ResNet  | 76.12     | 78.00      | 78.45      | 77.55      |
  | iResNet | 77.31     | 78.64      | 79.34      | 79.48      |

(top-1 errors 23.88 / 22.00 / 21.55 / 22.45 and 22.69 / 21.36 / 20.66 / 20.52; ResStage is not
in that table). `PUBLISHED` holds them.

Recipe: `configs/iresnet50.py`, the official script's (SGD, lr 0.1 at batch 256, its
MultiStepLR stepped before each epoch: drops after epochs 29, 59 and 79, 90 epochs in all,
centre-crop evaluation at 224 of 256), one seed per model as the README: 12 runs. Each point
needs the whole machine; run them on a cluster from `--dry_run` or `--point=K`.

  python -m resnet_jax.sweep --sweep=experiments/duta2020_imagenet.py --workdir=DIR --dry_run
"""

from resnet_jax.sweep import axis

FAMILIES = ('resnet', 'resstage', 'iresnet')
DEPTHS = (50, 101, 152, 200)
# Top-1 accuracy (%) of the official code's README, by (family, depth).
PUBLISHED = {
  ('resnet', 50): 76.12,
  ('resnet', 101): 78.00,
  ('resnet', 152): 78.45,
  ('resnet', 200): 77.55,
  ('iresnet', 50): 77.31,
  ('iresnet', 101): 78.64,
  ('iresnet', 152): 79.34,
  ('iresnet', 200): 79.48,
}


def get_sweep():
  return {
    'config': 'configs/iresnet50.py',
    'points': axis('model', [f'{family}{depth}' for depth in DEPTHS for family in FAMILIES]),
  }
