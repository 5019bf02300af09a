"""Duta et al. 2020 on CIFAR-10: the He 2015 recipe of `cifar10_resnet20.py` for any family.

`cifar10_resnet20.py` sets `model_kwargs.shortcut='A'`, a He 2015 option that the ResStage and
iResNet families do not take (theirs is 'B' for ResStage or 'improved' for iResNet), so this
config clears `model_kwargs`; every family then trains with its registry defaults
(cifar_resnet: option A).
Used by `experiments/duta2020_cifar_depths.py`, e.g. `--config.model=cifar_iresnet110`.
"""

import ml_collections

from configs import cifar10_resnet20


def get_config():
  config = cifar10_resnet20.get_config()
  config.model = 'cifar_iresnet56'
  config.model_kwargs = ml_collections.ConfigDict()
  return config
