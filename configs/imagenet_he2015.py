"""He et al. 2015 on ImageNet (Tables 2 and 3): plain nets and ResNets, 10-crop testing.

The training recipe is `resnet50.py`'s (SGD momentum 0.9, lr 0.1 per 256 images, weight decay
1e-4, 90 epochs, lr / 10 at epochs 30, 60 and 80), which is also what torchvision trains its
ResNets with. Where it departs from He 2015, Sec. 3.4, which divides the learning rate by 10
"when the error plateaus" over 60 x 10^4 iterations of 256 images (about 120 epochs), samples
the shorter side in [256, 480] for scale augmentation and adds colour augmentation: here the
schedule is fixed and the crops are `input_pipeline`'s random-resized ones, TF's
(`crop_sampler='inception'`): the paper's crops are of neither sampler, and its tables keep
the crops they were measured with.

What this config adds to `resnet50.py`:

* `model_kwargs.shortcut`: He 2015's option 'A', 'B' or 'C', or 'none' (plain nets). It
  overrides the family default, so a plain net must name 'none' itself (the sweeps do).
* `model_kwargs.activation='original'`: He 2016's unit orderings (Fig. 4) by override, e.g.
  'bn_after_addition' (its ResNet-101 on ImageNet) or 'full_preactivation' (its Table 5).
* `model_kwargs.stride_in_1x1=True`: bottlenecks stride on their first 1x1, as the paper's
  ResNet-50/101/152 ("v1", 3.86 G multiply-adds at 224 for ResNet-50; torchvision strides on the
  3x3, 4.09 G). Basic blocks (18, 34 layers) have no 1x1 and are unaffected; the parameter
  counts are the same either way.
* `eval_protocol='10crop'` (Tables 2 and 3 are 10-crop top-1 errors), every 25,020 steps (about
  5 epochs at batch 256) instead of `resnet50.py`'s 5,000, since each pass is 10 forward passes.

Used by `experiments/he2015_table2_plain_vs_resnet_imagenet.py` and
`experiments/he2015_table3_shortcuts.py`.
"""

import ml_collections

from configs import resnet50


def get_config():
  config = resnet50.get_config()
  config.model = 'resnet34'
  config.crop_sampler = 'inception'
  config.model_kwargs = ml_collections.ConfigDict(
    {'shortcut': 'B', 'activation': 'original', 'stride_in_1x1': True}
  )
  config.eval_protocol = '10crop'
  config.eval_every_steps = 25_020
  return config
