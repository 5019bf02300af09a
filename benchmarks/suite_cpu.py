"""Where the test suite's CPU time goes: a pytest plugin that times every test by CPU.

    python -m pytest -q -p benchmarks.suite_cpu                # the whole suite
    python -m pytest -q -p benchmarks.suite_cpu -m "not slow"  # the fast tier

For each test it adds the test process's own CPU time (imports, tracing, XLA compiling and
running in-process) and that of the processes the test starts (subprocesses, and the runs
forked from tests/forked_main.py's server, read from the server's /proc entry, since the server
reaps them and is itself reaped only when the session ends). Prints, after the run, a Markdown
table by test file and the totals of the slow and the fast tier. Wall time on a loaded machine
varies; CPU time is the figure to compare. Run it serially: with pytest-xdist the table covers
only the controller.
"""

import collections
import os
import resource
import time

import pytest

_rows: list[dict] = []


def _server_cpu() -> float | None:
  """User + system time of the forkserver and the runs it has reaped; None when none runs."""
  from multiprocessing import forkserver

  pid = forkserver._forkserver._forkserver_pid
  if not pid:
    return None
  try:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
  except OSError:
    return None
  # Fields 14-17 of proc(5): utime, stime, cutime, cstime (here 11-14, after pid and comm).
  return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf('SC_CLK_TCK')


def _rusage(who: int) -> float:
  usage = resource.getrusage(who)
  return usage.ru_utime + usage.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  own, children, server = (
    _rusage(resource.RUSAGE_SELF),
    _rusage(resource.RUSAGE_CHILDREN),
    _server_cpu(),
  )
  start = time.perf_counter()
  yield
  wall = time.perf_counter() - start
  own = _rusage(resource.RUSAGE_SELF) - own
  children = _rusage(resource.RUSAGE_CHILDREN) - children
  server_after = _server_cpu()
  if server is not None and server_after is None:
    # The server was stopped and reaped during this test: `children` now holds all its time.
    runs = children - server
  else:
    runs = children + (server_after or 0.0) - (server or 0.0)
  _rows.append(
    {
      'file': item.nodeid.split('::')[0],
      'slow': item.get_closest_marker('slow') is not None,
      'own': own,
      'runs': runs,
      'wall': wall,
    }
  )


def pytest_terminal_summary(terminalreporter):
  write = terminalreporter.write_line
  tables = [collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0]) for _ in range(3)]
  for row in _rows:
    keys = (row['file'], 'slow' if row['slow'] else 'fast', 'all')
    for key, table in zip(keys, tables, strict=True):
      entry = table[key]
      entry[0] += 1
      entry[1] += row['own']
      entry[2] += row['runs']
      entry[3] += row['wall']
  write('')
  write(
    '| tests | count | CPU s in the test process | CPU s in started runs | total CPU s | wall s |'
  )
  write('|---|---|---|---|---|---|')
  for table in tables:  # By file, by tier, then all tests.
    for key, (count, own, runs, wall) in sorted(table.items(), key=lambda kv: -kv[1][1] - kv[1][2]):
      write(f'| {key} | {count} | {own:.0f} | {runs:.0f} | {own + runs:.0f} | {wall:.0f} |')
