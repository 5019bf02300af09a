"""ResNet vs ResStage vs iResNet (Duta et al. 2020) at two depths on the embedded digits.

The CIFAR-layout networks of the three families at depths 14 and 32, trained with the
quickstart recipe on the 8x8 UCI digits (1,797 images, no download) for 150 steps, 3 seeds
each: 18 runs, a laptop-scale version of the comparison in `duta2020_cifar_depths.py`. The
sweep takes about 4 minutes on an idle 2-core machine (one sweep worker, empty compilation
cache). Results: experiments/results/digits_ablation/.

  python -m resnet_jax.sweep --sweep=experiments/digits_ablation.py --workdir=/tmp/digits
  python -m resnet_jax.report --workdir=/tmp/digits
"""

from resnet_jax.sweep import axis, product

FAMILIES = ('resnet', 'resstage', 'iresnet')
DEPTHS = (14, 32)


def get_sweep():
  return {
    'config': 'configs/quickstart.py',
    'fixed': {'num_train_steps': 150, 'eval_every_steps': 25, 'log_every_steps': 25},
    'points': product(
      axis('model', [f'cifar_{family}{depth}' for depth in DEPTHS for family in FAMILIES]),
      axis('seed', [0, 1, 2]),
    ),
  }
