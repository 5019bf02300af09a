"""He et al. 2016, CIFAR-10: original vs pre-activation residual units at 110 and 164 layers.

ResNet-110 (basic blocks) and ResNet-164 (bottleneck blocks), each with the original
post-activation units of He 2015 and the full pre-activation units of He 2016, trained with
the He 2015 CIFAR recipe of `configs/cifar10_resnet20.py`, 5 seeds each (the paper reports the
median of 5 runs: 6.61 vs 6.37% error at 110 layers, 5.93 vs 5.46% at 164, Table 3). As the
paper's Appendix states for all its CIFAR runs, the first 400 iterations use lr 0.01.

Shortcuts as in the authors' code: zero-padding (A) at 110 layers (fb.resnet.torch's CIFAR
default: 1.73 M parameters), 1x1 projections (B) at 164 layers (resnet-1k-layers: 1,703,258
parameters for the pre-activation ResNet-164); both arms' bottlenecks stride on their first 1x1.

  python -m resnet_jax.sweep --sweep=experiments/cifar10_preact.py --workdir=DIR
"""

from resnet_jax.sweep import axis, product, zipit

MODELS = ('cifar_resnet110', 'cifar_preact_resnet110', 'cifar_resnet164', 'cifar_preact_resnet164')
SHORTCUTS = ('A', 'A', 'B', 'B')


def get_sweep():
  return {
    'config': 'configs/cifar10_resnet20.py',
    'fixed': {'warmup_constant_steps': 400},
    'points': product(
      zipit(axis('model', MODELS), axis('model_kwargs.shortcut', SHORTCUTS)),
      axis('seed', [0, 1, 2, 3, 4]),
    ),
  }
