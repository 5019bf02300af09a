"""A run whose workdir is a gs:// bucket, on a local Cloud Storage emulator (see conftest)."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import REPO, metric_rows, run_main
from resnet_jax import workdir as workdir_module

# Logged where checkpointed: a resumed run averages its training metrics from the restored step.
STEPS = [
  '--config.num_train_steps=60',
  '--config.checkpoint_every_steps=20',
  '--config.log_every_steps=20',
]
# Metrics that measure the machine, not the training; they differ between any two runs.


def _objects(env, bucket, prefix):
  """Names of the objects under `prefix` in the emulated bucket."""
  query = urllib.parse.urlencode({'prefix': prefix})
  url = f'{env["STORAGE_EMULATOR_HOST"]}/storage/v1/b/{bucket}/o?{query}'
  with urllib.request.urlopen(url, timeout=10) as response:
    return [item['name'] for item in json.load(response).get('items', [])]


def _read(env, bucket, name):
  """The text of an object in the emulated bucket."""
  quoted = urllib.parse.quote(name, safe='')
  url = f'{env["STORAGE_EMULATOR_HOST"]}/storage/v1/b/{bucket}/o/{quoted}?alt=media'
  with urllib.request.urlopen(url, timeout=10) as response:
    return response.read().decode()


def _write(env, bucket, name, text):
  """Uploads `text` as an object of the emulated bucket, replacing any object of that name."""
  query = urllib.parse.urlencode({'uploadType': 'media', 'name': name})
  url = f'{env["STORAGE_EMULATOR_HOST"]}/upload/storage/v1/b/{bucket}/o?{query}'
  urllib.request.urlopen(urllib.request.Request(url, data=text.encode()), timeout=10).close()


# Restores the newest checkpoints of two workdirs and checks that their arrays are equal.
_SAME_STATE = """
import sys
import jax
import numpy as np
from conftest import restore_checkpoint
(step_a, a), (step_b, b) = (restore_checkpoint(p) for p in sys.argv[1:])
assert step_a == step_b, (step_a, step_b)
for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
  np.testing.assert_array_equal(x, y)
