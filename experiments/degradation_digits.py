"""He 2015's degradation problem (Fig. 1, 4 and 6) on the embedded digits, in minutes on a CPU.

Plain CIFAR-layout networks (`cifar_plainN`, no shortcuts) and ResNets (`cifar_resnetN`, option
A: identity shortcuts, zero-padded where the width doubles, so both have the same parameters) at
8, 20 and 32 layers, 3 seeds each: 18 runs. The recipe is the quickstart's (batch 64, lr 0.1,
50 linear warmup steps then cosine to 0, weight decay 5e-4, the digits' crop jitter), cut to 250
steps (11 epochs of the 1,437 training images). A budget this short relative to depth is where
the plain nets' optimisation difficulty shows on data this easy: the deeper plain nets end with
a far higher *training* error (mean of the last log window, steps 226-250), the ResNets do not.
Sweep and report: 9.7 minutes wall, 9.4 CPU-minutes on a 2-core machine shared with other jobs.
Results: experiments/results/degradation_digits/ and the README.

  python -m resnet_jax.sweep --sweep=experiments/degradation_digits.py --workdir=/tmp/degradation
  python -m resnet_jax.report --workdir=/tmp/degradation
"""

from resnet_jax.sweep import axis, product

DEPTHS = (8, 20, 32)
FAMILIES = ('plain', 'resnet')
SEEDS = (0, 1, 2)


def get_sweep():
  return {
    'config': 'configs/quickstart.py',
    'fixed': {'num_train_steps': 250, 'log_every_steps': 25, 'eval_every_steps': 50},
    'points': product(
      axis('model', [f'cifar_{family}{depth}' for depth in DEPTHS for family in FAMILIES]),
      axis('seed', list(SEEDS)),
    ),
  }
