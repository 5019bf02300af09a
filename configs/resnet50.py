"""ResNet-50 on ImageNet, the recipe of the official iResNet code (its schedule: `iresnet50.py`).

SGD momentum 0.9, lr 0.1 per 256 images scaled linearly with the global batch, weight
decay 1e-4, 90 epochs with the learning rate divided by 10 at epochs 30, 60 and 80 (the
official iResNet script, which steps its scheduler before each epoch, drops after 29, 59 and 79;
`iresnet50.py` and the Duta et al. sweeps train that way)
(`--config.schedule=cosine` for cosine decay; `--config.warmup=5` for five warmup epochs),
no label smoothing; bfloat16 compute on GPU/TPU, float32 on CPU (`config.dtype='auto'`).
Training crops are torchvision's `RandomResizedCrop` (`crop_sampler='torchvision'`), as the
official script's (main.py: `transforms.RandomResizedCrop(args.train_crop_size)`, 224).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model = 'resnet50'
  config.dataset = 'imagenet2012'
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.image_size = 224
  config.crop_sampler = 'torchvision'
  config.num_classes = 1000
  config.batch_size = 256
  # The official script divides the batch among the node's GPUs (DataParallel, or
  # DistributedDataParallel with `batch_size / ngpus_per_node`) without synchronised BatchNorm:
  # each GPU normalises its own images, 32 on 8 GPUs. He 2015's ImageNet models were trained
  # the same way ("a mini-batch of 256 images on 8 GPUs, that is, 32 images per GPU",
  # github.com/KaimingHe/deep-residual-networks), as were He 2016's ("256 on 8 GPUs (32 each)").
  config.bn_group_size = 32
  config.eval_batch_size = 256
  config.eval_crop_fraction = 0.875  # 224 of a shorter side resized to 256.
  config.cache = False
  config.num_train_steps = -1
  config.num_epochs = 90
  config.learning_rate = 0.1
  config.lr_base_batch_size = 256
  config.schedule = 'step'
  config.schedule_unit = 'epochs'
  config.lr_decay_at = (30, 60, 80)
  config.warmup = 0.0
  config.weight_decay = 1e-4
  config.label_smoothing = 0.0
  config.log_every_steps = 100
  config.eval_every_steps = 5_000
  config.checkpoint_every_steps = 5_000
  return config
