"""The embedded default: a CIFAR-layout iResNet on the UCI digits that ship with scikit-learn.

No download; about a minute or two on a 2-core CPU, >= 97% test accuracy.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model = 'cifar_iresnet20'
  config.dataset = 'digits'
  config.image_size = 8
  config.num_classes = 10
  config.batch_size = 64
  config.eval_batch_size = 360
  config.num_train_steps = 1_200
  config.schedule = 'cosine'
  config.warmup = 50
  config.learning_rate = 0.1
  config.weight_decay = 5e-4
  config.log_every_steps = 100
  config.eval_every_steps = 400
  config.checkpoint_every_steps = 400
  return config
