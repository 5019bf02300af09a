r"""He et al. 2016, Table 5: original vs pre-activation ResNet-152 and ResNet-200 on ImageNet,
tested on a single 320x320 crop.

"We test a single 320x320 crop from s = 320, for all original and our ResNets": the shorter side
is resized to 320 and the centre 320x320 crop classified, `eval_image_size=320` with
`eval_crop_fraction=1.0`. (The ImageNet configs' 0.875, 224 of 256, would resize to 366 and
crop the centre 320.) He 2016, Table 5, single-crop error (%) on the ILSVRC 2012 validation set,
"scale" augmentation, 224x224 training crops:

  | network                         | test crop | top-1 | top-5 |
  |---------------------------------|-----------|-------|-------|
  | ResNet-152, original unit       | 224x224   | 23.0  | 6.7   |
  | ResNet-152, original unit       | 320x320   | 21.3  | 5.5   |
  | ResNet-152, pre-activation unit | 320x320   | 21.1  | 5.5   |
  | ResNet-200, original unit       | 320x320   | 21.8  | 6.0   |
  | ResNet-200, pre-activation unit | 320x320   | 20.7  | 5.3   |

The 224x224 row is the first network tested "on s = 256" as He 2015 did: evaluate that point's
workdir with `--config.eval_only=True --config.eval_image_size=224
--config.eval_crop_fraction=0.875`. The table's last rows (pre-activation ResNet-200 with scale
and aspect-ratio augmentation, 20.1 / 4.8, fb.resnet.torch's model; Inception v3) are not
points.

Recipe: `configs/imagenet_he2015.py` (He 2015's networks: option B, bottlenecks striding on the
first 1x1) with He 2016's ImageNet schedule, "the learning rate starts from 0.1 (no warming
up), and is divided by 10 at 30 and 60 epochs", over the config's 90 epochs at batch 256 (the
paper gives no length; fb.resnet.torch's ImageNet schedule also divides every 30 epochs).
What differs: the training crops are `input_pipeline`'s random-resized ones (scale and aspect
ratio, the augmentation of Table 5's last row), not He 2015's scale augmentation alone (shorter
side sampled in [256, 480]). One run per network, as the paper: 4 runs.

  python -m resnet_jax.sweep --sweep=experiments/he2016_table5_imagenet_320.py --workdir=DIR \
    --dry_run
"""

from resnet_jax.sweep import axis, product

EVAL_320 = {'eval_protocol': 'center', 'eval_image_size': 320, 'eval_crop_fraction': 1.0}


def get_sweep():
  return {
    'config': 'configs/imagenet_he2015.py',
    'fixed': {**EVAL_320, 'lr_decay_at': (30, 60)},
    'points': product(
      axis('model', ['resnet152', 'resnet200']),
      axis('model_kwargs.activation', ['original', 'full_preactivation']),
    ),
  }
