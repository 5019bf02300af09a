"""Entry point: `python -m resnet_jax.main --config=configs/iresnet50.py --workdir=DIR`.

Any config field can be overridden, e.g. `--config.batch_size=256 --config.dtype=bfloat16`.
Restarting the same command in the same workdir resumes from its newest checkpoint.

Multi-host: on TPU pods and under Slurm `jax.distributed.initialize()` finds the cluster by
itself (pass --distributed); elsewhere give --coordinator_address, --num_processes and
--process_id to every process.

Only light modules are imported at the top: flags and the config are parsed, and a bad field is
reported, before JAX, Flax, Orbax or TensorFlow load.
"""

import atexit
import importlib.util
import logging as py_logging
import os
import re
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from absl import app, flags, logging
from ml_collections import config_flags

from resnet_jax import errors, fields, host_memory

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and summary.json.')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.', lock_config=True)
flags.DEFINE_bool(
  'distributed', False, 'Call jax.distributed.initialize() with cluster auto-detection.'
)
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for multi-host runs.')
flags.DEFINE_integer('num_processes', None, 'Number of processes of a multi-host run.')
flags.DEFINE_integer('process_id', None, 'Index of this process in a multi-host run.')
flags.DEFINE_integer(
  'peer_timeout', 120, 'Seconds: a lost process of a multi-host run is detected within this time.'
)
flags.DEFINE_bool(
  'verbose', False, "Keep other libraries' INFO logs (Orbax writes about 40 lines per save)."
)

# Compiled programs are reused across runs and restarts; JAX_COMPILATION_CACHE_DIR overrides.
_CACHE_DIR = os.path.join(os.path.expanduser('~'), '.cache', 'resnet_jax', 'xla')


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def _unknown_field_message(argv: Sequence[str], error: Exception) -> str:
  """'--config.batchsize names no field of configs/quickstart.py. Did you mean "batch_size"...'"""
  key_error = error if isinstance(error, KeyError) else error.__context__
  text = str(key_error.args[0] if isinstance(key_error, KeyError) else error)
  name = text.splitlines()[0].strip('\'"')
  pattern = re.compile(rf'--config\.([\w.]*\.)?{re.escape(name)}(=|$)')
  given = next((a for a in argv if pattern.match(a)), '')
  field = given.split('=')[0].removeprefix('--config.') or name
  config_file = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), 'the config')
  suggestion = next((line.strip() for line in text.splitlines() if 'Did you mean' in line), '')
  return (
    f'--config.{field} names no field of {config_file}. {suggestion} Every field is documented '
    'in configs/default.py.'
  ).replace('  ', ' ')


def parse_flags(argv: Sequence[str]) -> Sequence[str]:
  """absl's flag parsing, with each mistake reported in one paragraph instead of a traceback."""
  argv, model_kwargs = fields.split_model_kwargs(argv)
  sys.argv = argv  # config_flags reads the overrides from sys.argv when it loads the file.
  try:
    remaining = FLAGS(argv)
    if FLAGS.config is None or FLAGS.workdir is None:
      _fail('--config=FILE and --workdir=DIR are required, e.g. --config=configs/quickstart.py.')
    FLAGS.config.get('model')  # The file is loaded lazily: load it now.
  except (AttributeError, KeyError) as error:  # A field the config does not have.
    _fail(_unknown_field_message(argv, error))
  except flags.Error as error:
    _fail(f'{error}. Run with --helpfull for every flag; fields: configs/default.py.')
  except (OSError, ImportError, SyntaxError) as error:
    cause = str(error).strip().splitlines()[-1].strip()
    _fail(f'cannot load the config file {FLAGS["config"].serialize()}: {cause}.')
  try:
    fields.set_model_kwargs(FLAGS.config, model_kwargs)
  except errors.ConfigError as error:
    _fail(str(error))
  return remaining


