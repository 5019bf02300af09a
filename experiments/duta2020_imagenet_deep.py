r"""Duta et al. 2020, ImageNet, 302 and 404 layers: iResNet beyond the usual depths.

iResNet-302 (4, 34, 58, 4 bottlenecks per stage) and iResNet-404 (4, 46, 80, 4), the depths of
the official code (github.com/iduta/iresnet, `models/iresnet.py`), at which the paper trains
iResNet on ImageNet. No number is quoted here: neither the paper's table nor its errors could be
checked, and the official README lists 50-200 layers only (`duta2020_imagenet.py`). The zoo has
no ResNet or ResStage at these depths, so the sweep trains iResNet alone; compare with the
200-layer points of `duta2020_imagenet.py`.

Recipe: `configs/iresnet50.py`, the official script's (SGD, lr 0.1 at batch 256, drops after
epochs 29, 59 and 79, 90 epochs, centre-crop evaluation at 224 of 256), one seed each: 2 runs.
iResNet-404 has 134 blocks, ResNet-152 50: about 2.7 times its activations to keep per image.

  python -m resnet_jax.sweep --sweep=experiments/duta2020_imagenet_deep.py --workdir=DIR --dry_run
"""

from resnet_jax.sweep import axis

DEPTHS = (302, 404)


def get_sweep():
  return {
    'config': 'configs/iresnet50.py',
    'points': axis('model', [f'iresnet{depth}' for depth in DEPTHS]),
  }
