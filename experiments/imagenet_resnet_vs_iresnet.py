r"""Duta et al. 2020, ImageNet: ResNet vs iResNet at 50, 101 and 152 layers.

The official 90-epoch recipe of `configs/resnet50.py` (SGD, lr 0.1 per 256 images, divided by
10 at epochs 30, 60 and 80), one seed per model as in the paper: 6 runs. Each point needs
the whole machine; run them on a cluster from `--dry_run` or `--point=K`.

  python -m resnet_jax.sweep --sweep=experiments/imagenet_resnet_vs_iresnet.py \
    --workdir=DIR --dry_run
"""

from resnet_jax.sweep import axis


def get_sweep():
  return {
    'config': 'configs/resnet50.py',
    'points': axis(
      'model', [f'{family}{depth}' for depth in (50, 101, 152) for family in ('resnet', 'iresnet')]
    ),
  }
