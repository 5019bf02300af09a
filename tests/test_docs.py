"""Every command of README.md and docs/*.md runs in a test, and docs/config.md is generated.

The commands are those of the ```bash blocks. Each kind is exercised as cheaply as is still real:
`resnet_jax.main` commands load their config with every override and pass the checks a run
makes before it reads data (the model included); sweeps print their points (`--dry_run`);
reports run on finished runs; the other tools run. Commands that need what a test machine lacks
are listed in EXEMPT with the reason, and any other command fails `test_every_command_is_known`.
"""

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

from configs import reference
from conftest import REPO

DOCUMENTS = ['README.md', *sorted(os.path.relpath(p, REPO) for p in glob.glob(f'{REPO}/docs/*.md'))]

# Commands that no test runs, by their first words, and why.
EXEMPT = {
  'python3 -m venv': 'CI (.ci/run) creates a fresh environment on every run',
  '. .venv/bin/activate': 'CI (.ci/run) creates a fresh environment on every run',
  'pip install -r': 'CI (.ci/run) installs both requirements files on every run',
  'pip install torch': 'a package index; convert reads .npz without PyTorch (test_convert.py)',
  'python -m pytest': 'the test suite itself',
  'tfds build imagenet2012': 'needs the ImageNet tar files from image-net.org',
  'git clone': 'needs the network; the command a pod worker runs after it is checked',
  'cd resnet_jax': 'a directory of the pod workers',
  'pip install .': 'tests/test_packaging.py installs the project into a fresh environment',
  'scancel': 'tests/test_slurm.py runs it on a one-node Slurm cluster',
}
# Launchers whose own part needs a cluster; the command they start is checked.
LAUNCHERS = ('srun', 'gcloud')
TOOLS = {
  'resnet_jax.main',
  'resnet_jax.sweep',
  'resnet_jax.report',
  'resnet_jax.convert',
  'resnet_jax.summary',
  # Run as written by tests/test_own_data.py::test_worked_example.
  'resnet_jax.digits_dataset',
  'resnet_jax.predict',
  'resnet_jax.export',
}


def bash_blocks(text: str) -> list[str]:
  return re.findall(r'^```bash\n(.*?)^```', text, flags=re.DOTALL | re.MULTILINE)


def tokens(text: str) -> list[str]:
  lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  return list(lexer)


def split_commands(text: str) -> list[list[str]]:
  """Shell text as argument lists: `&&` chains split, launchers' commands unwrapped."""
  commands, argv = [], []
  for token in [*tokens(text), '&&']:
    if token != '&&':
      argv.append(token)
      continue
    if argv and argv[0] == 'gcloud':
      command = next(a for a in argv if a.startswith('--command='))
      commands += split_commands(command.removeprefix('--command='))
    elif argv and argv[0] in LAUNCHERS:
      commands.append(argv[argv.index('python') :])
    elif argv:
      commands.append(argv)
    argv = []
  return commands


def documented_commands() -> list[tuple[str, str, list[str]]]:
  """(document, its bash block, argv) for every command of every document."""
  found = []
  for document in DOCUMENTS:
    with open(os.path.join(REPO, document)) as f:
      for block in bash_blocks(f.read()):
        pending = ''
        for line in block.replace('\\\n', ' ').splitlines():
          pending += line + '\n'
          try:
            commands = split_commands(pending)
          except ValueError:  # A quotation that goes on in the next line.
            continue
          found += [(document, block, argv) for argv in commands]
          pending = ''
  return found


COMMANDS = documented_commands()


def tool(argv: list[str]) -> str | None:
  """'resnet_jax.main' for `python -m resnet_jax.main ...`; None for anything else."""
  if argv[:2] == ['python', '-m'] and argv[2] in TOOLS:
    return argv[2]
  return None


def exempt(argv: list[str]) -> str | None:
  line = ' '.join(argv)
  return next((why for prefix, why in EXEMPT.items() if line.startswith(prefix)), None)


def commands_of(name: str) -> list[tuple[str, str, list[str]]]:
  unique = {}
  for document, block, argv in COMMANDS:
    if tool(argv) == name:
      unique.setdefault(shlex.join(argv), (document, block, argv))
  return list(unique.values())


def ids(commands):
  return [f'{document}:{" ".join(argv[3:])}' for document, _, argv in commands]


def flag_values(argv: list[str]) -> dict[str, str]:
  return dict(a.removeprefix('--').partition('=')[::2] for a in argv if a.startswith('--'))


def test_documents_have_commands():
  assert {'README.md', 'docs/models.md', 'docs/sweeps.md'} <= {d for d, _, _ in COMMANDS}
  assert len(commands_of('resnet_jax.main')) >= 10


def test_every_command_is_known():
  unknown = [
    f'{document}: {shlex.join(argv)}'
    for document, _, argv in COMMANDS
    if tool(argv) is None and exempt(argv) is None
  ]
  assert not unknown, (
    'Commands that no test exercises; add a check to tests/test_docs.py (or, for one that '
    f'needs outside resources, an EXEMPT entry with the reason): {unknown}'
  )


MAIN = commands_of('resnet_jax.main')


