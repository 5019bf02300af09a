"""The field reference docs/config.md, generated from the comments of configs/default.py.

    python -m configs.reference > docs/config.md

default.py documents each field in the comment lines just above its assignment (or at the end of
its line); assignments that follow with no comment of their own share the comment above them, and
`# --- Section ---` lines start a section. The reference is that file's text rearranged, so the
two cannot disagree: tests/test_docs.py checks that docs/config.md is this module's output.
"""

import ast
import dataclasses
import io
import os
import re
import tokenize

from configs import default

COMMAND = 'python -m configs.reference > docs/config.md'
_SECTION = re.compile(r'#\s*---\s*(.*?)\s*-*$')


@dataclasses.dataclass
class Group:
  """Fields documented by one comment: their names, default values as written, and text."""

  fields: list[str] = dataclasses.field(default_factory=list)
  defaults: list[str] = dataclasses.field(default_factory=list)
  text: list[str] = dataclasses.field(default_factory=list)


def _comments(source: str) -> dict[int, tuple[str, bool]]:
  """Line number -> (comment text, whether the comment is the whole line)."""
  comments = {}
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      whole_line = not token.line[: token.start[1]].strip()
      comments[token.start[0]] = (token.string, whole_line)
  return comments


def _assignments(source: str) -> list[ast.Assign]:
  """The `config.FIELD = VALUE` statements of `get_config`, in order."""
  function = next(
    node
    for node in ast.parse(source).body
    if isinstance(node, ast.FunctionDef) and node.name == 'get_config'
  )
  return [
    node
    for node in function.body
    if isinstance(node, ast.Assign)
    and isinstance(node.targets[0], ast.Attribute)
    and isinstance(node.targets[0].value, ast.Name)
    and node.targets[0].value.id == 'config'
  ]


def sections(source: str) -> list[tuple[str, list[Group]]]:
  """Default.py's fields, grouped by the comment that documents them, under their sections."""
  comments = _comments(source)
  lines = source.splitlines()
  result: list[tuple[str, list[Group]]] = []
  previous_end = 0
  for node in _assignments(source):
    above = []  # The comment lines between the previous assignment and this one.
    for number in range(previous_end + 1, node.lineno):
      text, whole_line = comments.get(number, ('', False))
      section = _SECTION.match(text)
      if section:
        result.append((section.group(1), []))
        above = []
      elif whole_line:
        above.append(text.removeprefix('#').strip())
      elif not lines[number - 1].strip():
        above = []  # A blank line ends a comment that documents nothing.
    if not result:
      result.append(('Fields', []))
    groups = result[-1][1]
    if above or not groups:
      groups.append(Group(text=[' '.join(above)] if above else []))
    group = groups[-1]
    name = node.targets[0].attr
    group.fields.append(name)
    group.defaults.append(_one_line(ast.get_source_segment(source, node.value)))
    inline = comments.get(node.end_lineno, ('', True))
    if not inline[1]:
      group.text.append(f'`{name}`: {inline[0].removeprefix("#").strip()}')
    previous_end = node.end_lineno
  return result


def _cell(text: str) -> str:
  return text.replace('|', '\\|')


def _one_line(code: str) -> str:
  """A value as written, on one line: '(\\n    0.9\\n  )' -> '(0.9)'."""
  return re.sub(r'([(\[{]) | ([)\]}])', r'\1\2', ' '.join(code.split()))


def default_source() -> str:
  with open(os.path.abspath(default.__file__)) as f:
    return f.read()


def markdown(source: str | None = None) -> str:
  """docs/config.md: one table per section of default.py."""
  source = default_source() if source is None else source
  out = [
    '# Config fields',
    '',
    f'Generated from the comments of `configs/default.py` by `{COMMAND}`:',
    'edit those comments, not this file. Each config file overrides only what differs from',
    '`default.py`, and any field can be set on the command line: `--config.FIELD=VALUE`.',
  ]
  for title, groups in sections(source):
    out += ['', f'## {title}', '', '| field | default | meaning |', '|---|---|---|']
    for group in groups:
      fields = '<br>'.join(f'`{f}`' for f in group.fields)
      defaults = '<br>'.join(f'`{_cell(d)}`' for d in group.defaults)
      out.append(f'| {fields} | {defaults} | {_cell(" ".join(group.text))} |')
  return '\n'.join(out) + '\n'


if __name__ == '__main__':
  print(markdown(), end='')
