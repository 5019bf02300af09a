"""A folder of images, DIR/<split>/<class>/<image>, as a TFDS dataset (`tfds.ImageFolder`).

The layout is checked before anything is read, so that a bad folder stops the run at once with
the path to fix, not in the middle of an epoch: every class folder of the configured splits
must hold images, both splits must have the same classes, and every image file must start as a
JPEG or PNG does. Files of other suffixes (notes, thumbnails databases) are skipped and counted.
"""

import collections
import os
from collections.abc import Sequence

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from resnet_jax import errors

# The suffixes `tfds.ImageFolder` reads, and the first bytes of such files.
SUFFIXES = ('.jpg', '.jpeg', '.png')
_SIGNATURES = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n')


def _folders(path: str) -> list[str]:
  return sorted(
    f.rstrip('/') for f in tf.io.gfile.listdir(path) if tf.io.gfile.isdir(f'{path}/{f}')
  )


def _is_image(path: str) -> bool:
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read(8).startswith(_SIGNATURES)


def check_layout(root: str, splits: Sequence[str]) -> dict[str, list[str]]:
  """The classes of each of `splits`; raises DataError naming the first path that cannot work."""
  if not tf.io.gfile.isdir(root):
    raise errors.DataError(f'config.data_dir={root!r} is no folder of images.')
  found = _folders(root)
  if not any(_folders(f'{root}/{split}') for split in found):
    raise errors.DataError(
      f'{root} holds no split folders: lay the images out as <split>/<class>/<image> in it '
      '(train/ and test/, unless config.train_split and config.eval_split say otherwise).'
    )
  classes, skipped = {}, collections.Counter()
  for split in dict.fromkeys(splits):
    if split not in found:
      raise errors.DataError(
        f'Split {split!r} (config.train_split / config.eval_split) is no folder of {root}; its '
        f'folders are {", ".join(found)}. Image folders are split by folder only.'
      )
    classes[split] = _folders(f'{root}/{split}')
    if not classes[split]:
      raise errors.DataError(f'{root}/{split} holds no class folders (<class>/<image>).')
    for name in classes[split]:
      folder = f'{root}/{split}/{name}'
      files = tf.io.gfile.listdir(folder)
      images = [f for f in files if f.lower().endswith(SUFFIXES)]
      skipped[folder] = len(files) - len(images)
      if not images:
        raise errors.DataError(
          f'{folder} holds no image ({", ".join(SUFFIXES)}): add images or remove the folder.'
        )
      bad = [f for f in sorted(images) if not _is_image(f'{folder}/{f}')]
      if bad:
        raise errors.DataError(
          f'{folder}/{bad[0]} is not a JPEG or PNG image'
          + (f' (nor are {len(bad) - 1} more files there)' if len(bad) > 1 else '')
          + ': replace or remove it.'
        )
  first, *others = classes
  for split in others:
    for a, b in ((first, split), (split, first)):
      missing = sorted(set(classes[a]) - set(classes[b]))
      if missing:
        raise errors.DataError(
          f'Class {missing[0]!r} is in {root}/{a} but not in {root}/{b}'
          + (f' (and {len(missing) - 1} more classes)' if len(missing) > 1 else '')
          + ': both splits need the same class folders.'
        )
  if sum(skipped.values()):
    folder = next(f for f, n in skipped.items() if n)
    logging.warning(
      'Skipped %d files of %s that are not %s images (e.g. in %s).',
      sum(skipped.values()),
      root,
      '/'.join(SUFFIXES),
      folder,
    )
  return classes


def builder(root: str, splits: Sequence[str]) -> tfds.ImageFolder:
  """The checked `tfds.ImageFolder` of `root`; its class names are the folder names, sorted."""
  root = os.path.expanduser(root)
  check_layout(root, splits)
  return tfds.ImageFolder(root)
