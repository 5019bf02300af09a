"""The UCI handwritten digits as a TFDS dataset: the embedded default that needs no download.

scikit-learn ships the 1,797 8x8 grey-level images of the UCI "Optical Recognition of
Handwritten Digits" test set (`sklearn.datasets.load_digits`). Registering them as a TFDS
builder lets the quickstart run through exactly the same TFDS / tf.data path as CIFAR and
ImageNet. Importing this module registers the builder under the name 'digits'.
"""

import os
import sys

import numpy as np
import tensorflow_datasets as tfds

# A fixed, seeded split: 1,437 training and 360 test images (80/20).
_NUM_TEST = 360
_SPLIT_SEED = 0


class Digits(tfds.core.GeneratorBasedBuilder):
  """UCI handwritten digits (8x8, 10 classes) from scikit-learn, rescaled to 0..255."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Seeded 1437/360 train/test split of sklearn.datasets.load_digits.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description=__doc__,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(shape=(8, 8, 1)),
          'label': tfds.features.ClassLabel(num_classes=10),
        }
      ),
      supervised_keys=('image', 'label'),
      homepage='https://archive.ics.uci.edu/dataset/80',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download: the data ships with scikit-learn.
    images, labels, splits = _load()
    return {name: self._generate_examples(images, labels, i) for name, i in splits.items()}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
    for i in indices:
      yield int(i), {'image': images[i], 'label': labels[i]}


def _load() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """(uint8 images [N, 8, 8, 1], labels, {'train': indices, 'test': indices})."""
  from sklearn.datasets import load_digits

  digits = load_digits()
  # Grey levels are 0..16; map them onto the usual 0..255 range of uint8 images.
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int64)
  order = np.random.default_rng(_SPLIT_SEED).permutation(len(labels))
  return images, labels, {'train': order[_NUM_TEST:], 'test': order[:_NUM_TEST]}


def write_folder(output: str, size: int = 16, classes: int = 10) -> None:
  """The digits of `classes` classes as `size` x `size` PNGs in output/{train,test}/<digit>/,
  the same split as the dataset: a folder of images, as a user brings one, that needs no
  download."""
  import tensorflow as tf

  images, labels, splits = _load()
  resized = tf.cast(tf.round(tf.image.resize(images, [size, size], antialias=True)), tf.uint8)
  for split, indices in splits.items():
    for i in indices:
      if labels[i] < classes:
        folder = os.path.join(output, split, str(labels[i]))
        os.makedirs(folder, exist_ok=True)
        tf.io.write_file(os.path.join(folder, f'{i:04d}.png'), tf.io.encode_png(resized[i]))


if __name__ == '__main__':
  # python -m resnet_jax.digits_dataset OUTPUT [SIZE [CLASSES]]
  if not 2 <= len(sys.argv) <= 4:
    sys.exit('usage: python -m resnet_jax.digits_dataset OUTPUT [SIZE [CLASSES]]')
  write_folder(sys.argv[1], *map(int, sys.argv[2:]))
