"""Input pipelines: shapes, dtypes and value ranges; augmentation in training only."""

import collections
import dataclasses
import hashlib
import math
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import cifar10_resnet20, quickstart, resnet50
from conftest import REPO
from resnet_jax import datasets, input_pipeline


def _first(iterator):
  return next(iter(iterator))


def test_digits_batches_have_documented_shapes_and_ranges(digits_config):
  builder = input_pipeline.get_builder(digits_config)
  assert builder.info.splits['train'].num_examples == 1437
  assert builder.info.splits['test'].num_examples == 360
  batch = _first(input_pipeline.train_batches(builder, digits_config, 32))
  # uint8 pixels, a quarter of float32's bytes: the devices normalise them.
  assert batch['image'].shape == (32, 8, 8, 1) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (32,) and batch['label'].dtype == np.int32
  assert batch['image'].max() > 200  # the 0..255 scale, not 0..16 nor normalised
  assert set(batch['label']) <= set(range(10))


def test_augmentation_in_training_only(digits_config):
  builder = input_pipeline.get_builder(digits_config)
  start_pass, _ = input_pipeline.eval_batches(
    builder, digits_config, 360, datasets.eval_images(digits_config)
  )
  first, second = _first(start_pass()), _first(start_pass())
  np.testing.assert_array_equal(first['image'], second['image'])  # eval is deterministic

  def raw_pixels(split):
    return tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))['image']

  # Evaluation at the images' own size: the test images themselves, in order.
  np.testing.assert_array_equal(first['image'], raw_pixels('test'))
  # Training: the same pipeline without augmentation would reproduce raw images exactly.
  train = _first(input_pipeline.train_batches(builder, digits_config, 1437))
  raw_images = raw_pixels('train')
  raw_set = {img.tobytes() for img in raw_images}
  shifted = sum(img.tobytes() not in raw_set for img in train['image'])
  assert shifted > 0.5 * len(train['image'])  # random crops move most images


def test_training_order_is_a_function_of_the_step(digits_config):
  builder = input_pipeline.get_builder(digits_config)
  straight = input_pipeline.train_batches(builder, digits_config, 64)
  batches = [next(straight) for _ in range(25)]  # 22 steps per epoch: crosses an epoch
  resumed = input_pipeline.train_batches(builder, digits_config, 64, start_step=21)
  for expected in batches[21:]:
    got = next(resumed)
    np.testing.assert_array_equal(got['image'], expected['image'])
    np.testing.assert_array_equal(got['label'], expected['label'])
  assert not np.array_equal(batches[0]['label'], batches[22]['label'])  # reshuffled per epoch


@pytest.mark.parametrize('config_module', [cifar10_resnet20, resnet50], ids=['cifar10', 'imagenet'])
def test_tfds_mock_data(config_module, tmp_path, monkeypatch):
  # Mocked builders know nothing of the disk: call them prepared (ImageNet's needs manual steps).
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'is_prepared', lambda self: True)
  config = config_module.get_config()
  config.data_dir = str(tmp_path)
  config.image_size = 32 if config.dataset == 'cifar10' else 64
  channels = 3
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    builder = _mock_builder(config, {config.train_split: 40, config.eval_split: 40})
    train = _first(input_pipeline.train_batches(builder, config, 8))
    start_pass, num_steps = input_pipeline.eval_batches(
      builder, config, 16, datasets.eval_images(config)
    )
    evals = list(start_pass())
  size = config.image_size
  assert train['image'].shape == (8, size, size, channels) and train['image'].dtype == np.uint8
  assert len(evals) == num_steps == 3
  assert evals[0]['image'].shape == (16, size, size, channels)
  assert sum(b['mask'].sum() for b in evals) == 40


def _mock_builder(config, split_sizes):
  """A mocked TFDS builder whose splits have `split_sizes` (mocked builders know none)."""
  builder = input_pipeline.get_builder(config)
  builder.info.set_splits(
    tfds.core.SplitDict(
      [tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0) for s, n in split_sizes.items()]
    )
  )
  return builder


