r"""He et al. 2016, Sec. 5: ImageNet ResNet-101 with BN after addition (Fig. 4(b)) vs the
original unit.

"We did finish a 'BN after addition' version (Fig. 4(b)) of ResNet-101 on ImageNet and observed
higher training loss and validation error. This model's single-crop (224x224) validation error
is 24.6%/7.5%, vs. the original-101's 23.6%/7.1%." (He 2016, Sec. 5, "Comparisons on
ImageNet"; no table):

  | ResNet-101 unit   | top-1 | top-5 |
  |-------------------|-------|-------|
  | original          | 23.6  | 7.1   |
  | BN after addition | 24.6  | 7.5   |

Recipe: `configs/imagenet_he2015.py` (He 2015's ResNet-101: option B, bottlenecks striding on
the first 1x1) with He 2016's ImageNet schedule (lr 0.1, divided by 10 at 30 and 60 epochs,
no warm-up; 90 epochs at batch 256), single 224x224 centre crop of the image resized to 256 as
He 2015 tested. The training crops are `input_pipeline`'s random-resized ones, not He 2015's
scale augmentation. One run per unit, as the paper: 2 runs.

  python -m resnet_jax.sweep --sweep=experiments/he2016_sec5_imagenet_bn_after_addition.py \
    --workdir=DIR --dry_run
"""

from resnet_jax.sweep import axis


def get_sweep():
  return {
    'config': 'configs/imagenet_he2015.py',
    'fixed': {'model': 'resnet101', 'eval_protocol': 'center', 'lr_decay_at': (30, 60)},
    'points': axis('model_kwargs.activation', ['original', 'bn_after_addition']),
  }