@pytest.mark.parametrize('document, block, argv', MAIN, ids=ids(MAIN))
def test_main_command_passes_the_checks_before_data(document, block, argv, monkeypatch):
  """The config with every override, checked and its model built, as a run starts."""
  from resnet_jax import main, sweep, train

  monkeypatch.chdir(REPO)
  args = argv[3:]
  config_args = [a for a in args if a.startswith(('--config', '--workdir='))]
  for name in flag_values([a for a in args if a not in config_args]):
    assert name in main.FLAGS, f'{document}: --{name} is no flag of resnet_jax.main'
  config = sweep.resolve_config(config_args)
  train.check_config(config)
  model = train.create_model(config)
  assert model.num_classes == config.num_classes


SWEEPS = commands_of('resnet_jax.sweep')


def _run(argv, **kwargs):
  result = subprocess.run(
    [sys.executable, *argv[1:]], cwd=REPO, capture_output=True, text=True, **kwargs
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize('document, block, argv', SWEEPS, ids=ids(SWEEPS))
def test_sweep_command_lists_its_points(document, block, argv, tmp_path):
  options = flag_values(argv)
  dry_run = [a for a in argv if not a.startswith(('--workdir=', '--point='))]
  lines = _run([*dry_run, f'--workdir={tmp_path}', '--dry_run']).splitlines()
  assert lines and all(' -m resnet_jax.main --config=' in line for line in lines)
  if options.get('point') == '$SLURM_ARRAY_TASK_ID':
    # The block's array covers exactly the sweep's points.
    first, last = re.search(r'#SBATCH --array=(\d+)-(\d+)', block).groups()
    assert (int(first), int(last)) == (0, len(lines) - 1), f'{document}: {len(lines)} points'


# Reports differ only in their workdir, which the test replaces, and in their options.
REPORTS = list(
  {
    tuple(a for a in c[2] if not a.startswith('--workdir=')): c
    for c in commands_of('resnet_jax.report')
  }.values()
)


@pytest.mark.slow
@pytest.mark.parametrize('document, block, argv', REPORTS, ids=ids(REPORTS))
def test_report_command_reports_finished_runs(document, block, argv, tmp_path):
  from test_report import write_run

  for seed, accuracy in enumerate((0.9, 0.8)):
    write_run(tmp_path, f'seed={seed}', 'cifar_resnet8', seed, accuracy)
  _run([a for a in argv if not a.startswith('--workdir=')] + [f'--workdir={tmp_path}'])
  table = (tmp_path / 'results.md').read_text()
  assert '| cifar_resnet8 |' in table and '15.00 ± 7.07' in table


CONVERTS = commands_of('resnet_jax.convert')


@pytest.mark.parametrize('document, block, argv', CONVERTS, ids=ids(CONVERTS))
def test_convert_command_names_a_model_and_its_options(document, block, argv):
  """The weights file is a download; tests/test_convert.py runs this CLI on a fixture."""
  from resnet_jax import convert, models

  options = flag_values(argv)
  assert set(options) <= {'model', 'checkpoint', 'output', 'option'}
  kwargs = dict(convert._parse_option(o) for o in argv if o.startswith('--option='))
  assert models.create_model(options['model'], **kwargs) is not None
  # The run that follows starts from the converted weights.
  assert f'--config.init_from={options["output"]}' in block


SUMMARIES = commands_of('resnet_jax.summary')


@pytest.mark.slow
@pytest.mark.parametrize('document, block, argv', SUMMARIES, ids=ids(SUMMARIES))
def test_summary_command_prints_the_documented_counts(document, block, argv):
  name = flag_values(argv)['model']
  with open(os.path.join(REPO, document)) as f:
    row = re.search(rf'^\| {name} \| 224 \| ([\d,]+) \|', f.read(), flags=re.MULTILINE)
  assert re.search(rf'^parameters\s+{row.group(1)}$', _run(argv), flags=re.MULTILINE)


def test_config_reference_is_generated_from_default():
  with open(os.path.join(REPO, 'docs', 'config.md')) as f:
    assert f.read() == reference.markdown(), (
      f'docs/config.md differs from configs/default.py: run `{reference.COMMAND}`.'
    )


def test_config_reference_documents_every_field():
  from configs import default

  sections = reference.sections(reference.default_source())
  groups = [group for _, section in sections for group in section]
  fields = [f for g in groups for f in g.fields]
  assert sorted(fields) == sorted(default.get_config().keys()) and len(set(fields)) == len(fields)
  assert all(g.text for g in groups), 'a field of configs/default.py has no comment'


def test_a_new_field_in_the_existing_style_is_documented():
  source = """
def get_config():
  config = ml_collections.ConfigDict()

  # --- Model --------------------------------------------------------------------------------
  # Registry name.
  config.model = 'cifar_resnet20'

  # --- Normalisation ------------------------------------------------------------------------
  # Devices whose batches one BatchNorm normalises together; 0: all of them
  # (the global batch).
  config.bn_group_size = 0
  config.bn_momenta = (
    0.9,
    0.99,
  )  # Per stage.
  return config
"""
  text = reference.markdown(source)
  assert "| `model` | `'cifar_resnet20'` | Registry name. |\n\n## Normalisation\n" in text
  assert text.endswith(
    '| `bn_group_size`<br>`bn_momenta` | `0`<br>`(0.9, 0.99,)` | Devices whose batches one '
    'BatchNorm normalises together; 0: all of them (the global batch). `bn_momenta`: Per stage. |\n'
  )