def test_imagenet_ten_crop_centre_view_is_the_centre_crop(tmp_path, monkeypatch):
  """The eval step's centre view of a 10-crop source is the pipeline's 'center' image: the same
  float pixels, computed from two windows of the JPEG, rounded to uint8 (one grey level apart
  where a sum lands on the other side of .5)."""
  from resnet_jax import evaluation

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'is_prepared', lambda self: True)
  config = resnet50.get_config()
  config.data_dir = str(tmp_path)
  config.image_size = 28  # Resized to 32 (28 / 0.875): 10-crop sources are 32 x 32.
  images = {}
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    builder = _mock_builder(config, {'train': 8, 'validation': 8})
    for protocol in ('center', '10crop'):
      config.eval_protocol = protocol
      start_pass, _ = input_pipeline.eval_batches(builder, config, 8, datasets.eval_images(config))
      images[protocol] = _first(start_pass())['image']
  assert images['center'].shape == (8, 28, 28, 3) and images['10crop'].shape == (8, 32, 32, 3)
  centre_view = np.asarray(evaluation.ten_crops(images['10crop'], 28)[4]).astype(int)
  difference = np.abs(centre_view - images['center'])
  assert difference.max() <= 1 and difference.mean() < 1e-2


def test_cifar_45k_5k_validation_protocol(tmp_path, monkeypatch):
  """He 2015's hyper-parameter split: the first 45k training images, validated on the last 5k."""
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'is_prepared', lambda self: True)
  config = cifar10_resnet20.get_config()
  config.data_dir = str(tmp_path)
  config.train_split, config.eval_split = 'train[:45000]', 'train[45000:]'
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    builder = _mock_builder(config, {'train': 50_000, 'test': 10_000})
    assert input_pipeline.num_train_examples(builder, config) == 45_000
    _, eval_steps = input_pipeline.eval_batches(builder, config, 500, datasets.eval_images(config))
    # Two processes read halves of each part, as the pipeline splits them.
    sizes = {
      split: [
        builder.info.splits[
          tfds.split_for_jax_process(split, process_index=i, process_count=2, drop_remainder=drop)
        ].num_examples
        for i in range(2)
      ]
      for split, drop in (('train[:45000]', True), ('train[45000:]', False))
    }
  assert eval_steps == 10  # 5,000 images in batches of 500
  assert sizes == {'train[:45000]': [22_500, 22_500], 'train[45000:]': [2_500, 2_500]}


def _as_process(monkeypatch, index, count):
  """Makes this process read the data as process `index` of `count` would."""
  monkeypatch.setattr(jax, 'process_index', lambda: index)
  monkeypatch.setattr(jax, 'process_count', lambda: count)


def _without_augmentation(monkeypatch):
  """Digits with a crop of the unpadded image: every training image is a raw one, findable."""
  spec = dataclasses.replace(input_pipeline.DATASETS['digits'], pad=0)
  monkeypatch.setitem(input_pipeline.DATASETS, 'digits', spec)


def _raw_images(builder, split):
  raw = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  return collections.Counter(img.tobytes() for img in raw['image'])


def test_processes_train_on_their_rows_of_the_same_global_batches(digits_config, monkeypatch):
  """Cached data: process p's batch is rows p*b..(p+1)*b of the one-process global batch."""
  builder = input_pipeline.get_builder(digits_config)
  one_process = input_pipeline.train_batches(builder, digits_config, 64, start_step=20)
  expected = [next(one_process) for _ in range(4)]  # 22 steps per epoch: crosses an epoch
  num_processes, host_batch = 4, 16
  for process in range(num_processes):
    _as_process(monkeypatch, process, num_processes)
    batches = input_pipeline.train_batches(builder, digits_config, host_batch, start_step=20)
    rows = slice(process * host_batch, (process + 1) * host_batch)
    for want in expected:
      got = next(batches)
      np.testing.assert_array_equal(got['image'], want['image'][rows])
      np.testing.assert_array_equal(got['label'], want['label'][rows])


@pytest.mark.parametrize('cache', [True, False], ids=['cached', 'streamed'])
def test_an_epoch_of_all_processes_uses_each_example_at_most_once(
  digits_config, monkeypatch, cache
):
  """The processes' slices are disjoint and together make up the epoch (less a remainder)."""
  _without_augmentation(monkeypatch)
  digits_config.cache = cache
  digits_config.shuffle_buffer_size = 1000  # Below the 1437 examples: streamed when not cached.
  builder = input_pipeline.get_builder(digits_config)
  raw = _raw_images(builder, 'train')
  num_processes, host_batch = 3, 16
  seen = collections.Counter()
  for process in range(num_processes):
    _as_process(monkeypatch, process, num_processes)
    batches = input_pipeline.train_batches(builder, digits_config, host_batch)
    # 1437 examples: 29 global batches of 48 when cached; 479 per process, 29 of 16, streamed.
    for _ in range(29):
      seen.update(image.tobytes() for image in next(batches)['image'])
  assert seen.total() == 29 * 48
  assert seen <= raw  # No example twice: every image is a raw one, at most as often.


