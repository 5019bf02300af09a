"""`python -m resnet_jax.main` for the tests, forked from a process that has done its imports.

A short run of main spends about 7 of its 10 CPU-seconds importing TensorFlow, JAX, Flax and
Orbax, and the fault, resume and multi-host tests start about 80 runs. Each run is forked
instead from a server (the standard library's forkserver) that imported those libraries once,
before any JAX backend or TensorFlow context exists, and is then `python -m resnet_jax.main` in
all that a test observes: its own process, argv, environment, working directory, stdout and
stderr files, exit code (negative for a signal) and signal handling. Main's `__main__` block
runs whole; its restart for huge pages finds the tunable set, as the server was started with it.

What differs: the libraries' import-time log lines go to the server's stderr, and a variable
read at import time (TF_*, JAX_*, PYTHON* but PYTHONPATH) takes the server's value, so a run
whose environment changes one is started as a plain subprocess. A `sitecustomize.py` on an
added PYTHONPATH entry runs before main, as Python would run it at start-up.
"""

import atexit
import importlib.util
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
from multiprocessing import forkserver

# What a digits run of main imports (sys.modules at its end, heaviest first). `resnet_jax.main`
# is left out: main's module is run as __main__, and importing it too would define its flags twice.
PRELOAD = [
  'resnet_jax.train',
  'tensorflow',
  'tensorflow_datasets',
  'tensorboardX',
  'resnet_jax.cluster',
  'resnet_jax.digits_dataset',
  'resnet_jax.evaluation',
  'resnet_jax.input_pipeline',
  'gcsfs',
]

_IMPORT_TIME = ('TF_', 'JAX_', 'PYTHON', 'LD_')

_lock = threading.Lock()
_server_env: dict[str, str] | None = None


def main_env(env: dict[str, str]) -> dict[str, str]:
  """`env` as main changes it for itself before its libraries load (main.skip_keras_import,
  main.quiet_third_party_logs, host_memory.reexec_with_huge_pages)."""
  env = dict(env)
  if importlib.util.find_spec('tf_keras') is None:
    env.setdefault('TF_USE_LEGACY_KERAS', '1')
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')  # main.quiet_third_party_logs, without --verbose
  tunables = env.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb' not in tunables:
    env['GLIBC_TUNABLES'] = ':'.join(t for t in (tunables, 'glibc.malloc.hugetlb=1') if t)
  return env


def _start_server() -> dict[str, str]:
  """Starts the forkserver once, in main's environment; returns that environment."""
  global _server_env
  with _lock:
    if _server_env is None:
      saved = dict(os.environ)
      os.environ.update(main_env(saved))
      try:
        forkserver.set_forkserver_preload(PRELOAD)
        forkserver.ensure_running()
        _server_env = dict(os.environ)
      finally:
        os.environ.clear()
        os.environ.update(saved)
  return _server_env


def stop() -> None:
  """Stops the server and waits for it, so that its CPU time and its runs' count as this
  process's children (in `time` and `getrusage`).

  multiprocessing has no public way to stop its forkserver (a `stop()` was proposed and
  declined in python/cpython#81688); `_stop` is the one CPython's own tests use.
  tests/test_upstream.py fails if it goes."""
  global _server_env
  with _lock:
    if _server_env is not None:
      forkserver._forkserver._stop()
      _server_env = None


def can_fork(env: dict[str, str]) -> bool:
  """Whether a run with environment `env` sees in the server what a fresh interpreter would."""
  server, env = _start_server(), main_env(env)
  keys = {k for k in {*env, *server} if k.startswith(_IMPORT_TIME) and k != 'PYTHONPATH'}
  return all(env.get(k) == server.get(k) for k in keys) and (
    env['GLIBC_TUNABLES'] == server['GLIBC_TUNABLES']
  )


