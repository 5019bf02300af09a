"""He et al. 2015, Section 4.2: CIFAR-10 ResNets, option A shortcuts.

Batch 128, SGD momentum 0.9, lr 0.1 divided by 10 at 32k and 48k iterations, stop at 64k,
weight decay 1e-4; 4-pixel padding, random 32x32 crop and horizontal flip. Other depths of
the paper (32, 44, 56, 110, 1202) by override, e.g. `--config.depth=110`; the ResStage and
iResNet families, which take no He 2015 shortcut option, with `cifar10_iresnet.py`.

For ResNet-110 "the initial learning rate of 0.1 is slightly too large to start converging", so
He 2015 uses "0.01 to warm up the training until the training error is below 80% (about 400
iterations)", and trains the 1202-layer network "as described above": add
`--config.warmup_constant_steps=400` for those two depths
(`experiments/he2015_table6_cifar_depths.py`). He 2016 (Appendix) does the same for all its CIFAR
runs: `cifar_he2016.py`.
"""

import ml_collections

from configs import default


def get_config():
  config = default.get_config()
  config.model = 'cifar_resnet20'
  # Shortcut option of He 2015: 'A' (zero-padding identity), 'B' or 'C' (projections).
  config.model_kwargs = ml_collections.ConfigDict({'shortcut': 'A'})
  config.dataset = 'cifar10'
  config.image_size = 32
  config.num_classes = 10
  config.batch_size = 128
  # "trained with a mini-batch size of 128 on two GPUs" (Sec. 4.2), each normalising its own 64
  # images. Inherited by cifar_he2016.py and cifar10_iresnet.py: Duta et al. publish no CIFAR
  # training script, and the latter trains with this recipe.
  config.bn_group_size = 64
  config.eval_batch_size = 500
  config.num_train_steps = 64_000
  config.learning_rate = 0.1
  config.schedule = 'step'
  config.schedule_unit = 'steps'
  config.lr_decay_at = (32_000, 48_000)
  config.warmup_constant_lr = 0.01  # used with warmup_constant_steps=400, see above
  config.weight_decay = 1e-4
  config.eval_every_steps = 2_000
  config.checkpoint_every_steps = 2_000
  return config
