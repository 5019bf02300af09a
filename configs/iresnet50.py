"""iResNet-50 (Duta et al. 2020) on ImageNet, with the ResNet-50 recipe of `resnet50.py`."""

from configs import resnet50


def get_config():
  config = resnet50.get_config()
  config.model = 'iresnet50'
  return config
