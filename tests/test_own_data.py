"""Any TFDS dataset by name and folders of images: features read from the dataset, bad folders
stopped with the path to fix.

The TFDS datasets here are small builders written in a temporary data directory, whose features
differ from the built-in datasets' as real ones do: grey-level 28x28 images (mnist), JPEGs of
varying size in 102 classes (oxford_flowers102), labels under another name and no supervised
keys. `tfds.testing.mock_data` would not do: its datasets have no split sizes.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import default
from conftest import REPO
from resnet_jax import data, errors, image_folder, input_pipeline, train


class _Small(tfds.core.GeneratorBasedBuilder):
  """A few random examples per split; subclasses set the features."""

  VERSION = tfds.core.Version('1.0.0')
  SIZES = {'train': 24, 'test': 10}

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split, n) for split, n in self.SIZES.items()}

  def _generate_examples(self, split, count):
    rng = np.random.default_rng(len(split))
    for i in range(count):
      yield i, self._example(rng, i)


class GreyDigits28(_Small):
  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(shape=(28, 28, 1)),
          'label': tfds.features.ClassLabel(num_classes=10),
        }
      ),
      supervised_keys=('image', 'label'),
    )

  def _example(self, rng, i):
    return {'image': rng.integers(0, 256, (28, 28, 1), np.uint8), 'label': i % 10}


class JpegFlowers102(_Small):
  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(encoding_format='jpeg'),
          'label': tfds.features.ClassLabel(num_classes=102),
          'file_name': tfds.features.Text(),
        }
      ),
      supervised_keys=('image', 'label'),
    )

  def _example(self, rng, i):
    shape = (rng.integers(40, 90), rng.integers(40, 90), 3)
    return {'image': rng.integers(0, 256, shape, np.uint8), 'label': i % 102, 'file_name': f'{i}'}


class SpeciesLabels(_Small):
  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          'picture': tfds.features.Image(shape=(12, 12, 3)),
          'species': tfds.features.ClassLabel(num_classes=4),
        }
      ),
    )

  def _example(self, rng, i):
    return {'picture': rng.integers(0, 256, (12, 12, 3), np.uint8), 'species': i % 4}


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tfds'))
  for builder in (GreyDigits28, JpegFlowers102, SpeciesLabels):
    builder(data_dir=directory).download_and_prepare()
  return directory


def _config(dataset, data_dir, **fields):
  config = default.get_config()
  config.update(dataset=dataset, data_dir=data_dir, batch_size=8, eval_batch_size=8, **fields)
  return config


# name, image_size, (classes, channels, augmentation)
CASES = [
  ('grey_digits28', 28, (10, 1, 'pad_crop')),
  ('jpeg_flowers102', 32, (102, 3, 'inception_crop')),
  ('species_labels', 12, (4, 3, 'pad_crop')),
]


@pytest.mark.parametrize('name, size, expected', CASES, ids=[c[0] for c in CASES])
def test_any_tfds_dataset_trains_with_the_classes_and_channels_of_its_features(
  name, size, expected, tfds_dir
):
  config = data.with_num_classes(_config(name, tfds_dir, image_size=size))
  classes, channels, augmentation = expected
  assert config.num_classes == classes
  dataset = data.Data(config)
  assert dataset.image_shape == (size, size, channels)
  assert input_pipeline.dataset_spec(dataset.builder, config).augmentation == augmentation
  batch = next(dataset.train(0))
  assert batch['image'].shape == (8, size, size, channels) and batch['image'].dtype == np.uint8
  assert set(batch['label']) <= set(range(classes))
  start_pass, steps = dataset.eval()
  batches = list(start_pass())
  assert len(batches) == steps == 2 and sum(b['mask'].sum() for b in batches) == 10


def test_a_version_or_config_suffix_names_the_same_dataset(tfds_dir):
  config = data.with_num_classes(_config('grey_digits28:1.0.0', tfds_dir, image_size=28))
  assert config.num_classes == 10


def test_a_set_number_of_classes_that_disagrees_is_an_error(tfds_dir):
  with pytest.raises(errors.DataError, match='config.num_classes=5, but it has 10 classes'):
    input_pipeline.get_builder(_config('grey_digits28', tfds_dir, num_classes=5, image_size=28))


def test_augmentation_can_be_overridden_and_a_wrong_one_is_a_one_line_error(tfds_dir):
  config = _config('jpeg_flowers102', tfds_dir, image_size=16, augmentation='pad_crop')
  builder = input_pipeline.get_builder(config)
  assert input_pipeline.dataset_spec(builder, config).augmentation == 'pad_crop'
  assert next(data.Data(config).train(0))['image'].shape == (8, 16, 16, 3)
  config.augmentation = 'random_crop'
  with pytest.raises(errors.ConfigError, match="config.augmentation='random_crop' is not one of"):
    train.check_config(config)


def test_an_unknown_dataset_name_is_a_short_error(tfds_dir):
  with pytest.raises(errors.DataError, match="Unknown dataset 'no_such_dataset'"):
    input_pipeline.get_builder(_config('no_such_dataset', tfds_dir))


def test_num_classes_zero_keeps_the_built_in_configs_numbers():
  from configs import cifar_he2016, folder, quickstart, resnet50

  assert default.get_config().num_classes == folder.get_config().num_classes == 0
  assert quickstart.get_config().num_classes == 10
  assert cifar_he2016.get_config().num_classes == 10
  assert resnet50.get_config().num_classes == 1000
  fake = default.get_config()
  fake.dataset = 'fake'
  assert data.with_num_classes(fake).num_classes == 10


def test_num_classes_zero_is_the_digits_ten(digits_config):
  digits_config.num_classes = 0
  resolved = data.with_num_classes(digits_config)
  assert resolved.num_classes == 10 and train.create_model(resolved).num_classes == 10


# --- Image folders ------------------------------------------------------------------------------


def write_images(folder, count, size=(10, 12), seed=0):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(count):
    image = rng.integers(0, 256, (*size, 3), np.uint8)
    tf.io.write_file(os.path.join(folder, f'{i}.png'), tf.io.encode_png(image))


def make_folder(root, classes=('cat', 'dog', 'owl'), train=6, test=3):
  for name in classes:
    write_images(f'{root}/train/{name}', train)
    write_images(f'{root}/test/{name}', test, size=(14, 9))
  return str(root)


def test_an_image_folder_trains_with_its_class_names_and_split_folders(tmp_path):
  root = make_folder(tmp_path / 'pets')
  config = data.with_num_classes(_config('folder', root, image_size=8))
  assert config.num_classes == 3
  dataset = data.Data(config)
  assert input_pipeline.class_names(dataset.builder) == ['cat', 'dog', 'owl']
  assert dataset.num_train_examples == 18 and dataset.image_shape == (8, 8, 3)
  batch = next(dataset.train(0))
  assert batch['image'].shape == (8, 8, 8, 3) and set(batch['label']) <= {0, 1, 2}
  start_pass, steps = dataset.eval()
  labels = np.concatenate([b['label'][b['mask'] > 0] for b in start_pass()])
  assert sorted(labels) == [0] * 3 + [1] * 3 + [2] * 3
  # Training data is a function of (seed, step): the same batches again.
  np.testing.assert_array_equal(next(data.Data(config).train(0))['image'], batch['image'])


def test_a_folders_jpegs_and_pngs_are_read_encoded_for_the_random_resized_crop(tmp_path):
  """The crop decodes only its window of a JPEG (a PNG whole): both kinds in one folder."""
  root = make_folder(tmp_path / 'pets', train=8)
  for i in range(4):
    path = f'{root}/train/cat/{i}.png'
    pixels = tf.io.decode_png(tf.io.read_file(path))
    os.remove(path)
    tf.io.write_file(f'{root}/train/cat/{i}.jpg', tf.io.encode_jpeg(pixels, quality=90))
  config = _config('folder', root, image_size=8, augmentation='inception_crop')
  dataset = data.Data(data.with_num_classes(config))
  assert input_pipeline.dataset_spec(dataset.builder, config).encoded
  iterator = dataset.train(0)
  batches = [next(iterator) for _ in range(3)]
  assert all(b['image'].shape == (8, 8, 8, 3) and b['image'].dtype == np.uint8 for b in batches)
  labels = np.concatenate([b['label'] for b in batches])  # One epoch: every JPEG and PNG.
  assert sorted(labels) == [0] * 8 + [1] * 8 + [2] * 8
  start_pass, _ = dataset.eval()
  assert sum(b['mask'].sum() for b in start_pass()) == 9


def test_files_that_are_no_images_by_suffix_are_skipped_and_counted(tmp_path, caplog):
  root = make_folder(tmp_path / 'pets')
  for path in ('train/cat/notes.txt', 'test/dog/.DS_Store'):
    (tmp_path / 'pets' / path).write_text('x')
  classes = image_folder.check_layout(root, ('train', 'test'))
  assert classes == {'train': ['cat', 'dog', 'owl'], 'test': ['cat', 'dog', 'owl']}
  assert 'Skipped 2 files of' in caplog.text


def _break_with_text_png(root):
  (root / 'train' / 'dog' / '3.png').write_text('not a picture')


def _empty_class(root):
  os.makedirs(root / 'train' / 'fox')
  os.makedirs(root / 'test' / 'fox')


def _class_missing_from_test(root):
  write_images(root / 'train' / 'fox', 2)


def _no_splits(root):
  """Class folders straight in the root, the commonest slip."""
  for name in ('cat', 'dog', 'owl'):
    os.rename(root / 'train' / name, root / name)
  shutil.rmtree(root / 'train')
  shutil.rmtree(root / 'test')


BAD = [
  (_break_with_text_png, r'train/dog/3.png is not a JPEG or PNG image'),
  (_empty_class, r'train/fox holds no image'),
  (_class_missing_from_test, r"Class 'fox' is in .*/train but not in .*/test"),
  (_no_splits, r'holds no split folders'),
]


def _files(root):
  """{path under root: bytes} of every file."""
  found = {}
  for directory, _, names in os.walk(root):
    for name in names:
      with open(os.path.join(directory, name), 'rb') as f:
        found[os.path.relpath(os.path.join(directory, name), root)] = f.read()
  return found


@pytest.mark.parametrize('breakage, message', BAD, ids=[b.__name__.strip('_') for b, _ in BAD])
def test_a_bad_folder_stops_before_anything_is_written(breakage, message, tmp_path):
  root = tmp_path / 'pets'
  make_folder(root)
  breakage(root)
  before = _files(root)
  workdir = tmp_path / 'run'
  with pytest.raises(errors.DataError, match=message) as raised:
    train.train_and_evaluate(_config('folder', str(root), image_size=8), str(workdir))
  text = str(raised.value).replace(str(root), 'DIR')
  assert len(text) < 200 and '\n' not in text
  assert _files(root) == before and not workdir.exists()


def test_a_split_that_is_no_folder_names_the_folders(tmp_path):
  root = make_folder(tmp_path / 'pets')
  config = _config('folder', root, image_size=8, eval_split='validation')
  with pytest.raises(errors.DataError, match="Split 'validation' .* its folders are test, train"):
    input_pipeline.get_builder(config)


def test_folder_needs_a_data_dir():
  with pytest.raises(errors.ConfigError, match='--config.data_dir=DIR'):
    train.check_config(_config('folder', ''))


@pytest.mark.slow
def test_a_bad_folder_exits_with_code_1_and_one_line(tmp_path):
  root = tmp_path / 'pets'
  make_folder(root)
  _break_with_text_png(root)
  before = _files(root)
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'resnet_jax.main',
      '--config=configs/folder.py',
      f'--workdir={tmp_path / "run"}',
      f'--config.data_dir={root}',
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 1
  error = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(error) == 1 and 'train/dog/3.png is not a JPEG or PNG image' in error[0]
  assert 'Traceback' not in result.stderr
  assert _files(root) == before and not (tmp_path / 'run').exists()


# --- The worked example of docs/own_data.md -------------------------------------------------


def _worked_example() -> list[str]:
  from test_docs import bash_blocks

  with open(os.path.join(REPO, 'docs', 'own_data.md')) as f:
    block = bash_blocks(f.read())[0]
  return block.strip().splitlines()


def test_every_documented_own_data_tool_command_is_in_the_worked_example():
  from test_docs import COMMANDS, tool

  example = [shlex.split(line) for line in _worked_example()]
  for document, _, argv in COMMANDS:
    if tool(argv) in ('resnet_jax.digits_dataset', 'resnet_jax.predict', 'resnet_jax.export'):
      assert argv in example, f'{document}: {shlex.join(argv)} is run by no test'


@pytest.mark.slow
def test_worked_example(tmp_path, monkeypatch):
  """The commands of docs/own_data.md as written, in a scratch directory: the folder run and
  the fine-tuned one reach 95%, predict agrees with the labels, export with predict."""
  os.symlink(os.path.join(REPO, 'configs'), tmp_path / 'configs')
  env = {**os.environ, 'PYTHONPATH': REPO}
  outputs = []
  for line in _worked_example():
    argv = shlex.split(line)
    start = time.time()
    result = subprocess.run(
      [sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    print(f'{time.time() - start:6.1f} s  {line}')
    outputs.append(result.stdout)
  folder_run = json.loads((tmp_path / 'runs' / 'digits16' / 'summary.json').read_text())
  tuned = json.loads((tmp_path / 'runs' / 'digits3' / 'summary.json').read_text())
  print('folder run', folder_run['eval'], folder_run['config']['num_classes'])
  print('fine-tuned', tuned['eval'], tuned['config']['num_classes'])
  assert folder_run['config']['num_classes'] == 10 and folder_run['eval']['top1'] >= 0.95
  assert tuned['config']['num_classes'] == 3 and tuned['eval']['top1'] >= 0.95

  # predict: one line per file of digits16/test/7, as often right as the run's top-1 says.
  lines = [line.split('\t') for line in outputs[2].splitlines()]
  files = sorted(os.listdir(tmp_path / 'digits16' / 'test' / '7'))
  assert [os.path.basename(line[0]) for line in lines] == files
  agreement = np.mean([line[1] == '7' for line in lines])
  print(f'predict: {agreement:.3f} of {len(lines)} images of 7')
  assert agreement >= folder_run['eval']['top1'] - 2 / len(lines)

  # export: the SavedModel gives predict's probabilities, in batches of any size.
  serve = tf.saved_model.load(str(tmp_path / 'runs' / 'digits16_savedmodel')).signatures[
    'serving_default'
  ]
  paths = [os.path.join(tmp_path, line[0]) for line in lines]
  images = tf.stack([tf.io.decode_png(tf.io.read_file(p), channels=3) for p in paths])
  exported = serve(images=images)['probabilities'].numpy()
  from resnet_jax import predict

  monkeypatch.chdir(tmp_path)  # The run recorded its folder as given: digits16.
  run = predict.load_run(str(tmp_path / 'runs' / 'digits16'))
  results, failures = predict.predict(run, paths)
  assert not failures
  np.testing.assert_allclose(exported, np.stack([p for _, p in results]), atol=1e-5)
  assert [float(line[2]) for line in lines] == pytest.approx(
    [float(exported[i].max()) for i in range(len(lines))], abs=1e-4
  )
  bigger = serve(images=tf.image.resize(images[:2], [40, 30], method='nearest'))
  assert bigger['probabilities'].shape == (2, 10)

  # A file that is no image: one line on stderr, the others still predicted, exit code 1.
  (tmp_path / 'notes.png').write_text('not a picture')
  result = subprocess.run(
    [sys.executable, '-m', 'resnet_jax.predict', '--workdir=runs/digits16', 'notes.png', paths[0]],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 1
  assert [line for line in result.stderr.splitlines() if line.startswith('error:')] == [
    'error: notes.png: not an image (JPEG, PNG, GIF or BMP), skipped.'
  ]
  assert result.stdout.splitlines() == ['\t'.join([paths[0], *lines[0][1:3]])]