def _redirect(stdout: str, stderr: str) -> None:
  sys.stdout.flush()
  sys.stderr.flush()
  out = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  err = out if stderr == stdout else os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
  for fd, target in ((out, 1), (err, 2)):
    os.dup2(fd, target)
  for fd in {out, err}:
    os.close(fd)


def _run(command: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str) -> None:
  """The forked child: becomes `python -m MODULE ARGS` or `python -c CODE ARGS` (`command`)."""
  option, target, *args = command[1:]
  os.chdir(cwd)
  added = [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p and p not in sys.path]
  os.environ.clear()
  os.environ.update(main_env(env))
  _redirect(stdout, stderr)
  sys.argv = [option, *args]  # runpy puts the module's path first, as `-m` does.
  sys.path[1:1] = added
  try:
    for directory in added:
      if os.path.exists(os.path.join(directory, 'sitecustomize.py')):
        runpy.run_path(os.path.join(directory, 'sitecustomize.py'), run_name='sitecustomize')
    if option == '-m':
      runpy.run_module(target, run_name='__main__', alter_sys=True)
    else:
      exec(compile(target, '<string>', 'exec'), {'__name__': '__main__'})
  finally:
    # As the interpreter ends: wait for non-daemon threads, then the atexit functions. Only
    # `threading._shutdown` also stops executors' worker threads first (their exit hooks run
    # there); multiprocessing's own `Process._bootstrap` calls it the same way, after this.
    # test_forked_main's exit-order test fails if either function changes.
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()


def _output_path(target, temporaries: list[str]) -> str | None:
  if target is None or target == subprocess.PIPE:
    fd, path = tempfile.mkstemp(prefix='forked_main.')
    os.close(fd)
    temporaries.append(path)
    return path
  if target == subprocess.DEVNULL:
    return os.devnull
  if target == subprocess.STDOUT:
    return None
  return target.name  # An open file: the child appends to it by name.


class ForkedRun:
  """The part of subprocess.Popen's interface that the tests use, for a forked run."""

  def __init__(self, command, env, cwd, stdout=None, stderr=None):
    self.args = command
    self._temporaries: list[str] = []
    self._stdout = _output_path(stdout, self._temporaries)
    self._stderr = _output_path(stderr, self._temporaries) or self._stdout
    self._captured = (stdout in (None, subprocess.PIPE), stderr in (None, subprocess.PIPE))
    _start_server()
    context = multiprocessing.get_context('forkserver')
    self._process = context.Process(
      target=_run, args=(command, env, cwd, self._stdout, self._stderr), daemon=False
    )
    self._process.start()
    self.pid = self._process.pid

  @property
  def returncode(self) -> int | None:
    return self._process.exitcode

  def poll(self) -> int | None:
    return self.returncode

  def wait(self, timeout: float | None = None) -> int:
    self._process.join(timeout)
    if self.returncode is None:
      raise subprocess.TimeoutExpired(self.args, timeout)
    return self.returncode

  def send_signal(self, signum: int) -> None:
    if self.returncode is None:
      os.kill(self.pid, signum)

  def kill(self) -> None:
    self.send_signal(signal.SIGKILL)

  def terminate(self) -> None:
    self.send_signal(signal.SIGTERM)

  def communicate(self, timeout: float | None = None, text: bool = False):
    """(stdout, stderr) once the run ended, as bytes (or str); None where not captured."""
    self.wait(timeout)
    outputs = []
    for path, captured in zip((self._stdout, self._stderr), self._captured, strict=True):
      if not captured:
        outputs.append(None)
        continue
      with open(path, 'rb') as f:
        data = f.read()
      outputs.append(data.decode() if text else data)
    for path in self._temporaries:
      os.unlink(path)
    self._temporaries = []
    return tuple(outputs)


def run(command, env, cwd) -> subprocess.CompletedProcess:
  """subprocess.run(command, capture_output=True, text=True), forked."""
  process = ForkedRun(command, env, cwd)
  stdout, stderr = process.communicate(text=True)
  return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
