"""He et al. 2016 on CIFAR (Tables 1-3): the He 2015 recipe, warmed up in every run, with the
options of the paper's unit ablations.

The recipe of `cifar10_resnet20.py` (batch 128, lr 0.1, / 10 at 32k and 48k iterations, 64k in
all, weight decay 1e-4, pad-4 crop and flip), with the first 400 iterations at lr 0.01: He 2016's
Appendix does this "for all CIFAR experiments" (He 2015 only for ResNet-110 and -1202).
CIFAR-100 by `dataset='cifar100'` and `num_classes=100`.

`model_kwargs` holds every option a He 2016 sweep varies, at the values of the original unit,
so that sweeps override real fields; they are options of the post-activation families
(`cifar_resnet*`), whose `activation='full_preactivation'` builds the pre-activation network of
`cifar_preact_resnet*` (the same layers and parameters):

  shortcut        He 2015's option: 'A' (zero-padding, the ResNet-110 of both papers) or 'B'
                  (1x1 projections where the shape changes, the authors' ResNet-164 and -1001).
  block           None (the depth's default), or 'one_layer': units of one 3x3 convolution, the
                  "ResNet-110(1layer)" of Table 3.
  activation      the unit orderings of Fig. 4 / Table 2.
  modulation      the shortcuts of Fig. 2 / Table 1 (None: the original identity shortcut), with
                  shortcut_scale, residual_scale, gate_bias_init and shortcut_dropout
                  (see `resnet_jax.models.blocks.ModulatedShortcutBlock`).
"""

import ml_collections
from ml_collections import config_dict

from configs import cifar10_resnet20


def get_config():
  config = cifar10_resnet20.get_config()
  config.model = 'cifar_resnet110'
  config.model_kwargs = ml_collections.ConfigDict(
    {
      'shortcut': 'A',
      'block': config_dict.placeholder(str),  # None, or 'one_layer' by override
      'activation': 'original',
      'modulation': config_dict.placeholder(str),  # None, or a string by override
      'shortcut_scale': 0.5,
      'residual_scale': 1.0,
      'gate_bias_init': -6.0,
      'shortcut_dropout': 0.5,
    }
  )
  config.bn_group_size = 64  # Appendix: "The mini-batch size is 128 on 2 GPUs (64 each)"
  config.warmup_constant_steps = 400
  config.warmup_constant_lr = 0.01
  return config
