"""Evaluation over a device mesh: the protocols of He et al. 2015 and their metrics.

'center' classifies one centre crop. '10crop' averages the softmax over the four corner crops
and the centre crop of the resized image, and their mirror images (He 2015, Table 3, after
Krizhevsky et al. 2012). 'multiscale' averages the softmax over the image at several sizes (He
2015, Table 4): the central square at each, or with `eval_max_aspect` > 1 the whole image, the
network applied fully convolutionally to a padded canvas whose padding changes nothing
(`whole_image_logits`). The input pipeline delivers the resized images (`datasets.eval_images`);
the crops are taken here, on the device.
"""

import functools
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from clu import metrics as clu_metrics
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from resnet_jax import data as data_lib
from resnet_jax import datasets, normalize
from resnet_jax.models import blocks, network

# A pass that runs longer than this logs its progress this often, seconds.
PROGRESS_EVERY_S = 10.0


@flax.struct.dataclass
class EvalMetrics(clu_metrics.Collection):
  """Means over the examples of an evaluation pass; padding (mask 0) never counts."""

  loss: clu_metrics.Average.from_output('loss')
  top1: clu_metrics.Average.from_output('top1')
  top5: clu_metrics.Average.from_output('top5')


def ten_crops(images: jax.Array, size: int) -> jax.Array:
  """[10, batch, size, size, C]: four corners and the centre, then the same mirrored."""
  height, width = images.shape[1:3]
  bottom, right = height - size, width - size
  corners = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
  crops = [images[:, y : y + size, x : x + size] for y, x in corners]
  return jnp.stack(crops + [crop[:, :, ::-1] for crop in crops])


