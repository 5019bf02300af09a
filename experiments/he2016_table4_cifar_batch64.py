"""He et al. 2016, Table 4: pre-activation ResNet-164 and ResNet-1001 on CIFAR-10 and CIFAR-100,
and ResNet-1001 at a mini-batch of 64.

Table 4 compares He 2016's pre-activation networks with earlier methods; its own rows are
"the median of 5 runs with mean±std in the brackets", test error (%):

  | dataset   | network (pre-activation)       | params | error              |
  |-----------|--------------------------------|--------|--------------------|
  | CIFAR-10  | ResNet-164                     | 1.7 M  | 5.46               |
  | CIFAR-10  | ResNet-1001                    | 10.2 M | 4.92 (4.89 +- 0.14) |
  | CIFAR-10  | ResNet-1001, mini-batch 64 (†) | 10.2 M | 4.62 (4.69 +- 0.20) |
  | CIFAR-100 | ResNet-164                     | 1.7 M  | 24.33              |
  | CIFAR-100 | ResNet-1001                    | 10.2 M | 22.71 (22.68 +- 0.22) |

(The table's ResNet-110 and -1202 rows are He 2015's: `he2015_table6_cifar_depths.py`.)
"All ResNets results are obtained with a mini-batch size of 128 except † with a mini-batch size
of 64 (code available at https://github.com/KaimingHe/resnet-1k-layers)". The batch-128 points
are the pre-activation points of `he2016_table3_cifar.py`, with the same names and configs: with
one `--workdir` for both sweeps they train once.

Recipe at batch 128: `configs/cifar_he2016.py` (64k iterations, lr 0.1 / 10 at 32k and 48k,
400 warm-up iterations at 0.01). Recipe of †, that of the code that produced it: the
resnet-1k-layers README trains ResNet-1001 with `-batchSize 64 -nGPU 2 -nEpochs 200` in
fb.resnet.torch (its `-LR` default 0.1, not scaled with the batch), whose `learningRate(epoch)`
for CIFAR divides by 10 from epoch 81 and again from epoch 122 (1-based, so after 80 and 121
epochs) and has no warm-up: batch 64, 200 epochs, lr 0.1, / 10 after epochs 80 and 121. The
README notes that it reduced the batch "to fit the 1k-layer models into memory", on 2 GPUs (32
images each), hence `bn_group_size` 32. fb.resnet.torch keeps the last partial batch of an
epoch (782 per epoch); here an epoch is 781 whole batches.

Runs: 5 networks x 5 seeds (the paper's 5 runs; the report prints the median, `STATISTIC`):
25 runs.

  python -m resnet_jax.sweep --sweep=experiments/he2016_table4_cifar_batch64.py --workdir=DIR
  python -m resnet_jax.report --workdir=DIR --sweep=experiments/he2016_table4_cifar_batch64.py
"""

from resnet_jax.sweep import axis, product

STATISTIC = 'median'  # "the median of 5 runs with mean±std in the brackets"


def network(dataset, model):
  """A pre-activation point of `he2016_table3_cifar.py` (same overrides, same order)."""
  classes = {'cifar10': 10, 'cifar100': 100}[dataset]
  overrides = {'dataset': dataset, 'num_classes': classes, 'model': model}
  return overrides | {'model_kwargs.shortcut': 'B'}


BATCH_128 = [
  network(dataset, model)
  for dataset in ('cifar10', 'cifar100')
  for model in ('cifar_resnet164', 'cifar_resnet1001')
]
# resnet-1k-layers' run: batch 64, 200 epochs, lr 0.1 / 10 after epochs 80 and 121, no warm-up.
BATCH_64 = network('cifar10', 'cifar_resnet1001') | {
  'batch_size': 64,
  'bn_group_size': 32,
  'num_train_steps': -1,
  'num_epochs': 200.0,
  'schedule_unit': 'epochs',
  'lr_decay_at': (80, 121),
  'warmup_constant_steps': 0,
}


def get_sweep():
  return {
    'config': 'configs/cifar_he2016.py',
    'points': product(
      [*BATCH_128, BATCH_64],
      axis('model_kwargs.activation', ['full_preactivation']),
      axis('seed', [0, 1, 2, 3, 4]),
    ),
  }
