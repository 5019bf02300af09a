"""The quickstart's recipe on a folder of your own images: DATA_DIR/<split>/<class>/<image>.

    python -m resnet_jax.main --config=configs/folder.py --config.data_dir=DIR --workdir=W

The number of classes comes from the class folders; images are resized to `image_size` (small
images: padded and randomly cropped, larger ones: random-resized crops). See docs/own_data.md.
"""

from configs import quickstart


def get_config():
  config = quickstart.get_config()
  config.dataset = 'folder'
  config.num_classes = 0
  config.image_size = 32
  config.eval_batch_size = 64
  return config