def _valid_mask(sizes: jax.Array, canvas: tuple[int, int], shape: tuple[int, ...]) -> jax.Array:
  """[batch, H, W, 1]: the positions of a feature map of `shape` that the images of `sizes`
  (valid height, width at the input `canvas`) cover.

  Every downsampling of the networks (strided convolutions padded (k - 1) // 2, the 3x3/2
  max-pools, strided subsampling) maps n positions to ceil(n / 2), aligned at the top left.
  """
  mask = []
  for axis, (full, size) in enumerate(zip(canvas, shape[1:3], strict=True)):
    halvings = round(math.log2(full / size))
    valid = -(-sizes[:, axis] // 2**halvings)  # ceil
    mask.append(jnp.arange(size)[None, :] < valid[:, None])
  return (mask[0][:, :, None] & mask[1][:, None, :])[..., None]


def whole_image_logits(
  apply_fn: Callable[[jax.Array], jax.Array], images: jax.Array, sizes: jax.Array
) -> jax.Array:
  """Logits of images of several shapes, each at the top left of a zero-padded canvas.

  `sizes` [batch, 2] are the images' own heights and widths. The padding is kept out of the
  result as if each image ran alone: every convolution reads zeros there (as its own zero
  padding), every layer's output is zeroed there (so max-pools over non-negative activations
  never pick it), and the classifier's input, the mean over the whole canvas, is rescaled to
  the mean over the image's own positions.
  """
  canvas = images.shape[1:3]
  last_mask = []  # The mask of the latest feature map: at the head, the one it pools.

  def masked(x):
    if not isinstance(x, jax.Array) or x.ndim != 4:
      return x
    last_mask[:] = [_valid_mask(sizes, canvas, x.shape)]
    return x * last_mask[0].astype(x.dtype)

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    x, *rest = args
    if isinstance(context.module, blocks.Conv):
      x = masked(x)
    elif context.module.name == network.HEAD:  # x: features averaged over the whole canvas.
      mask = last_mask[0]
      x = x * (mask.shape[1] * mask.shape[2] / jnp.maximum(mask.sum(axis=(1, 2)), 1))
    return masked(next_fun(x, *rest, **kwargs))

  with nn.intercept_methods(interceptor):
    return apply_fn(images)


def log_probabilities(
  apply_fn: Callable[[jax.Array], jax.Array],
  image: jax.Array | tuple[jax.Array, ...],
  protocol: str,
  crop_size: int,
  sizes: jax.Array | tuple[jax.Array, ...] | None = None,
) -> jax.Array:
  """Log of the softmax averaged over the protocol's views of each image, [batch, classes].

  'multiscale' with `sizes` (as `image`: one [batch, 2] array per size): whole images on
  padded canvases, see `whole_image_logits`.
  """
  if protocol == '10crop':
    # One view at a time: the memory of a centre-crop pass, one compiled network.
    views = jax.lax.map(
      lambda view: jax.nn.log_softmax(apply_fn(view)), ten_crops(image, crop_size)
    )
  else:  # 'center': one image; 'multiscale': one image per size, each its own program.
    images = image if isinstance(image, tuple) else (image,)
    if sizes is None:
      logits = [apply_fn(x) for x in images]
    else:
      sizes = sizes if isinstance(sizes, tuple) else (sizes,)
      logits = [whole_image_logits(apply_fn, x, s) for x, s in zip(images, sizes, strict=True)]
    views = jnp.stack([jax.nn.log_softmax(x) for x in logits])
  return jax.nn.logsumexp(views, axis=0) - jnp.log(views.shape[0])


def eval_step(
  state: Any,
  metrics: EvalMetrics,
  batch: dict[str, Any],
  protocol: str,
  crop_size: int,
  normalization: normalize.Normalization | None = None,
  classes: tuple[int, ...] | None = None,
) -> EvalMetrics:
  """Adds one batch to `metrics`; merging inside the step keeps the host out of the pass.

  `classes`: the only classes the test set has (ImageNet-A and -R: 200 of ImageNet's 1,000);
  the others are never predicted. Labels are class indices, or multi-hot rows where an image
  has several right answers (ImageNet ReaL): a prediction is right if it is any of them, and
  images without a label are left out.
  """

  def apply_fn(images):
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    logits = state.apply_fn(variables, images, train=False).astype(jnp.float32)
    if classes is None:
      return logits
    kept = jnp.zeros(logits.shape[-1], bool).at[jnp.asarray(classes)].set(True)
    return jnp.where(kept, logits, -jnp.inf)

  images = normalize.images(batch['image'], normalization)
  log_probs = log_probabilities(apply_fn, images, protocol, crop_size, batch.get('size'))
  labels, mask = batch['label'], batch['mask'] > 0
  if labels.ndim == 1:
    labels = jax.nn.one_hot(labels, log_probs.shape[-1], dtype=jnp.int32)
  top5 = jax.lax.top_k(log_probs, min(5, log_probs.shape[-1]))[1]
  right = jnp.take_along_axis(labels, top5, axis=-1) > 0
  num_labels = labels.sum(-1)
  # Mean negative log-probability of the right answers: the cross-entropy for one label.
  loss = -jnp.where(labels > 0, log_probs, 0.0).sum(-1) / jnp.maximum(num_labels, 1)
  return metrics.merge(
    EvalMetrics.single_from_model_output(
      loss=loss, top1=right[:, 0], top5=right.any(-1), mask=mask & (num_labels > 0)
    )
  )


def jit_eval_step(
  config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh,
  normalization: normalize.Normalization | None = None,
  classes: tuple[int, ...] | None = None,
) -> Callable:
  """The compiled eval step of `config.eval_protocol`: state replicated, batch sharded.
  `normalization`: that of the uint8 batches of `data.Data`; None for batches of network input.
  `classes`: see `eval_step`."""
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  step = functools.partial(
    eval_step,
    protocol=config.eval_protocol,
    crop_size=datasets.eval_image_size(config),
    normalization=normalization,
    classes=classes,
  )
  return jax.jit(step, in_shardings=(replicated, replicated, data), out_shardings=replicated)


def evaluate(
  state: Any,
  eval_step_fn: Callable,
  eval_data: data_lib.EvalData,
  sharding: NamedSharding,
) -> dict[str, float]:
  """Loss, top-1 and top-5 over one pass of the eval split, and the number of examples.

  A pass longer than `PROGRESS_EVERY_S` logs batches done and images/s (padding included)
  that often, and from its first batch on when that batch, times the number of batches, says
  the pass will be long (the first batch of a run also compiles).
  """
  metrics = EvalMetrics.empty()
  start = last_log = time.time()
  for done, batch in enumerate(itertools.islice(eval_data.start_pass(), eval_data.num_steps), 1):
    metrics = eval_step_fn(state, metrics, data_lib.to_global(batch, sharding))
    images_per_batch = len(batch['mask']) * jax.process_count()
    if done == 1:
      jax.block_until_ready(metrics)
      long_pass = (time.time() - start) * eval_data.num_steps > PROGRESS_EVERY_S
    due = time.time() - last_log > PROGRESS_EVERY_S or (done == 1 and long_pass)
    if due and done < eval_data.num_steps:
      jax.block_until_ready(metrics)  # The rate of finished batches, not of dispatched ones.
      last_log = time.time()
      logging.info(
        'Evaluation: %d/%d batches, %.1f images/s',
        done,
        eval_data.num_steps,
        done * images_per_batch / (last_log - start),
      )
  metrics = jax.device_get(metrics)
  return {k: float(v) for k, v in metrics.compute().items()} | {'count': int(metrics.top1.count)}
