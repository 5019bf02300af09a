"""ResNet-50 on ImageNet at batch 32768 with LARS: the MLPerf recipe (target 75.9% top-1).

Hyperparameters of Google's MLPerf Training v0.6 submission on a TPU v3-1024 (mlcommons/
training_results_v0.6, Google/benchmarks/resnet/tpu-v3-1024/run_and_time.sh), which are also
the defaults for batch 32768 of the MLPerf reference (mlcommons/training, image_classification/
tensorflow2/lars_util.py): LARS with momentum 0.9, trust coefficient 0.001, epsilon 1e-5, weight
decay 1e-4; BatchNorm parameters and biases get neither weight decay nor a trust ratio
(skip_list=['batch_normalization', 'bias']); label smoothing 0.1. Learning rate 31.2, reached
linearly from 0 over 25 epochs (25 * 1,281,167 // 32768 = 977 steps), then decayed as
(31.2 - 1e-4) * (1 - k / (2983 - 977 + 1))**2 + 1e-4 over 2983 steps (76.3 epochs) in all.

One difference remains: the reference's trust ratio divides by |g| + weight_decay * |w|, optax's
LARS (used here) by |g + weight_decay * w|. Both are You et al. 2017's rule up to that choice.
The step counts are those of batch 32768; other batch sizes need their own. Both pipelines are
TensorFlow's, whose crops are `sample_distorted_bounding_box`'s (`crop_sampler='inception'`).
"""

from configs import resnet50


def get_config():
  config = resnet50.get_config()
  config.batch_size = 32_768
  config.crop_sampler = 'inception'
  config.eval_batch_size = 32_768
  # run_and_time.sh: --distributed_group_size=1 (BatchNorm over each core's own images) with
  # --num_cores=1024, 32 images per core.
  config.bn_group_size = 32
  config.dtype = 'bfloat16'
  config.num_train_steps = 2_983
  config.optimizer = 'lars'
  config.momentum = 0.9
  config.nesterov = False
  config.lars_trust_coefficient = 0.001
  config.lars_eps = 1e-5
  config.learning_rate = 31.2
  config.lr_base_batch_size = 0
  config.schedule = 'polynomial'
  config.schedule_unit = 'steps'
  config.warmup = 977
  config.lr_end = 1e-4
  config.lr_decay_power = 2.0
  config.weight_decay = 1e-4
  config.weight_decay_bn_and_bias = False
  config.label_smoothing = 0.1
  config.log_every_steps = 10
  config.eval_every_steps = 157  # every 4 epochs, as MLPerf evaluates
  config.checkpoint_every_steps = 157
  return config
