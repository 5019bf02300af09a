"""Shared fixtures: the digits dataset prepared once per test session, small configs."""

import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.parse

import jax
import orbax.checkpoint as ocp
import pytest

import forked_main
import slurm_cluster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tests' compiled programs persist between test runs, as main's do between training runs:
# most of the fast tier's time is XLA compiling small networks, and an edit recompiles only the
# programs it changes. A fresh machine (CI) compiles everything once.
jax.config.update(
  'jax_compilation_cache_dir',
  os.environ.get(
    'RESNET_JAX_TEST_CACHE_DIR',
    os.path.join(os.path.expanduser('~'), '.cache', 'resnet_jax', 'test-xla'),
  ),
)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A TFDS data directory with the embedded digits dataset prepared."""
  from configs import quickstart
  from resnet_jax import input_pipeline

  directory = str(tmp_path_factory.mktemp('tfds'))
  config = quickstart.get_config()
  config.data_dir = directory
  input_pipeline.get_builder(config)
  return directory


@pytest.fixture
def digits_config(data_dir):
  """The quickstart config, shortened for tests."""
  from configs import quickstart

  config = quickstart.get_config()
  config.data_dir = data_dir
  config.model = 'cifar_resnet8'  # the smallest CIFAR ResNet compiles fastest
  config.num_train_steps = 20
  config.log_every_steps = 10
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 10
  return config


# RESNET_JAX_TEST_FORK=0 starts every run_main as a fresh interpreter (see forked_main).
FORK = os.environ.get('RESNET_JAX_TEST_FORK', '1') != '0'


@pytest.fixture(scope='session', autouse=True)
def _stop_forked_main_server():
  yield
  forked_main.stop()


def run_main(
  workdir,
  *overrides,
  config='configs/quickstart.py',
  env=None,
  check=True,
  entry=('-m', 'resnet_jax.main'),
  fork=True,
  **popen,
):
  """Runs `python -m resnet_jax.main` in its own process (default: the quickstart config).

  The process is forked from a server that has the libraries imported (tests/forked_main.py)
  unless `fork` is False or the environment changes a variable read at import time.
  `entry` replaces `-m resnet_jax.main`, e.g. by `-c CODE` that changes a module constant first.
  """
  command = [
    sys.executable,
    *entry,
    f'--config={config}',
    f'--workdir={workdir}',
    '--config.model=cifar_resnet8',
    *overrides,
  ]
  full_env = dict(os.environ, **(env or {}))
  fork = fork and FORK and forked_main.can_fork(full_env)
  if popen:
    if fork:
      return forked_main.ForkedRun(command, full_env, REPO, **popen)
    return subprocess.Popen(command, cwd=REPO, env=full_env, **popen)
  if fork:
    result = forked_main.run(command, full_env, REPO)
  else:
    result = subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True)
  if check and result.returncode:
    raise AssertionError(f'main failed ({result.returncode}):\n{result.stderr[-4000:]}')
  return result


# Metrics that measure the machine, not the training; they differ between any two runs.
TIMING = {'images_per_sec', 'input_wait_fraction', 'steps_per_sec', 'uptime'}


def metric_rows(text):
  """The records of a metrics.jsonl text, without the timing fields."""
  rows = [json.loads(line) for line in text.splitlines()]
  return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def restore_checkpoint(workdir, step=None):
  """The newest checkpoint of a run, as arrays on this process's first device."""
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  step = manager.latest_step() if step is None else step
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  metadata = ocp.StandardCheckpointer().metadata(
    os.path.join(workdir, 'checkpoints', str(step), 'default')
  )
  target = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata.item_metadata
  )
  return step, manager.restore(step, args=ocp.args.StandardRestore(target))


def wait_for_checkpoint(workdir, step, process, timeout=300):
  path = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.time() + timeout
  while not os.path.isdir(path):
    assert process.poll() is None, 'the run ended before its first checkpoint'
    assert time.time() < deadline, 'no checkpoint appeared'
    time.sleep(0.02)


