"""The restart for huge pages runs the command that started the process, options included."""

import os
import subprocess
import sys

import pytest

from resnet_jax import host_memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_restart_keeps_interpreter_options_and_wrappers(monkeypatch):
  command = ['python3', '-X', 'faulthandler', '-W', 'error', '-u', '-m', 'cProfile', '-m']
  command += ['resnet_jax.main', '--workdir=/tmp/w']
  monkeypatch.setattr(sys, 'orig_argv', command)
  monkeypatch.setattr(sys, 'argv', ['resnet_jax/main.py', '--workdir=/tmp/w'])
  monkeypatch.setattr(sys, 'platform', 'linux')
  monkeypatch.setenv('GLIBC_TUNABLES', 'glibc.malloc.arena_max=2')
  calls = []
  monkeypatch.setattr(os, 'execve', lambda *args: calls.append(args))
  host_memory.reexec_with_huge_pages()
  [(executable, argv, env)] = calls
  assert (executable, argv) == (sys.executable, command)
  assert env['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'


def test_no_restart_once_the_tunable_is_set(monkeypatch):
  monkeypatch.setenv('GLIBC_TUNABLES', 'glibc.malloc.hugetlb=1')
  monkeypatch.setattr(os, 'execve', lambda *args: pytest.fail(f'restarted: {args}'))
  host_memory.reexec_with_huge_pages()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc tunables')
def test_restarted_process_has_the_same_flags():
  code = (
    'import os, sys; from resnet_jax import host_memory; host_memory.reexec_with_huge_pages(); '
    "print(os.environ['GLIBC_TUNABLES'], sys._xoptions, sys.warnoptions, sys.argv[1:])"
  )
  env = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
  result = subprocess.run(
    [sys.executable, '-X', 'faulthandler', '-W', 'ignore::UserWarning', '-c', code, 'a', '-b'],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.split('\n')[0] == (
    "glibc.malloc.hugetlb=1 {'faulthandler': True} ['ignore::UserWarning'] ['a', '-b']"
  )
