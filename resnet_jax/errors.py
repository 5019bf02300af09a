"""Failures a person can act on: one paragraph that says what went wrong, where, and what to do.

`resnet_jax.main` prints the message of an `Error` once, without a traceback, and exits with
code 1. Any other exception is a bug or an unforeseen failure, and keeps its traceback.
"""


class Error(Exception):
  """An anticipated failure; its message is the whole report."""


class ConfigError(Error, ValueError):
  """A config field, model name or option that cannot work; the message names the field."""


class DataError(Error, ValueError):
  """A dataset that is missing, unprepared, or does not match the config."""


class WorkdirError(Error):
  """A workdir that cannot be created or written, is held by another run, or holds another
  run's config."""


class CheckpointError(Error):
  """No checkpoint of the workdir can be restored, or one does not fit the configured model."""


class DiskFullError(Error):
  """The filesystem of the workdir ran out of space; the intact checkpoints are kept."""


class SweepError(Error, ValueError):
  """A sweep that cannot run as written, or be submitted; the message says what to change."""
