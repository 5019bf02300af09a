"""The network's input, made on the device from the uint8 pixels the input pipeline ships.

uint8 batches are a quarter of the bytes of float32 ones, between the host's threads and on
their way to the devices; the normalisation and the cast to the compute dtype cost nothing
inside the compiled step. The arithmetic is the host's was, in float32: the same network input.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Normalization:
  """Per-channel pixel statistics on the 0..255 scale, and the dtype the network computes in."""

  mean: tuple[float, ...]
  std: tuple[float, ...]
  dtype: str = 'float32'


def images(images: Any, normalization: Normalization | None) -> Any:
  """`images` (an array or a tuple of arrays, [..., C] uint8) as the network takes them:
  (x - mean) / std in float32, then cast to the compute dtype. With no normalization, images
  that are already the network's input (float batches made elsewhere) are left as they are."""
  if normalization is None:
    return images
  mean = jnp.asarray(normalization.mean, jnp.float32)
  std = jnp.asarray(normalization.std, jnp.float32)
  return jax.tree.map(
    lambda x: ((x.astype(jnp.float32) - mean) / std).astype(normalization.dtype), images
  )