print(step_a, len(jax.tree.leaves(a)))
"""


# resnet_jax.main with the bucket lock refreshed every 0.2 s instead of every minute, so that its
# heartbeat thread writes all through training, checkpointing and shutdown. GLIBC_TUNABLES names
# the tunable that main would otherwise restart itself for (losing the changed constant).
FAST_HEARTBEAT = (
  '-c',
  "import os, runpy; os.environ['GLIBC_TUNABLES'] = 'glibc.malloc.hugetlb=1'; "
  'from resnet_jax import workdir; workdir.HEARTBEAT_S = 0.2; '
  "runpy.run_module('resnet_jax.main', run_name='__main__')",
)


def _age_lock(env, bucket, workdir):
  """Makes the lock.json of a killed run stale, as STALE_AFTER_S of waiting would."""
  name = f'{workdir}/lock.json'
  lock = json.loads(_read(env, bucket, name))
  lock['heartbeat'] -= workdir_module.STALE_AFTER_S + 1
  _write(env, bucket, name, json.dumps(lock))


@pytest.mark.slow
def test_bucket_workdir_is_killed_resumes_and_reports_like_a_local_run(
  tmp_path, data_dir, gcs_emulator
):
  env = gcs_emulator.env
  common = [f'--config.data_dir={data_dir}', *STEPS]
  local_dir = tmp_path / 'local' / 'quickstart'
  run_main(local_dir, *common)

  bucket = 'runs'
  workdir = f'{gcs_emulator.create_bucket(bucket)}/sweep/quickstart'
  log = tmp_path / 'killed.log'
  process = run_main(
    workdir, *common, env=env, entry=FAST_HEARTBEAT, stdout=open(log, 'w'), stderr=subprocess.STDOUT
  )
  # In a bucket Orbax writes a step in place and marks it finished with commit_success.txt.
  finished = 'sweep/quickstart/checkpoints/20/commit_success.txt'
  heartbeats = set()
  deadline = time.time() + 300
  while finished not in (names := _objects(env, bucket, 'sweep/quickstart/')):
    assert process.poll() is None, log.read_text()[-3000:]
    assert time.time() < deadline, 'no checkpoint appeared in the bucket'
    if 'sweep/quickstart/lock.json' in names:
      heartbeats.add(json.loads(_read(env, bucket, 'sweep/quickstart/lock.json'))['heartbeat'])
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert len(heartbeats) > 2, heartbeats  # The lock was refreshed while the run trained.
  assert not os.path.exists(os.path.join(REPO, 'gs:')), 'a local directory named gs: was made'
  _age_lock(env, bucket, 'sweep/quickstart')
  resumed = run_main(workdir, *common, env=env, entry=FAST_HEARTBEAT)
  assert 'Taking over the lock' in resumed.stderr, resumed.stderr[-3000:]
  assert 'Restored the checkpoint of step' in resumed.stderr, resumed.stderr[-3000:]

  report = subprocess.run(
    [sys.executable, '-m', 'resnet_jax.report', f'--workdir=gs://{bucket}/sweep'],
    cwd=REPO,
    env=dict(os.environ, **env),
    capture_output=True,
    text=True,
  )
  assert report.returncode == 0, report.stderr[-3000:]
  names = set(_objects(env, bucket, 'sweep/'))
  assert {'sweep/results.csv', 'sweep/results.md', 'sweep/curves.png'} <= names
  assert {'sweep/quickstart/summary.json', 'sweep/quickstart/metrics.jsonl'} <= names
  assert {'sweep/quickstart/config.json', 'sweep/quickstart/wall_time.json'} <= names
  assert 'sweep/quickstart/lock.json' not in names  # Released at the end.
  assert any(n.startswith('sweep/quickstart/events.out.tfevents.') for n in names)

  local = json.loads((local_dir / 'summary.json').read_text())
  remote = json.loads(_read(env, bucket, 'sweep/quickstart/summary.json'))
  assert remote['step'] == local['step'] == 60
  assert remote['eval'] == local['eval']  # Killed, resumed, bit-identical.
  assert remote['restarts'] == 1
  local_rows = metric_rows((local_dir / 'metrics.jsonl').read_text())
  assert metric_rows(_read(env, bucket, 'sweep/quickstart/metrics.jsonl')) == local_rows
  table = _read(env, bucket, 'sweep/results.md')
  assert f'{100 * (1 - local["eval"]["top1"]):.2f}' in table

  # Restored in a process of its own, which has the emulator's environment.
  same = subprocess.run(
    [sys.executable, '-c', _SAME_STATE, str(local_dir), workdir],
    cwd=os.path.join(REPO, 'tests'),
    env=dict(os.environ, **env),
    capture_output=True,
    text=True,
  )
  assert same.returncode == 0, same.stderr[-3000:]
  assert same.stdout.split()[0] == '60', same.stdout


# A user's process: TensorFlow installed, EPATH_USE_TF unset, the project's paths module imported.
_USER_WRITE = """
import os, sys
import tensorflow
assert 'EPATH_USE_TF' not in os.environ
from resnet_jax import paths
path = paths.resolve(sys.argv[1])
paths.write_text_atomic(path, 'written')
print(path.read_text())
"""


@pytest.mark.slow
def test_a_users_process_writes_to_the_bucket_through_gcsfs_as_the_tests_do(gcs_emulator):
  """etils.epath prefers TensorFlow's GCS filesystem when TensorFlow is installed; its endpoints
  are compiled in and never reach the emulator (the write would go to storage.googleapis.com and
  fail or hang). The project chooses gcsfs itself, so the tested layer is the one users run."""
  bucket = gcs_emulator.create_bucket('layer')
  env = {k: v for k, v in {**os.environ, **gcs_emulator.env}.items() if k != 'EPATH_USE_TF'}
  result = subprocess.run(
    [sys.executable, '-c', _USER_WRITE, f'{bucket}/run/config.json'],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == 'written'
  assert _read(gcs_emulator.env, 'layer', 'run/config.json') == 'written'


@pytest.mark.slow
def test_a_damaged_checkpoint_in_a_bucket_is_set_aside_and_an_older_one_restored(
  data_dir, gcs_emulator
):
  """A bucket has no directories: checkpoints/damaged/ exists only once an object is in it."""
  env = gcs_emulator.env
  workdir = f'{gcs_emulator.create_bucket("damaged")}/run'
  common = [f'--config.data_dir={data_dir}', *STEPS, '--config.num_train_steps=40']
  run_main(workdir, *common, env=env)
  _write(env, 'damaged', 'run/checkpoints/40/default/manifest.ocdbt', 'not a manifest')
  resumed = run_main(workdir, *common, env=env)
  assert 'Checkpoint gs://damaged/run/checkpoints/40 cannot be used' in resumed.stderr
  assert 'Restored the checkpoint of step 20' in resumed.stderr, resumed.stderr[-3000:]
  assert _read(env, 'damaged', 'run/checkpoints/damaged/40/default/manifest.ocdbt') == (
    'not a manifest'
  )  # Moved intact.
  assert json.loads(_read(env, 'damaged', 'run/summary.json'))['step'] == 40


@pytest.mark.slow
def test_a_bucket_that_does_not_exist_stops_the_run_before_it_reads_data(tmp_path, gcs_emulator):
  data_dir = tmp_path / 'tfds'
  data_dir.mkdir()
  result = run_main(
    'gs://no-such-bucket/run', f'--config.data_dir={data_dir}', env=gcs_emulator.env, check=False
  )
  assert result.returncode == 1, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert 'Cannot use --workdir=gs://no-such-bucket/run: no such bucket.' in errors[0], errors[0]
  assert 'Compiling the' not in result.stderr  # Nothing compiled,
  assert not any(data_dir.iterdir())  # and the dataset was not even prepared.
