"""iResNet-50 (Duta et al. 2020) under torchvision's ResNet-50 V2 recipe (`resnet50_tv2.py`).

Every field of the recipe as ResNet-50 trains with it; only the network differs, so the pair
answers whether iResNet's gain under the 90-epoch recipe (77.31% against 76.12% top-1, the
official code's README) survives a modern one. No published number for this pair.
"""

from configs import resnet50_tv2


def get_config():
  config = resnet50_tv2.get_config()
  config.model = 'iresnet50'
  return config
