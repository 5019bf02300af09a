"""The UCI handwritten digits as a TFDS dataset: the embedded default that needs no download.

scikit-learn ships the 1,797 8x8 grey-level images of the UCI "Optical Recognition of
Handwritten Digits" test set (`sklearn.datasets.load_digits`). Registering them as a TFDS
builder lets the quickstart run through exactly the same TFDS / tf.data path as CIFAR and
ImageNet. Importing this module registers the builder under the name 'digits'.
"""

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
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Grey levels are 0..16; map them onto the usual 0..255 range of uint8 images.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(labels))
    test, train = order[:_NUM_TEST], order[_NUM_TEST:]
    return {
      'train': self._generate_examples(images, labels, train),
      'test': self._generate_examples(images, labels, test),
    }

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
    for i in indices:
      yield int(i), {'image': images[i], 'label': labels[i]}
