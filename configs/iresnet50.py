"""iResNet-50 (Duta et al. 2020) on ImageNet, as the official iResNet code trains it.

The recipe of `resnet50.py` (SGD momentum 0.9, weight decay 1e-4, 90 epochs, batch 256), with
the official script's schedule (github.com/iduta/iresnet, `main.py` and `args_file.py`):
`MultiStepLR(milestones=[30, 60, 80], gamma=0.1)`, whose `scheduler.step()` the script calls at
the start of every epoch, before training it. The scheduler counts that call as epoch 1, so the
0-based epoch 29 already runs at 0.01: the learning rate drops after 29, 59 and 79 epochs, giving
29 / 30 / 20 / 11 epochs at 0.1 / 0.01 / 0.001 / 0.0001, not 30 / 30 / 20 / 10.

The learning rate: the script uses `--lr 0.1` whatever `--batch-size` is (default 256, "the
total batch size of all GPUs"), while this config scales 0.1 per 256 images
(`lr_base_batch_size=256`). The two agree at batch 256 only; to train another batch as the script
would, set `--config.lr_base_batch_size=0` (0.1 at any batch).
"""

from configs import resnet50


def get_config():
  config = resnet50.get_config()
  config.model = 'iresnet50'
  # The official script's MultiStepLR, stepped before each epoch: drops after epochs 29, 59, 79.
  config.lr_decay_at = (29, 59, 79)
  return config
