"""Overlapping tiles, so that large images are upscaled with bounded memory.

Each tile is upscaled with a margin of extra pixels of context on every side that has
image there, and only its inner part is kept: as long as the margin covers the
network's receptive radius, the seams match a whole-image pass. Shared by local
inference (upscaling.py), the server and the serving client (serving/client.py); plain
Python, so the client can tile without importing TensorFlow.
"""
import itertools
from typing import Iterator, List, NamedTuple

# Tiles hold at most TILE_SIZE low-resolution pixels per side, plus the margins.
TILE_SIZE = 512
TILE_MARGIN = 16


class Box(NamedTuple):
  top: int
  left: int
  bottom: int
  right: int


class Tile(NamedTuple):
  inner: Box  # the pixels this tile contributes
  outer: Box  # what is upscaled: inner plus the margins


def needs_tiling(height: int, width: int, tile_size: int = TILE_SIZE) -> bool:
  return height > tile_size or width > tile_size


def tiles(height: int, width: int, tile_size: int = TILE_SIZE,
          tile_margin: int = TILE_MARGIN) -> Iterator[Tile]:
  """Tiles covering a height x width image, row by row."""
  if tile_size < 1 or tile_margin < 0:
    raise ValueError(f"tile size must be >= 1 and margin >= 0, got {tile_size} and {tile_margin}")
  for top in range(0, height, tile_size):
    for left in range(0, width, tile_size):
      bottom, right = min(top + tile_size, height), min(left + tile_size, width)
      yield Tile(Box(top, left, bottom, right),
                 Box(max(top - tile_margin, 0), max(left - tile_margin, 0),
                     min(bottom + tile_margin, height), min(right + tile_margin, width)))


def tile_rows(height: int, width: int, tile_size: int = TILE_SIZE,
              tile_margin: int = TILE_MARGIN) -> Iterator[List[Tile]]:
  """The tiles of tiles(), one list per row of tiles, top to bottom."""
  for _, row in itertools.groupby(tiles(height, width, tile_size, tile_margin),
                                  key=lambda tile: tile.inner.top):
    yield list(row)


def paste(sr, tile_sr, tile: Tile, scale: int) -> None:
  """Copies the inner part of an upscaled tile into its place in `sr`.

  Both are arrays [..., H, W, C] (one image or a batch); `tile_sr` is the upscaled
  outer box of `tile`.
  """
  inner, outer = tile
  y0, x0 = (inner.top - outer.top) * scale, (inner.left - outer.left) * scale
  height, width = (inner.bottom - inner.top) * scale, (inner.right - inner.left) * scale
  sr[..., inner.top * scale:inner.bottom * scale, inner.left * scale:inner.right * scale, :] = (
      tile_sr[..., y0:y0 + height, x0:x0 + width, :])
