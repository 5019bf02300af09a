"""predict and export on converted weights (no run): the config file's dataset names the classes."""

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorflow as tf

from resnet_jax import predict, train


def test_converted_weights_predict_with_the_config_files_dataset(digits_config, tmp_path):
  model = train.create_model(digits_config)
  variables = model.init(jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32), train=False)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp_path / 'converted', variables)
  digit = np.zeros((8, 8, 1), np.uint8)
  digit[2:6, 3:5] = 255
  images = tmp_path / 'images'
  tf.io.write_file(str(images / 'one.png'), tf.io.encode_png(digit))
  (images / 'notes.png').write_text('no picture')
  (images / 'notes.txt').write_text('not looked at')

  run = predict.load_run(None, digits_config, str(tmp_path / 'converted'))
  assert run.class_names == [str(d) for d in range(10)]
  files = predict.image_files([str(images)])
  results, failures = predict.predict(run, files)
  assert [p for p, _ in results] == [str(images / 'one.png')]
  assert failures == [f'{images / "notes.png"}: not an image (JPEG, PNG, GIF or BMP), skipped.']
  probs = results[0][1]
  assert probs.shape == (10,) and abs(probs.sum() - 1) < 1e-5
  # The probabilities of the model applied to the evaluation pipeline's centre crop.
  mean, std = run.spec.mean[0], run.spec.std[0]
  expected = jax.nn.softmax(model.apply(variables, ((digit - mean) / std)[None], train=False))[0]
  np.testing.assert_allclose(probs, expected, atol=1e-6)
  line = predict.format_line('one.png', probs, run.class_names, 3).split('\t')
  assert line[0] == 'one.png' and len(line) == 7 and line[1] == str(int(np.argmax(probs)))
