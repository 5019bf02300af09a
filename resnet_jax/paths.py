"""A run's files on any filesystem: local paths and bucket URLs (gs://, s3://) alike.

Everything that reads or writes a run's files (workdir, checkpoints, metrics, summaries,
sweeps, reports, converted weights) takes its paths through `resolve`, so that a bucket works
wherever a local directory does. Reading and writing goes through `etils.epath` and from there
through fsspec (gcsfs for gs://); Orbax writes arrays through TensorStore, which speaks gs://
itself.
"""

import os

from etils import epath

# etils.epath would hand URLs to TensorFlow's filesystems whenever TensorFlow is installed (it is
# a requirement). fsspec's gcsfs is chosen instead, for every process that imports this module
# (and the processes it starts), because it is the layer the tests run against a Cloud Storage
# emulator: TensorFlow's GCS endpoints are compiled in. epath reads the setting at its first URL.
os.environ['EPATH_USE_TF'] = 'false'


def is_url(path: str | os.PathLike) -> bool:
  """Whether `path` names an object store (gs://bucket/...) rather than a local path."""
  return '://' in os.fspath(path)


def resolve(path: str | os.PathLike) -> epath.Path:
  """`path` as an `epath.Path`: local paths made absolute (Orbax needs them so), URLs as given.

  `os.path.abspath('gs://b/run')` would make a local directory named `gs:`; this never does.
  """
  path = epath.Path(path)
  if is_url(path):
    return path
  return path.expanduser().absolute()


def write_text_atomic(path: epath.Path, text: str) -> None:
  """Writes `path` whole or not at all: a run killed mid-write leaves the old file intact.

  Object stores replace objects atomically anyway; local files are written beside and renamed.
  """
  if is_url(path):
    path.write_text(text)
    return
  partial = path.parent / f'.{path.name}.partial'
  partial.write_text(text)
  os.replace(partial, path)
