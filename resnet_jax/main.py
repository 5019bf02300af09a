"""Entry point: `python -m resnet_jax.main --config=configs/iresnet50.py --workdir=DIR`.

Any config field can be overridden, e.g. `--config.batch_size=256 --config.dtype=bfloat16`.
Restarting the same command in the same workdir resumes from its newest checkpoint.

Multi-host: on TPU pods and under Slurm `jax.distributed.initialize()` finds the cluster by
itself (pass --distributed); elsewhere give --coordinator_address, --num_processes and
--process_id to every process.
"""

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from resnet_jax import host_memory, paths, train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and summary.json.')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.', lock_config=True)
flags.DEFINE_bool(
  'distributed', False, 'Call jax.distributed.initialize() with cluster auto-detection.'
)
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for multi-host runs.')
flags.DEFINE_integer('num_processes', None, 'Number of processes of a multi-host run.')
flags.DEFINE_integer('process_id', None, 'Index of this process in a multi-host run.')
flags.mark_flags_as_required(['config', 'workdir'])

# Compiled programs are reused across runs and restarts; JAX_COMPILATION_CACHE_DIR overrides.
_CACHE_DIR = os.path.join(os.path.expanduser('~'), '.cache', 'resnet_jax', 'xla')


def initialize_distributed() -> None:
  if FLAGS.coordinator_address:
    # Cross-process collectives for CPU devices; GPU and TPU backends ignore this setting.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
      coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes,
      process_id=FLAGS.process_id,
    )
  elif FLAGS.distributed:
    jax.distributed.initialize()


def main(argv):
  del argv
  initialize_distributed()
  jax.config.update(
    'jax_compilation_cache_dir', os.environ.get('JAX_COMPILATION_CACHE_DIR', _CACHE_DIR)
  )
  logging.info(
    'JAX process %d/%d, %d local / %d global devices (%s)',
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    jax.devices()[0].platform,
  )
  paths.resolve(FLAGS.workdir).mkdir(parents=True, exist_ok=True)
  try:
    summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ValueError, FloatingPointError) as error:
    # Configuration, data and divergence problems: one clear paragraph, no traceback.
    logging.error('%s', error)
    print(f'error: {error}', file=sys.stderr)
    sys.exit(1)
  logging.info('Finished: %s', summary.get('eval', summary))


if __name__ == '__main__':
  host_memory.reexec_with_huge_pages('resnet_jax.main')
  app.run(main)
