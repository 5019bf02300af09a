"""The options of later recipes on the embedded digits: do they help ResNet and iResNet here?

CIFAR-layout ResNet-20 and iResNet-20 on the 8x8 UCI digits (no download), 3 seeds each:
- the quickstart recipe (400 steps), then with each option alone: mixup 0.2 + CutMix 1.0,
  RandAugment (2 layers, magnitude 9), TrivialAugmentWide, an EMA of the weights (decay 0.99,
  a half-life of 69 steps; its top-1 is `ema_eval_top1`), stochastic depth 0.1;
- at 1,200 steps, where regularisers have room to matter: the quickstart recipe, and all of
  them together (TrivialAugmentWide standing for the per-image policy, random erasing 0.1 added,
  as torchvision's V2 recipe combines them).
48 runs.

  python -m resnet_jax.sweep --sweep=experiments/recipes_digits.py --workdir=/tmp/recipes
  python -m resnet_jax.report --workdir=/tmp/recipes
"""

from resnet_jax.sweep import axis, product

MIXUP = {'mixup_alpha': 0.2, 'cutmix_alpha': 1.0}
ALONE = [
  {},
  MIXUP,
  {'randaugment_layers': 2},
  {'trivial_augment': True},
  {'ema_decay': 0.99},
  {'stochastic_depth_rate': 0.1},
]
TOGETHER = {
  **MIXUP,
  'trivial_augment': True,
  'random_erasing': 0.1,
  'ema_decay': 0.99,
  'stochastic_depth_rate': 0.1,
}
LONGER = [{'num_train_steps': 1200}, {'num_train_steps': 1200, **TOGETHER}]


def get_sweep():
  return {
    'config': 'configs/quickstart.py',
    'fixed': {'eval_every_steps': 100, 'checkpoint_every_steps': 400},
    'points': product(
      ALONE + LONGER,
      axis('model', ['cifar_resnet20', 'cifar_iresnet20']),
      axis('seed', [0, 1, 2]),
    ),
  }