def quiet_third_party_logs() -> None:
  """Drops other libraries' INFO lines, and cuts their warnings and errors to one line each (a
  failed save makes Orbax log hundreds of lines of tracebacks from its background threads).
  This project's lines and clu's progress lines stay whole; the failure itself reaches main."""
  # TensorFlow's C++ INFO lines (CPU features, tf.data); read when TensorFlow loads, after this.
  # Its oneDNN notice is printed as its libraries load, before this setting applies.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  own = [os.path.dirname(os.path.abspath(__file__))]
  clu = importlib.util.find_spec('clu')
  own += list(clu.submodule_search_locations) if clu else []

  def keep(record: py_logging.LogRecord) -> bool:
    if record.pathname.startswith(tuple(own)):
      return True
    if record.levelno < py_logging.WARNING:
      return False
    record.msg, record.args = record.getMessage().splitlines()[0], None
    record.exc_info = record.exc_text = record.stack_info = None
    return True

  logging.get_absl_handler().addFilter(keep)

  # After a failed read or write TensorStore still completes its pending operations into the
  # event loops that Orbax has closed; each prints a traceback of this harmless RuntimeError.
  excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

  def closed_loop(error: BaseException | None) -> bool:
    return isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'

  def hide_closed_loop_error(kind, value, traceback):
    if not closed_loop(value):
      excepthook(kind, value, traceback)

  def hide_closed_loop_unraisable(unraisable):
    if not closed_loop(unraisable.exc_value):
      unraisablehook(unraisable)

  sys.excepthook, sys.unraisablehook = hide_closed_loop_error, hide_closed_loop_unraisable


def skip_keras_import() -> None:
  """Stops TensorFlow from importing all of Keras when it loads (1.5 s of each start).

  TensorFlow's own import loads Keras (and with it scipy, scikit-learn and matplotlib) for
  SavedModel registrations that TFDS reading never needs: `tensorflow/__init__.py` imports
  `keras.src.optimizers`, or `tf_keras.src.optimizers` under `TF_USE_LEGACY_KERAS`, and ignores an
  ImportError (its comment cites b/196254385; import time: tensorflow/tensorflow#37729). No
  option turns that import off, so this names the legacy package while it is absent; `tf.keras`
  is then unavailable, which the processes of this project's commands never use.
  tests/test_input_pipeline.py fails if a TensorFlow release imports Keras anyway or fails.
  Set for those commands only, before the restart for huge pages, so the restarted process and
  the processes it starts inherit it.
  """
  if importlib.util.find_spec('tf_keras') is None:
    os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')


def initialize_distributed() -> None:
  from resnet_jax import cluster  # Imported here: it imports JAX.

  cluster.initialize(
    FLAGS.coordinator_address,
    FLAGS.num_processes,
    FLAGS.process_id,
    FLAGS.distributed,
    FLAGS.peer_timeout,
  )


def configure_jax() -> None:
  """The persistent compilation cache, shared by every run and sweep worker on this machine."""
  import jax

  jax.config.update(
    'jax_compilation_cache_dir', os.environ.get('JAX_COMPILATION_CACHE_DIR', _CACHE_DIR)
  )


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    _fail(f'unexpected arguments {list(argv[1:])}: every option is a --flag.')
  if not FLAGS.verbose:
    quiet_third_party_logs()
  import jax

  from resnet_jax import train  # Imported here: JAX, Flax and Orbax take seconds to load.

  try:
    initialize_distributed()
  except errors.Error as error:
    _fail(str(error))
  configure_jax()
  logging.info(
    'JAX process %d/%d, %d local / %d global devices (%s)',
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    jax.devices()[0].platform,
  )
  try:
    summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except errors.Error as error:
    _fail(str(error))
  logging.info('Finished: %s', summary.get('eval', summary))


def run_and_exit() -> NoReturn:
  """`app.run(main)`, then the interpreter's exit without its final teardown.

  Once main has returned or failed, every file is closed, the workdir's lock is released and
  the atexit functions (log handlers, JAX's shutdown) have run, as in a normal exit; what is
  left, the interpreter's final garbage collection of the objects that TensorFlow, JAX and Flax
  hold, kept the process alive for 5-12 s after summary.json on a busy 2-core machine, and every
  chain of runs waited for it. Exceptions other than SystemExit end normally.
  """
  try:
    app.run(main, flags_parser=parse_flags)
  except SystemExit as exit_:
    code = exit_.code
  if isinstance(code, str):
    print(code, file=sys.stderr)
    code = 1
  threading._shutdown()  # noqa: SLF001  (the interpreter's own exit does these two first)
  atexit._run_exitfuncs()  # noqa: SLF001
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code or 0)


if __name__ == '__main__':
  skip_keras_import()
  host_memory.reexec_with_huge_pages()
  run_and_exit()