def test_evaluation_reads_every_example_once_over_all_processes(digits_config, monkeypatch):
  builder = input_pipeline.get_builder(digits_config)
  raw = _raw_images(builder, 'test')
  eval_images = datasets.eval_images(digits_config)
  seen, steps = collections.Counter(), set()
  for process in range(4):
    _as_process(monkeypatch, process, 4)
    start_pass, num_steps = input_pipeline.eval_batches(builder, digits_config, 40, eval_images)
    batches = list(start_pass())
    steps.add((len(batches), num_steps))
    for batch in batches:
      seen.update(img.tobytes() for img, m in zip(batch['image'], batch['mask'], strict=True) if m)
  assert steps == {(3, 3)}  # 90 examples per process, 3 batches of 40, the last one padded
  assert seen == raw


def test_misspelt_augmentation_is_an_error():
  with pytest.raises(ValueError, match="augmentation='pad_crp' is not one of 'pad_crop', "):
    input_pipeline.DatasetSpec((0.0,), (1.0,), 'pad_crp')


@pytest.mark.slow
def test_commands_read_tfds_without_importing_keras(data_dir):
  """TensorFlow's import loads all of Keras unless told otherwise (`main.skip_keras_import`);
  the commands' processes read the digits without it, to the same first batch. Fails when a
  TensorFlow release imports Keras another way, or stops ignoring the absent package."""
  code = textwrap.dedent(f"""
    import hashlib, sys
    from resnet_jax import main
    main.skip_keras_import()
    from configs import quickstart
    from resnet_jax import input_pipeline
    config = quickstart.get_config()
    config.data_dir = {data_dir!r}
    builder = input_pipeline.get_builder(config)
    batch = next(iter(input_pipeline.train_batches(builder, config, 32)))
    keras = [m for m in sys.modules if m.split('.')[0] in ('keras', 'tf_keras')]
    assert not keras, f'TensorFlow imported Keras: {{keras[:5]}}'
    print(hashlib.sha256(batch['image'].tobytes() + batch['label'].tobytes()).hexdigest())
  """)
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  config = quickstart.get_config()
  config.data_dir = data_dir
  builder = input_pipeline.get_builder(config)
  batch = _first(input_pipeline.train_batches(builder, config, 32))
  digest = hashlib.sha256(batch['image'].tobytes() + batch['label'].tobytes()).hexdigest()
  assert result.stdout.split() == [digest]


