"""Which tiles of a photo train the network: more from a big photo, the detailed ones.

A photo is looked at as a pyramid: at native resolution and halved, and halved again
(antialiased bicubic), as long as a level still holds a tile. A big photo is often soft
at the pixel level (optics, processing, a wallpaper scaled up): halved, its detail is
as dense as a small sharp photo's, which is what a network should learn to restore.
Each level is cut into candidate tiles of `size` x `size` pixels on a grid with
half-tile steps (the last row and column flush with the edges). Each candidate is
scored by what bicubic upscaling loses on it at the run's scale: the mean squared luma
error after degrading it and upscaling it back. That is near zero on fog, sky and
bokeh, where a network has nothing to add, and large on foliage, fabric and text. The
best candidates of all levels are kept, overlapping each other (on one level) by at
most a fifth, best first.

How many: `tiles_per_megapixel` per megapixel of the photo, at least `min_tiles` and at
most `max_tiles`, and never more than the candidates can give without overlapping more.

Memory: the photo stays 8-bit; its halved levels take a third more; only one candidate
at a time is made float, so a 24 MP JPEG needs its 72 MB of pixels and a few hundred MB
more at most, whatever its size.
"""
import tensorflow as tf

from superres_tfx.imaging import image_ops

# BT.601 luma weights: the score only ranks tiles, so the full-range form will do.
_LUMA = (0.299, 0.587, 0.114)
# Two kept tiles may share at most this much of their union (intersection over union);
# a half-tile step side by side is 1/3, a diagonal one 1/7.
MAX_OVERLAP = 0.2


def grow_to(image: tf.Tensor, size: int) -> tf.Tensor:
  """uint8 [H, W, 3] -> the same, resized up (bicubic) so that its short side is at
  least `size`; unchanged when it already is."""
  shape = tf.shape(image)
  short = tf.minimum(shape[0], shape[1])
  grow = tf.maximum(1.0, size / tf.cast(short, tf.float32))
  new_size = tf.cast(tf.math.ceil(tf.cast(shape[:2], tf.float32) * grow), tf.int32)
  return tf.cond(short < size,
                 lambda: image_ops.to_uint8(image_ops.resize_bicubic(
                     image_ops.to_float(image), new_size)),
                 lambda: image)


def _offsets(extent: tf.Tensor, size: int) -> tf.Tensor:
  """Tile starts along one side: every half tile, and one flush with the far edge."""
  step = max(1, size // 2)
  starts = tf.range(0, extent - size + 1, step)
  last = extent - size
  return tf.cond(starts[-1] < last, lambda: tf.concat([starts, [last]], 0), lambda: starts)


def candidates(height: tf.Tensor, width: tf.Tensor, size: int) -> tf.Tensor:
  """int32 [N, 2]: top and left of every candidate tile of an image at least `size`
  on each side."""
  tops, lefts = tf.meshgrid(_offsets(height, size), _offsets(width, size), indexing="ij")
  return tf.stack([tf.reshape(tops, [-1]), tf.reshape(lefts, [-1])], axis=1)


def bicubic_loss(tile_uint8: tf.Tensor, scale: int) -> tf.Tensor:
  """Mean squared luma error (0..1 scale) of a tile degraded by `scale` and upscaled back
  with bicubic: how much there is for a super-resolution network to restore."""
  luma = tf.tensordot(image_ops.to_float(tile_uint8), tf.constant(_LUMA), axes=1)[..., None]
  restored = image_ops.upscale_bicubic(image_ops.degrade(luma, scale), scale)
  return tf.reduce_mean(tf.square(restored - luma))


def tile_count(height: tf.Tensor, width: tf.Tensor, tiles_per_megapixel: float,
               min_tiles: int, max_tiles: int) -> tf.Tensor:
  """How many tiles a photo of height x width gives (before the grid's own limit)."""
  megapixels = tf.cast(height, tf.float32) * tf.cast(width, tf.float32) / 1e6
  wanted = tf.cast(tf.round(megapixels * tiles_per_megapixel), tf.int32)
  return tf.clip_by_value(wanted, min_tiles, max_tiles)


def _halved(image: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, 3] -> uint8 [H/2, W/2, 3], antialiased bicubic (resized from the 8-bit
  pixels: only the half-size result is ever float)."""
  size = tf.maximum(tf.shape(image)[:2] // 2, 1)
  halved = tf.image.resize(image, size, method=tf.image.ResizeMethod.BICUBIC, antialias=True)
  return tf.cast(tf.round(tf.clip_by_value(halved, 0.0, 255.0)), tf.uint8)


def _level_candidates(image: tf.Tensor, size: int) -> tf.Tensor:
  """candidates() of one level; none when the level is smaller than a tile."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  return tf.cond(tf.minimum(height, width) >= size, lambda: candidates(height, width, size),
                 lambda: tf.zeros([0, 2], tf.int32))


def select_tiles(image: tf.Tensor, size: int, scale: int, tiles_per_megapixel: float,
                 min_tiles: int, max_tiles: int, levels: int = 1) -> tf.Tensor:
  """uint8 [H, W, 3] -> uint8 [K, size, size, 3], the chosen tiles, most detailed first,
  from the photo and up to `levels` - 1 halvings of it."""
  image = grow_to(image, size)
  pyramid = [image]
  for _ in range(levels - 1):
    pyramid.append(_halved(pyramid[-1]))
  # Candidates of every level: (level, top, left).
  starts = tf.concat([tf.pad(_level_candidates(level, size), [[0, 0], [1, 0]],
                             constant_values=index)
                      for index, level in enumerate(pyramid)], axis=0)

  def cut(start):
    return tf.switch_case(start[0], [
        lambda level=level: level[start[1]:start[1] + size, start[2]:start[2] + size, :]
        for level in pyramid])

  scores = tf.map_fn(lambda start: bicubic_loss(cut(start), scale), starts,
                     fn_output_signature=tf.float32)
  # Levels far apart: tiles of two levels never suppress each other.
  corners = tf.cast(starts[:, 1:] + starts[:, :1] * 10 ** 6, tf.float32)
  boxes = tf.concat([corners, corners + size], axis=1)  # [top, left, bottom, right]
  chosen = tf.image.non_max_suppression(
      boxes, scores,
      tile_count(tf.shape(image)[0], tf.shape(image)[1], tiles_per_megapixel, min_tiles,
                 max_tiles),
      iou_threshold=MAX_OVERLAP)
  tiles = tf.map_fn(cut, tf.gather(starts, chosen),
                    fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
  return tiles
