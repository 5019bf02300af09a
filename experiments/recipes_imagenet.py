"""Does iResNet's gain survive a modern training recipe? ResNet-50 vs iResNet-50 under three.

- the 90-epoch recipe of the official iResNet code (`configs/resnet50.py`: SGD, lr 0.1 per 256
  images, steps at 30/60/80), under which the official README reports 76.12% (ResNet-50) and
  77.31% (iResNet-50) top-1;
- torchvision's ResNet-50 V2 recipe (`configs/resnet50_tv2.py`, 600 epochs: 80.858% for
  ResNet-50);
- timm's "ResNet strikes back" A3 (`configs/resnet50_rsb_a3.py`, 100 epochs at 160 px: 78.1%
  for ResNet-50).

Each network under each recipe, 3 seeds: 18 runs, each a multi-day ImageNet job for a whole
machine (the tv2 points take 6.7 times the 90-epoch ones). Run them on a cluster:

  python -m resnet_jax.sweep --sweep=experiments/recipes_imagenet.py --workdir=DIR --dry_run
  python -m resnet_jax.report --workdir=DIR --sweep=experiments/recipes_imagenet.py

The report lists each recipe by its `recipe` field. All three evaluate a 224 crop; the
published numbers are top-1 on the ImageNet validation set.
"""

from resnet_jax.sweep import axis, product, zipit

RECIPES = {
  'configs/resnet50.py': '90_epochs',
  'configs/resnet50_tv2.py': 'torchvision_v2',
  'configs/resnet50_rsb_a3.py': 'rsb_a3',
}
# Published ResNet-50 top-1 (%) under each recipe; no iResNet-50 figure exists for the last two.
PUBLISHED = {
  ('resnet50', '90_epochs'): 76.12,
  ('iresnet50', '90_epochs'): 77.31,
  ('resnet50', 'torchvision_v2'): 80.858,
  ('resnet50', 'rsb_a3'): 78.1,
}
STATISTIC = 'median'


def get_sweep():
  return {
    'config': 'configs/resnet50.py',
    'points': product(
      zipit(axis('config', list(RECIPES)), axis('recipe', list(RECIPES.values()))),
      axis('model', ['resnet50', 'iresnet50']),
      axis('seed', [0, 1, 2]),
    ),
  }
