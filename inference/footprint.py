"""How far a network sees, and how much memory it takes per pixel, from its kernels' shapes.

Large images are upscaled in overlapping tiles (the serving graph, the server, local
inference): the margin around a tile must cover the network's receptive radius for the
seams not to show, and the tile size follows from a memory budget. Plain Python over
kernel shapes [kh, kw, in, out], so a Keras model and a loaded SavedModel both answer.
"""
import math
from typing import Sequence

# Every model adds its convolutions' output to a bicubic upscaling of the input, which
# reads two pixels on each side (components/models/common.residual_model): a branch
# beside the convolutions, not after them.
BICUBIC_RADIUS = 2
FLOAT_BYTES = 4
# Memory of a network pass per low-resolution pixel is estimated from the kernels: every
# layer's widest side kept at once, plus two tensors at the high resolution as wide as
# the input of the last two layers (where every architecture has upsampled). Measured
# peaks (TF 2.21, 256-512 px tiles) were 35-80 % of the estimate for ESPCN, EDSR and
# resize-conv; self-ensembled, 32-54 % of the estimate with the factor below.
HIGH_RESOLUTION_TENSORS = 2
ENSEMBLE_MEMORY_FACTOR = 1.3
# No tile is made smaller than this, whatever the memory budget: below it the margins
# would cost more than the tile itself.
MIN_TILE_SIZE = 32

KernelShapes = Sequence[Sequence[int]]


def receptive_radius(kernel_shapes: KernelShapes) -> int:
  """Low-resolution pixels on each side that can reach an output pixel: an upper bound
  (every convolution counted as if at low resolution and in one chain, beside the
  bicubic branch)."""
  return max(BICUBIC_RADIUS, sum(max(shape[0], shape[1]) // 2 for shape in kernel_shapes))


def bytes_per_pixel(kernel_shapes: KernelShapes, scale: int, self_ensemble: bool) -> float:
  """Estimated peak memory of upscaling, per low-resolution input pixel (erring high)."""
  shapes = list(kernel_shapes) or [(1, 1, 3, 3)]
  high_resolution_width = max(shape[2] for shape in shapes[-2:])
  per_pixel = FLOAT_BYTES * (sum(max(shape[2], shape[3]) for shape in shapes)
                             + HIGH_RESOLUTION_TENSORS * scale ** 2 * high_resolution_width)
  return per_pixel * (ENSEMBLE_MEMORY_FACTOR if self_ensemble else 1.0)


def tile_size_for_budget(budget_bytes: int, per_pixel: float, tile_margin: int) -> int:
  """The largest tile side whose outer box (tile plus margins) fits the memory budget."""
  if budget_bytes <= 0 or per_pixel <= 0:
    raise ValueError(f"budget and bytes per pixel must be positive, got {budget_bytes} and "
                     f"{per_pixel}")
  outer_side = math.isqrt(int(budget_bytes / per_pixel))
  return max(outer_side - 2 * tile_margin, MIN_TILE_SIZE)
