"""ResNet-50 on ImageNet at batch 4096: Goyal et al. 2017's linear-scaling recipe.

SGD with Nesterov momentum 0.9, lr 0.1 per 256 images (1.6 at 4096), linear warmup from 0 over
5 epochs, then cosine decay to 0 at epoch 90; weight decay 1e-4, not applied to BatchNorm
parameters and biases (Goyal et al., Sec. 5.1); label smoothing 0.1; bfloat16 compute. This is
the recipe of DeepMind's Haiku ImageNet example (examples/imagenet/train.py), whose README
reported 76.2% top-1 at batch 4096 (Feb. 2020, step decay) and 76.8% after it moved to cosine
decay and label smoothing (June 2020). Goyal et al. warm up from 0.1 rather than 0.
Its input pipeline is TensorFlow's, so the crops are `sample_distorted_bounding_box`'s
(`crop_sampler='inception'`), not `resnet50.py`'s torchvision ones.

On a TPU v3-32 or 32 GPUs: `--config.batch_size` and the learning rate scale together, so the
recipe holds for other batch sizes up to about 8k.
"""

from configs import resnet50


def get_config():
  config = resnet50.get_config()
  config.batch_size = 4096
  config.crop_sampler = 'inception'
  config.eval_batch_size = 4096
  config.bn_group_size = 32  # Goyal et al.: BatchNorm over each worker's n = 32 images
  config.dtype = 'bfloat16'
  config.num_epochs = 90
  config.optimizer = 'sgd'
  config.momentum = 0.9
  config.nesterov = True
  config.learning_rate = 0.1
  config.lr_base_batch_size = 256
  config.schedule = 'cosine'
  config.schedule_unit = 'epochs'
  config.warmup = 5
  config.weight_decay = 1e-4
  config.weight_decay_bn_and_bias = False
  config.label_smoothing = 0.1
  config.log_every_steps = 50
  config.eval_every_steps = 1_248  # every 4 epochs of 312 steps
  config.checkpoint_every_steps = 1_248
  return config