class _GenerationHeaders(http.server.BaseHTTPRequestHandler):
  """Forwards every request to the emulator, adding to object downloads the headers that
  Cloud Storage sends with them and gcp-storage-emulator does not.

  TensorStore's gcs driver takes an object's generation from the `x-goog-generation` header of
  every download (`alt=media`, whole or a byte range). Without it the generation is 0, and its
  next write conditioned on it (of Orbax's OCDBT manifest) fails with "Malformed
  StorageGeneration". The header is taken from the object's metadata (the JSON the emulator
  returns for it); one lock around every forwarded request keeps that lookup and the download
  from interleaving with a write of the same object. The emulator already answers byte ranges
  with 206 and Content-Range, which is all else TensorStore needs from it.
  """

  protocol_version = 'HTTP/1.1'  # Keep-alive, and the 100-continue that curl waits for.
  upstream: tuple[str, int]
  lock = threading.Lock()

  def _body(self) -> bytes | None:
    if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
      chunks = []
      while size := int(self.rfile.readline().split(b';')[0], 16):
        chunks.append(self.rfile.read(size))
        self.rfile.readline()
      self.rfile.readline()  # The empty trailer.
      return b''.join(chunks)
    length = int(self.headers.get('Content-Length') or 0)
    return self.rfile.read(length) if length else None

  def _upstream(self, method: str, path: str, body=None, headers=None):
    """(status, headers, content) of a request to the emulator."""
    connection = http.client.HTTPConnection(*self.upstream, timeout=60)
    try:
      connection.request(method, path, body=body, headers=headers or {})
      response = connection.getresponse()
      return response.status, response.getheaders(), response.read()
    finally:
      connection.close()

  def _generation_headers(self, path: str) -> dict[str, str]:
    """The generation header of Cloud Storage, for an object download in `path` (else none)."""
    url = urllib.parse.urlsplit(path)
    if urllib.parse.parse_qs(url.query).get('alt') != ['media']:
      return {}
    status, _, content = self._upstream('GET', url.path)
    if status != 200:
      return {}
    return {'x-goog-generation': json.loads(content)['generation']}

  def _forward(self) -> None:
    body = self._body()
    skip = {'host', 'connection', 'transfer-encoding', 'expect', 'content-length'}
    headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
    with self.lock:
      status, received, content = self._upstream(self.command, self.path, body, headers)
      added = self._generation_headers(self.path) if status in (200, 206) else {}
    self.send_response(status)
    skip |= {'server', 'date'}
    for key, value in [*received, *added.items()]:
      if key.lower() not in skip:
        self.send_header(key, value)
    self.send_header('Content-Length', str(len(content)))
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(content)

  do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

  def log_message(self, format, *args):
    del format, args  # The emulator logs every request already.


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='session')
def gcs_emulator(tmp_path_factory):
  """A local Cloud Storage API (gcp-storage-emulator, in memory): environment for processes.

  Each layer that speaks gs:// is pointed at it by its own setting: TensorStore (Orbax's
  arrays) by TENSORSTORE_GCS_HTTP_URL, with a fixed token instead of credentials, through a
  proxy that adds the download headers the emulator lacks (`_GenerationHeaders`); etils.epath
  (every other file) through fsspec's gcsfs, which reads STORAGE_EMULATOR_HOST; resnet_jax.paths
  chooses gcsfs over TensorFlow's GCS filesystem itself, as in every user's run.

  What is not emulated: preconditions (ifGenerationMatch and the like are ignored, so writes
  always win, which a single writer per object never notices), list ranges (startOffset,
  endOffset), permissions and credentials.
  """
  import urllib.request

  port = _free_port()
  url = f'http://127.0.0.1:{port}'
  log = open(tmp_path_factory.mktemp('gcs') / 'emulator.log', 'w')
  server = subprocess.Popen(
    [sys.executable, '-m', 'gcp_storage_emulator', 'start', f'--port={port}', '--in-memory'],
    stdout=log,
    stderr=subprocess.STDOUT,
  )
  deadline = time.time() + 30
  while True:
    try:
      urllib.request.urlopen(f'{url}/storage/v1/b', timeout=1)
      break
    except OSError:
      assert server.poll() is None and time.time() < deadline, 'the emulator did not start'
      time.sleep(0.2)
  handler = type('Handler', (_GenerationHeaders,), {'upstream': ('127.0.0.1', port)})
  proxy = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  proxy.daemon_threads = True
  threading.Thread(target=proxy.serve_forever, daemon=True).start()
  env = {
    'STORAGE_EMULATOR_HOST': url,
    'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',  # No storage-layout calls to the real API.
    'TENSORSTORE_GCS_HTTP_URL': f'http://127.0.0.1:{proxy.server_address[1]}',
    'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',
  }

  def create_bucket(name: str) -> str:
    request = urllib.request.Request(
      f'{url}/storage/v1/b?project=test',
      data=json.dumps({'name': name}).encode(),
      headers={'Content-Type': 'application/json'},
    )
    urllib.request.urlopen(request, timeout=10)
    return f'gs://{name}'

  yield types.SimpleNamespace(env=env, create_bucket=create_bucket)
  proxy.shutdown()
  proxy.server_close()
  server.terminate()
  server.wait(timeout=30)
  log.close()


@pytest.fixture(scope='session')
def slurm(tmp_path_factory):
  """A one-node Slurm cluster (tests/slurm_cluster.py), skipped where Slurm or root is missing;
  with RESNET_JAX_REQUIRE_SLURM=1 (CI) a missing cluster fails instead."""
  reason = slurm_cluster.unavailable()
  if reason:
    if os.environ.get('RESNET_JAX_REQUIRE_SLURM') == '1':
      pytest.fail(f'RESNET_JAX_REQUIRE_SLURM=1, but {reason}.')
    pytest.skip(reason)
  cluster = slurm_cluster.Cluster(str(tmp_path_factory.mktemp('slurm')))
  cluster.start()
  yield cluster
  cluster.stop()
