"""Host memory setting for XLA:CPU: transparent huge pages for its per-step buffers."""

import os
import sys


def reexec_with_huge_pages() -> None:
  """Restarts this process once with glibc's `hugetlb` tunable, if not already set.

  XLA:CPU allocates each step's temporary buffers afresh (hundreds of MiB for a ResNet-50
  step), and glibc maps allocations that large with fresh 4 KiB pages: about 110,000 page faults
  per step at batch 8, 128 px. With `glibc.malloc.hugetlb=1` glibc asks the kernel for
  transparent huge pages for them (2 MiB pages, a few hundred faults). glibc reads tunables only
  at process start, hence the restart; older glibc versions ignore the unknown tunable.

  The restart runs the interpreter's own command line (`sys.orig_argv`), so its options
  (`-X`, `-W`, `-u`) and any wrapper (`-m pdb`, `-m cProfile`, `coverage run`) hold in the
  restarted process as well. Call it before anything changes `sys.argv`.
  """
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  if not sys.platform.startswith('linux') or 'glibc.malloc.hugetlb' in tunables:
    return
  tunables = ':'.join(t for t in (tunables, 'glibc.malloc.hugetlb=1') if t)
  env = dict(os.environ, GLIBC_TUNABLES=tunables)
  os.execve(sys.executable, sys.orig_argv, env)
