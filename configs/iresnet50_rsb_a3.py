"""iResNet-50 (Duta et al. 2020) under timm's "ResNet strikes back" A3 (`resnet50_rsb_a3.py`).

Every field of the recipe as ResNet-50 trains with it; only the network differs. No published
number for this pair.
"""

from configs import resnet50_rsb_a3


def get_config():
  config = resnet50_rsb_a3.get_config()
  config.model = 'iresnet50'
  return config
