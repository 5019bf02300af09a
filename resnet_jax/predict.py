"""Classifies image files with a trained run: one line per image, its top classes and their
probabilities.

    python -m resnet_jax.predict --workdir=W [--top=K] FILE_OR_DIR...

Images are prepared as the run's evaluation prepares its 'center' crop (the config recorded in
the workdir: size, crop fraction, normalisation), from the newest checkpoint. A file that cannot
be decoded as an image gets one line on stderr, the others are still classified, and the exit
code is then 1.
"""

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from absl import app, flags, logging

from resnet_jax import errors

FLAGS = flags.FLAGS


class Run(NamedTuple):
  """What classifying an image needs of a training run."""

  config: Any  # ml_collections.ConfigDict as recorded in the workdir
  model: Any  # flax.linen.Module
  variables: dict  # {'params', 'batch_stats'} of the newest checkpoint
  spec: Any  # datasets.DatasetSpec
  eval_image: Any  # datasets.EvalImage
  class_names: list[str]


def load_run(workdir: str | None, config=None, checkpoint: str | None = None) -> Run:
  """The run in `workdir`: its recorded config, model, newest checkpoint and class names; or,
  without a workdir, `config` with the weights of `checkpoint` (`resnet_jax.convert`'s output)."""
  import ml_collections
  import orbax.checkpoint as ocp

  from resnet_jax import checkpoints, datasets, input_pipeline, paths, train
  from resnet_jax import workdir as run_workdir

  if workdir:
    path = paths.resolve(workdir)
    if not (path / run_workdir.CONFIG_FILE).exists():
      raise errors.WorkdirError(f'{workdir} holds no training run ({run_workdir.CONFIG_FILE}).')
    config = ml_collections.ConfigDict(json.loads((path / run_workdir.CONFIG_FILE).read_text()))
    newest = checkpoints.newest_state(path)
    if newest is None:
      raise errors.CheckpointError(f'{workdir} holds no finished checkpoint yet.')
    checkpoint = str(newest)
  tree = ocp.StandardCheckpointer().restore(paths.resolve(checkpoint))
  variables = {'params': tree['params'], 'batch_stats': tree.get('batch_stats', {})}
  # Class names and normalisation from the dataset's metadata; its data need not be there.
  builder = input_pipeline.find_builder(config)
  if not config.num_classes:  # A config file's 0: the dataset's number (runs record theirs).
    config = ml_collections.ConfigDict(config.to_dict())
    config.num_classes = input_pipeline.num_classes(builder)
  eval_image = datasets.EvalImage(
    datasets.eval_resize_size(config), datasets.eval_image_size(config)
  )
  return Run(
    config,
    train.create_model(config),
    variables,
    input_pipeline.dataset_spec(builder, config),
    eval_image,
    input_pipeline.class_names(builder),
  )


def prepare(images, run: Run):
  """uint8 images [N, H, W, C] of one size as the run's 'center' evaluation crops them, uint8;
  `probabilities` normalises them."""
  import tensorflow as tf

  from resnet_jax import input_pipeline

  return tf.map_fn(
    lambda image: input_pipeline.center_crop(image, run.eval_image),
    images,
    fn_output_signature=tf.uint8,
  )


def probabilities(run: Run, images):
  """Softmax of the run's logits for prepared (uint8) images, float32 [N, classes]."""
  import jax

  from resnet_jax import normalize, train

  dtype = train.compute_dtype(run.config).name
  images = normalize.images(images, normalize.Normalization(run.spec.mean, run.spec.std, dtype))
  logits = run.model.apply(run.variables, images, train=False)
  return jax.nn.softmax(logits.astype('float32'), axis=-1)


# Files under a directory that are classified; files named on the command line always are.
SUFFIXES = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')


def image_files(paths: Sequence[str]) -> list[str]:
  """The files given, and the image files under the directories given, in sorted order."""
  files = []
  for path in paths:
    if os.path.isdir(path):
      found = (os.path.join(d, f) for d, _, names in os.walk(path) for f in names)
      files += sorted(f for f in found if f.lower().endswith(SUFFIXES))
    else:
      files.append(path)
  return files


def decode(path: str, channels: int):
  """The image file at `path` as uint8 [H, W, channels]; DataError if it is none."""
  import tensorflow as tf

  try:
    return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
  except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
    reason = 'no such file' if isinstance(error, tf.errors.NotFoundError) else 'not an image'
    raise errors.DataError(f'{path}: {reason} (JPEG, PNG, GIF or BMP), skipped.') from None


def predict(run: Run, files: Sequence[str]) -> tuple[list[tuple[str, Any]], list[str]]:
  """([(file, probabilities)], [one-line error per file that could not be read])."""
  import numpy as np

  results, failures = [], []
  for path in files:
    try:
      image = decode(path, len(run.spec.mean))
    except errors.DataError as error:
      failures.append(str(error))
      continue
    batch = prepare(image[None], run).numpy()
    results.append((path, np.asarray(probabilities(run, batch))[0]))
  return results, failures


def format_line(path: str, probs, class_names: Sequence[str], top: int) -> str:
  import numpy as np

  best = np.argsort(-probs, kind='stable')[:top]
  return '\t'.join([path, *(f'{class_names[i]}\t{probs[i]:.4f}' for i in best)])


USAGE = (
  'usage: python -m resnet_jax.predict --workdir=W [--top=K] FILE_OR_DIR...; for converted '
  'weights --config=FILE --checkpoint=DIR instead of --workdir'
)


def define_flags() -> None:
  """The flags of predict and export, defined when one of them runs (importing defines none)."""
  from ml_collections import config_flags

  flags.DEFINE_string('workdir', None, 'Workdir of a training run (config.json, checkpoints).')
  config_flags.DEFINE_config_file('config', None, 'Config file, with --checkpoint.')
  flags.DEFINE_string('checkpoint', None, 'Converted weights (resnet_jax.convert --output).')


def load_from_flags() -> Run:
  """The run of --workdir, or of --config and --checkpoint (converted weights)."""
  if bool(FLAGS.workdir) == bool(FLAGS.checkpoint and FLAGS.config):
    raise errors.ConfigError('give --workdir, or --config and --checkpoint.')
  return load_run(FLAGS.workdir, FLAGS.config, FLAGS.checkpoint)


def main(argv: Sequence[str]) -> None:
  if len(argv) < 2:
    print(USAGE, file=sys.stderr)
    sys.exit(1)
  if FLAGS.top < 1:
    print(f'error: --top={FLAGS.top} must be at least 1.', file=sys.stderr)
    sys.exit(1)
  logging.set_verbosity(logging.WARNING)  # Orbax's INFO lines would drown the results.
  try:
    run = load_from_flags()
  except errors.Error as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(1)
  results, failures = predict(run, image_files(argv[1:]))
  for path, probs in results:
    print(format_line(path, probs, run.class_names, FLAGS.top))
  for failure in failures:
    print(f'error: {failure}', file=sys.stderr)
  if failures:
    sys.exit(1)


if __name__ == '__main__':
  define_flags()
  flags.DEFINE_integer('top', 1, 'Classes printed per image, most probable first.')
  app.run(main)
