r"""Duta et al. 2020, ImageNet: ResNet vs ResStage vs iResNet at 50, 101, 152 and 200 layers.

ResStage is the paper's stage-wise organisation of the blocks (one ReLU on the main path per
stage) with the usual projection shortcut; iResNet adds the improved shortcut (max-pool, then
1x1 conv + BN) and moves the stem's max-pool into the first stage. All three have the same
parameters at each depth (ResNet-50: 25,557,032). Duta et al. (abstract) report consistent
gains of iResNet over the baseline "without increasing the model complexity". No table number
or error is quoted here: neither could be checked against the paper, and the repository holds
none of its numbers.

Recipe: `configs/resnet50.py`, the official iResNet code's (SGD, lr 0.1 per 256 images,
divided by 10 at epochs 30, 60 and 80, 90 epochs, centre-crop evaluation at 224 of 256), one
seed per model: 12 runs. Each point needs the whole machine; run them on a
cluster from `--dry_run` or `--point=K`.

  python -m resnet_jax.sweep --sweep=experiments/duta2020_imagenet.py --workdir=DIR --dry_run
"""

from resnet_jax.sweep import axis

FAMILIES = ('resnet', 'resstage', 'iresnet')
DEPTHS = (50, 101, 152, 200)


def get_sweep():
  return {
    'config': 'configs/resnet50.py',
    'points': axis('model', [f'{family}{depth}' for depth in DEPTHS for family in FAMILIES]),
  }
