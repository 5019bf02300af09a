"""ResNet-50 on ImageNet, torchvision's recipe of its IMAGENET1K_V2 weights (80.858% top-1).

The recipe as published with the weights (pytorch.org blog, 2021-11-18, "How to train
state-of-the-art models using TorchVision's latest primitives"; the weights' meta in
torchvision/models/resnet.py links it): 600 epochs of SGD (momentum 0.9) on 8 GPUs x 128
images, lr 0.5 with a 5-epoch linear warm-up then cosine decay to 0, weight decay 2e-5 with
none on BatchNorm, label smoothing 0.1, mixup 0.2 or CutMix 1.0 (one of them per batch, with
equal probability), TrivialAugmentWide, random erasing 0.1, an EMA of the weights and
BatchNorm statistics, training crops of 176 and a test crop of 224 from 232.

The EMA: torchvision updates every 32 steps with a decay adjusted from 0.99998 for the batch
and epochs (1 - (1 - 0.99998) x 8 x 128 x 32 / 600 = 0.998908), which is what this config sets
for its batch of 1,024.

Differences from torchvision's run, each small and named so that a comparison knows them:
- no repeated augmentation (`--ra-sampler --ra-reps 4`): every image once per epoch;
- the warm-up starts at 0, not at 0.01 x the peak, and the schedule moves every step, not every
  epoch;
- with weight_decay_bn_and_bias=False the classifier's bias is not decayed either (torchvision
  decays it: `--bias-weight-decay` is unset there);
- BatchNorm over groups of 128 images (its 8 GPUs without synchronised BatchNorm): set by
  bn_group_size.
The train and test resolutions are fields of their own: docs/evaluation.md.
"""

from configs import resnet50


def get_config():
  config = resnet50.get_config()
  config.recipe = 'torchvision_v2'
  config.batch_size = 1024
  config.bn_group_size = 128
  config.num_epochs = 600
  config.learning_rate = 0.5
  config.lr_base_batch_size = 0  # 0.5 at batch 1,024, as published.
  config.schedule = 'cosine'
  config.warmup = 5
  config.weight_decay = 2e-5
  config.weight_decay_bn_and_bias = False
  config.label_smoothing = 0.1
  config.mixup_alpha = 0.2
  config.cutmix_alpha = 1.0
  config.mixup_switch_prob = 0.5
  config.trivial_augment = True
  config.random_erasing = 0.1
  config.ema_decay = 0.998908
  config.ema_every_steps = 32
  config.image_size = 176
  config.eval_image_size = 224
  config.eval_resize_size = 232
  return config