def _numpy_torchvision_windows(height, width, count, rng):
  """torchvision's RandomResizedCrop.get_params (scale 0.08-1, ratio 3/4-4/3) transcribed to
  NumPy, one window [top, left, h, w] per row: the reference the pipeline's sampler must match.
  The random numbers are drawn up front (float32 as torch's), the attempts loop as torch's do."""
  log_ratio = np.log(np.array([3 / 4, 4 / 3], np.float32))
  shares = rng.uniform(0.08, 1.0, (count, 10)).astype(np.float32).tolist()
  ratios = np.exp(rng.uniform(*log_ratio, (count, 10)).astype(np.float32)).tolist()
  offsets = rng.random((count, 2)).tolist()
  windows = []
  for share, ratio, (u, v) in zip(shares, ratios, offsets, strict=True):
    for attempt in range(10):
      area = height * width * share[attempt]
      w = round(math.sqrt(area * ratio[attempt]))
      h = round(math.sqrt(area / ratio[attempt]))
      if 0 < w <= width and 0 < h <= height:  # Offsets uniform in [0, H - h] and [0, W - w].
        windows.append((int(u * (height - h + 1)), int(v * (width - w + 1)), h, w))
        break
    else:  # The central crop, its aspect ratio clamped to [3/4, 4/3].
      h, w = height, width
      if width / height < 3 / 4:
        h = round(w / (3 / 4))
      elif width / height > 4 / 3:
        w = round(h * (4 / 3))
      windows.append(((height - h) // 2, (width - w) // 2, h, w))
  return np.array(windows)


def _pipeline_windows(height, width, count, sampler, seed=0):
  """`crop_window` for the per-example seeds [seed, i] of i < count, as the pipeline keys them."""
  import tensorflow as tf

  shape = tf.constant([height, width, 3], tf.int32)
  ds = tf.data.Dataset.range(count).map(
    lambda i: input_pipeline.crop_window(shape, tf.stack([tf.constant(seed, tf.int64), i]), sampler)
  )
  return next(ds.batch(count).as_numpy_iterator())


def _ks(a, b):
  """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
  points = np.concatenate([a, b])
  cdf_a = np.searchsorted(np.sort(a), points, side='right') / len(a)
  cdf_b = np.searchsorted(np.sort(b), points, side='right') / len(b)
  return np.abs(cdf_a - cdf_b).max()


def _area_and_aspect(windows, height, width):
  h, w = windows[:, 2].astype(float), windows[:, 3].astype(float)
  return h * w / (height * width), w / h


@pytest.mark.parametrize('height, width', [(375, 500), (500, 375)], ids=['landscape', 'portrait'])
def test_torchvision_crop_sampler_matches_torchvision_algorithm(height, width):
  """Area share and aspect ratio of the crops: KS < 0.02 against a NumPy transcription.

  10,000 pipeline draws against 100,000 reference ones: two samples of 5,000 from one
  distribution would exceed 0.02 about a quarter of the time, these about once in 1,000.
  """
  got = _pipeline_windows(height, width, 10_000, 'torchvision')
  reference = _numpy_torchvision_windows(height, width, 100_000, np.random.default_rng(0))
  for g, r, name in zip(
    _area_and_aspect(got, height, width),
    _area_and_aspect(reference, height, width),
    ('area', 'aspect'),
    strict=True,
  ):
    assert _ks(g, r) < 0.02, name
  # The test tells the samplers apart: TF's crops are smaller (KS 0.11 over 5,000).
  inception = _pipeline_windows(height, width, 5_000, 'inception')
  area = _area_and_aspect(inception, height, width)[0]
  assert _ks(area, _area_and_aspect(reference, height, width)[0]) > 0.05
  top, left, h, w = got.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= height).all() and (left + w <= width).all()
  # Offsets uniform over [0, H - h]: their mean share of the free range is 1/2.
  assert np.mean(top[h < height] / (height - h[h < height])) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
  'height, width, window',
  # No draw of 8-100% of the area fits 10 pixels: the central crop of aspect 4/3 (or 3/4).
  [(10, 1000, (0, 493, 10, 13)), (1000, 10, (493, 0, 13, 10))],
  ids=['wide', 'tall'],
)
def test_torchvision_crop_sampler_falls_back_to_the_clamped_central_crop(height, width, window):
  windows = _pipeline_windows(height, width, 50, 'torchvision')
  np.testing.assert_array_equal(windows, np.tile(window, (50, 1)))
  np.testing.assert_array_equal(
    _numpy_torchvision_windows(height, width, 1, np.random.default_rng(0))[0], window
  )


def test_torchvision_crop_is_a_function_of_the_seed():
  first, again = (_pipeline_windows(375, 500, 100, 'torchvision', seed=3) for _ in range(2))
  other = _pipeline_windows(375, 500, 100, 'torchvision', seed=4)
  np.testing.assert_array_equal(first, again)
  assert len({tuple(w) for w in first}) == 100  # Each example its own crop...
  assert (first != other).any(axis=1).all()  # ...and each epoch seed its own crops.


def test_unknown_crop_sampler_is_a_config_error():
  with pytest.raises(ValueError, match=r"crop_sampler='torch' is not one of 'inception', 'torch"):
    input_pipeline.crop_window([375, 500, 3], [0, 0], 'torch')


def test_torchvision_recipes_use_torchvision_crops():
  """The official iResNet script's recipe crops as torchvision; TF-based recipes and He 2015's
  (whose scale augmentation is neither) keep TF's sampler."""
  from configs import imagenet_he2015, iresnet50, resnet50_b4096, resnet50_lars_b32k

  samplers = {
    m.__name__.split('.')[-1]: m.get_config().crop_sampler
    for m in (resnet50, iresnet50, resnet50_b4096, resnet50_lars_b32k, imagenet_he2015)
  }
  assert samplers == {
    'resnet50': 'torchvision',
    'iresnet50': 'torchvision',
    'resnet50_b4096': 'inception',
    'resnet50_lars_b32k': 'inception',
    'imagenet_he2015': 'inception',
  }


def _photo(height, width, seed=0):
  """A JPEG like a photograph's (smooth, with pixel noise), quality 90, and its decoded pixels."""
  import tensorflow as tf

  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (height // 31 + 1, width // 31 + 1, 3), dtype=np.uint8)
  photo = tf.image.resize(small[None], (height, width), method='bicubic')[0]
  photo = tf.cast(tf.clip_by_value(photo + rng.normal(0, 8, photo.shape), 0, 255), tf.uint8)
  jpeg = tf.io.encode_jpeg(photo, quality=90)
  return jpeg, tf.io.decode_jpeg(jpeg, channels=3)


@pytest.mark.parametrize('shape', [(375, 500), (500, 333), (480, 640), (200, 180), (60, 40)])
@pytest.mark.parametrize('eval_image', [datasets.EvalImage(256, 224), datasets.EvalImage(64, 64)])
def test_eval_decodes_only_its_window_and_equals_decode_resize_crop(shape, eval_image):
  """The centre crop computed from the JPEG window it reads equals the whole image decoded,
  resized and cropped to float tolerance (1e-2 of a grey level; measured: below 1e-3). A PNG
  (in an image folder) is decoded whole, then the same window is cut."""
  import tensorflow as tf

  jpeg, pixels = _photo(*shape)
  png = tf.io.encode_png(pixels)
  resized = input_pipeline._resize_shorter_side(pixels, eval_image.resize)
  top, left = (np.array(resized.shape[:2]) - eval_image.crop) // 2
  crop = eval_image.crop
  expected = resized[top : top + crop, left : left + crop]
  for got in (
    input_pipeline._resize_center_crop(jpeg, eval_image, encoded=True),
    input_pipeline._resize_center_crop(png, eval_image, encoded=True),
    input_pipeline._resize_center_crop(pixels, eval_image),
  ):
    assert got.shape == (crop, crop, 3) and got.dtype == tf.float32
    np.testing.assert_allclose(got, expected, atol=1e-2)


def test_a_small_streamed_dataset_builds_one_pipeline_for_many_epochs(digits_config, monkeypatch):
  """1437 digits, not cached, within the shuffle buffer: three epochs read the split once (a
  pipeline per epoch read it every epoch), and a run resumed mid-epoch sees the same batches."""
  digits_config.cache = False
  builder = input_pipeline.get_builder(digits_config)
  reads = []
  read = input_pipeline._read
  monkeypatch.setattr(
    input_pipeline, '_read', lambda *args, **kw: reads.append(1) or read(*args, **kw)
  )
  straight = input_pipeline.train_batches(builder, digits_config, 64)
  batches = [next(straight) for _ in range(3 * 22)]  # 22 steps per epoch
  assert len(reads) == 1
  resumed = input_pipeline.train_batches(builder, digits_config, 64, start_step=30)
  for expected in batches[30:40]:
    got = next(resumed)
    np.testing.assert_array_equal(got['image'], expected['image'])
    np.testing.assert_array_equal(got['label'], expected['label'])


@pytest.mark.slow
def test_the_input_pipeline_benchmark_prints_every_rate_and_the_split():
  """`python -m benchmarks.input_pipeline` on a generated folder (no torchvision here)."""
  command = [sys.executable, '-m', 'benchmarks.input_pipeline', '--images=130', '--seconds=0.2']
  command += ['--rounds=1', '--threads=1']
  output = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
  assert output.startswith('1 core(s), batches of 128 at 224 px')
  rows = {line.split(' | ')[0][2:]: line for line in output.splitlines() if line.startswith('| ')}
  for name in (
    'train',
    'train_batches, 130-image folder',
    'eval',
    'eval_batches, one pass of 65 images',
    'batching only, uint8',
    'batching only, float32',
  ):
    assert name in rows
  assert 'decode' in rows['where the time goes, CPU ms per image']
