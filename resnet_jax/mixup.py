"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) of whole batches, inside the train step.

One mixing ratio per batch, as timm's `Mixup(mode='batch')`: each image is mixed with the image
at the mirrored position of the global batch, and the targets in the same proportion. With both
alphas set, each batch is CutMix with probability `mixup_switch_prob`, else mixup. CutMix's
ratio is the share of the image outside its box, after the box is clipped to the image. The
draws are keyed by (seed, step), so a resumed run mixes as the uninterrupted run did.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections

from resnet_jax.config_checks import check_ranges

# The fields this module owns: (lowest, highest, whether the lowest is allowed).
RANGES = {
  'mixup_alpha': (0, math.inf, True),
  'cutmix_alpha': (0, math.inf, True),
  'mixup_switch_prob': (0, 1, True),
}


@dataclasses.dataclass(frozen=True)
class Mix:
  """The mixing of `config` (configs/default.py documents the fields)."""

  mixup_alpha: float = 0.0
  cutmix_alpha: float = 0.0
  switch_prob: float = 0.5

  @property
  def active(self) -> bool:
    return self.mixup_alpha > 0 or self.cutmix_alpha > 0


# No mixing: every image and label as it is.
NONE = Mix()


def validate(config: ml_collections.ConfigDict) -> None:
  check_ranges(config, RANGES)


def from_config(config: ml_collections.ConfigDict) -> Mix:
  return Mix(config.mixup_alpha, config.cutmix_alpha, config.mixup_switch_prob)


def cutmix_box(
  rng: jax.Array, height: int, width: int, ratio: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """(Mask of the box, the share of the image outside it). The box has sides int(side *
  sqrt(1 - ratio)) about a uniform centre, clipped to the image, as timm's `rand_bbox`."""
  cut = jnp.sqrt(1.0 - ratio)
  cut_h, cut_w = (jnp.floor(side * cut).astype(jnp.int32) for side in (height, width))
  cy_rng, cx_rng = jax.random.split(rng)
  cy = jax.random.randint(cy_rng, (), 0, height)
  cx = jax.random.randint(cx_rng, (), 0, width)
  top, bottom = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
  left, right = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
  rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
  mask = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
  outside = 1.0 - (bottom - top) * (right - left) / (height * width)
  return mask, outside


def mix(images: jax.Array, rng: jax.Array, mix: Mix) -> tuple[jax.Array, jax.Array]:
  """(Mixed images (N, H, W, C), the share `ratio` of each that is its own): image i mixed with
  image N - 1 - i, which makes up 1 - ratio of it."""
  switch_rng, ratio_rng, box_rng = jax.random.split(rng, 3)
  if mix.mixup_alpha > 0 and mix.cutmix_alpha > 0:
    cutmix = jax.random.bernoulli(switch_rng, mix.switch_prob)
  else:
    cutmix = jnp.asarray(mix.cutmix_alpha > 0)
  alpha = jnp.where(cutmix, mix.cutmix_alpha, mix.mixup_alpha)
  ratio = jax.random.beta(ratio_rng, alpha, alpha)
  other = images[::-1]
  box, outside = cutmix_box(box_rng, images.shape[1], images.shape[2], ratio)
  blended = ratio * images.astype(jnp.float32) + (1.0 - ratio) * other.astype(jnp.float32)
  mixed = jnp.where(cutmix, jnp.where(box[None, :, :, None], other, images), blended)
  return mixed.astype(images.dtype), jnp.where(cutmix, outside, ratio)


def partners(labels: jax.Array) -> jax.Array:
  """The label of the image each image of the batch is mixed with by `mix`."""
  return labels[::-1]


def targets(
  labels: jax.Array, partner_labels: jax.Array, ratio: jax.Array, num_classes: int
) -> jax.Array:
  """The soft targets (N, num_classes) of images mixed by `mix` with `ratio`: any subset of a
  batch (a micro-batch) with its `partners`."""
  own, partner = jax.nn.one_hot(labels, num_classes), jax.nn.one_hot(partner_labels, num_classes)
  return ratio * own + (1.0 - ratio) * partner
