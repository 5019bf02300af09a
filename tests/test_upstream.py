"""What this project's workarounds assume of its libraries: each test fails when a release
changes under one, and names the workaround to revisit."""

import os
import subprocess
import sys
from multiprocessing import forkserver

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str) -> str:
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout.strip()


@pytest.mark.slow
def test_clu_writers_load_without_tensorflow_through_the_stand_in():
  """metric_logging's stand-in for clu's TensorFlow summary writer (google/CommonLoopUtils#358)."""
  assert (
    _run(
      'import sys; from resnet_jax import metric_logging; from clu import metric_writers; '
      'print(metric_writers.SummaryWriter is metric_logging._tensorflow_summary_writer, '
      "'tensorflow' in sys.modules)"
    )
    == 'True False'
  ), 'clu no longer imports its writer where metric_logging replaces it'
  assert _run('import sys; import clu.periodic_actions; print("tensorflow" in sys.modules)') == (
    'True'
  ), 'clu no longer imports TensorFlow: drop the stand-in in metric_logging'


def test_a_forkserver_stops_and_is_waited_for():
  """forked_main.stop: no public way to stop a forkserver (python/cpython#81688)."""
  server = forkserver.ForkServer()  # Not forked_main's server: a bare one, quick to start.
  server.ensure_running()
  pid = server._forkserver_pid
  server._stop()
  with pytest.raises(ChildProcessError):  # Already waited for.
    os.waitpid(pid, 0)
