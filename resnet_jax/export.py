"""Exports a trained run as a TensorFlow SavedModel for serving stacks (TF Serving, TFLite, ...).

    python -m resnet_jax.export --workdir=W --output=DIR

The model is converted by `jax2tf`. Its `serving_default` signature takes `images`, uint8
[N, H, W, C] of any batch size and image size, and returns `probabilities`, float32
[N, classes]; the preprocessing of `resnet_jax.predict` (resize, centre crop, normalisation)
runs inside it, so the exported model gives predict's probabilities for the same files.
"""

import sys
from collections.abc import Sequence

from absl import app, flags, logging

from resnet_jax import errors

FLAGS = flags.FLAGS


def export(run, output: str) -> None:
  """Writes the SavedModel of `run` (a `predict.Run`) to `output`."""
  import jax
  import tensorflow as tf
  from jax.experimental import jax2tf

  from resnet_jax import predict

  channels = len(run.spec.mean)

  def classify(variables, images):
    return predict.probabilities(run._replace(variables=variables), images)

  converted = jax2tf.convert(
    classify,
    polymorphic_shapes=[None, '(b, ...)'],
    with_gradient=False,
  )
  module = tf.Module()
  module.weights = tf.nest.map_structure(
    lambda x: tf.Variable(jax.device_get(x), trainable=False), run.variables
  )

  @tf.function(
    input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint8, name='images')],
    autograph=False,
  )
  def serve(images):
    return {'probabilities': converted(module.weights, predict.prepare(images, run))}

  module.serve = serve
  tf.saved_model.save(module, output, signatures={'serving_default': serve})
  logging.info('Wrote the SavedModel to %s.', output)


def main(argv: Sequence[str]) -> None:
  from resnet_jax import predict

  if FLAGS.output is None or len(argv) > 1:
    print(
      'usage: python -m resnet_jax.export --workdir=W --output=DIR; for converted weights '
      '--config=FILE --checkpoint=DIR instead of --workdir',
      file=sys.stderr,
    )
    sys.exit(1)
  try:
    export(predict.load_from_flags(), FLAGS.output)
  except errors.Error as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  from resnet_jax import predict

  predict.define_flags()
  flags.DEFINE_string('output', None, 'Directory the SavedModel is written to.')
  app.run(main)
