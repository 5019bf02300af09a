"""A one-node Slurm cluster for the tests: slurmctld and slurmd of Debian's slurm-wlm, as root.

The node is this machine, with its real CPU count, named localhost. Its config is written under
a temporary directory (state, spool, logs and pid files too), both daemons listen on free ports
and run in the foreground as children of the test session, and every client command finds them
through SLURM_CONF. Authentication is auth/none: one node, one user (root), nothing to forge a
credential against; a real cluster uses munge. Process tracking by /proc (proctrack/linuxproc)
and no task plugin need neither cgroups nor systemd.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

DAEMONS = ('slurmctld', 'slurmd')
CLIENTS = ('sinfo', 'srun', 'sbatch', 'scancel', 'squeue', 'scontrol')


def unavailable() -> str | None:
  """Why no cluster can start here, or None."""
  missing = [p for p in (*DAEMONS, *CLIENTS) if shutil.which(p, path=_PATH) is None]
  if missing:
    return f'Slurm is not installed ({", ".join(missing)} missing): apt-get install slurm-wlm munge'
  if os.geteuid() != 0:
    return 'the Slurm daemons of the tests run as root (SlurmUser=root), and this is not root'
  return None


# The daemons live in sbin, which a non-login root shell may not have on its PATH.
_PATH = os.pathsep.join([os.environ.get('PATH', ''), '/usr/sbin', '/sbin'])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


_CONFIG = """\
ClusterName=tests
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=tests Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
  """The running daemons; `environ()` is the environment of a process that submits to them."""

  def __init__(self, root: str) -> None:
    self.root = root
    for sub in ('state', 'spool'):
      os.makedirs(os.path.join(root, sub), exist_ok=True)
    self.conf = os.path.join(root, 'slurm.conf')
    with open(self.conf, 'w') as f:
      f.write(
        _CONFIG.format(
          host=socket.gethostname().split('.')[0],
          root=root,
          ctld_port=_free_port(),
          d_port=_free_port(),
          cpus=os.cpu_count(),
        )
      )
    # Jobs inherit this environment: `python` in a job is the interpreter running the tests.
    self.env = {
      'SLURM_CONF': self.conf,
      'PATH': os.pathsep.join([os.path.dirname(sys.executable), _PATH]),
    }
    self._daemons = []

  def environ(self) -> dict[str, str]:
    """This process's environment pointed at this cluster, without the variables of any Slurm
    job the tests themselves run in (srun would start its tasks in that job)."""
    own = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
    return {**own, **self.env}

  def start(self, timeout: float = 60) -> None:
    env = self.environ()
    # -D: foreground, a child of this process; -i: ignore state left by an earlier cluster.
    # The node is named localhost (slurmd -N), whatever this machine's name: JAX takes its
    # coordinator's address from the node list, and localhost resolves in any container.
    for command in (['slurmctld', '-D', '-i'], ['slurmd', '-D', '-N', 'localhost']):
      log = open(os.path.join(self.root, f'{command[0]}.out'), 'w')
      self._daemons.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.time() + timeout
    while self.run('sinfo', '--noheader', '--format=%T', check=False).stdout.strip() != 'idle':
      if time.time() > deadline or any(d.poll() is not None for d in self._daemons):
        self.stop()
        raise RuntimeError(f'the Slurm node did not become idle:\n{self.logs()}')
      time.sleep(0.2)

  def run(self, *command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """A Slurm client command (sinfo, sbatch, ...) against this cluster."""
    result = subprocess.run(command, env=self.environ(), capture_output=True, text=True, **kwargs)
    if check and result.returncode:
      raise AssertionError(f'{" ".join(command)} failed:\n{result.stderr}')
    return result

  def wait_for_job(self, job_id: str, timeout: float = 600) -> None:
    """Until the job (every task of an array) has left the queue."""
    deadline = time.time() + timeout
    while self.run('squeue', '--noheader', f'--jobs={job_id}', check=False).stdout.strip():
      assert time.time() < deadline, f'job {job_id} still queued or running'
      time.sleep(0.5)

  def logs(self) -> str:
    text = []
    for name in ('slurmctld.log', 'slurmd.log'):
      path = os.path.join(self.root, name)
      if os.path.exists(path):
        with open(path) as f:
          text.append(f'--- {name}\n' + ''.join(f.readlines()[-20:]))
    return '\n'.join(text)

  def stop(self) -> None:
    """Ends the daemons (slurmd first, which ends the steps it still runs)."""
    for daemon in reversed(self._daemons):
      daemon.terminate()
      try:
        daemon.wait(timeout=30)
      except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    self._daemons = []
