"""Transform's preprocessing_fn: encoded photos -> aligned high-/low-resolution tile pairs.

Each photo gives tiles, more from a big photo than from a small one and the detailed
ones first, at native resolution or from the photo halved (imaging/tile_selection.py),
so training sees what a network can restore rather than fog, sky and soft pixels. The
low-resolution tile is the bicubic degradation of the high-resolution one. Both are
stored as 8-bit PNG, as a served photo arrives in 8 bits: a tile pair is ~150 KB instead
of ~860 KB of floats, so the Trainer can stream its data from disk instead of holding it
in memory.

Deterministic on purpose: TFX caches Transform's output, so random crops and flips
belong to the Trainer's input pipeline (components/training_data.py).
"""
import tensorflow as tf

from superres_tfx.components import features
from superres_tfx.imaging import image_ops
from superres_tfx.imaging import tile_selection

# What preprocessing_fn reads of custom_config: the pipeline passes Transform these only.
CONFIG_KEYS = ("hr_size", "scale", "tiles_per_megapixel", "min_tiles", "max_tiles",
               "pyramid_levels")


def make_pairs(encoded: tf.Tensor, hr_size: int, scale: int, tiles_per_megapixel: float,
               min_tiles: int, max_tiles: int, pyramid_levels: int = 1):
  """One encoded photo -> (hr, lr): PNG strings [max_tiles], "" past the photo's tiles."""
  hr = tile_selection.select_tiles(image_ops.decode_rgb_uint8(encoded), hr_size, scale,
                                   tiles_per_megapixel, min_tiles, max_tiles, pyramid_levels)

  def encode(tile):
    lr = image_ops.to_uint8(image_ops.degrade(image_ops.to_float(tile), scale))
    return tf.io.encode_png(tile), tf.io.encode_png(lr)

  hr_png, lr_png = tf.map_fn(encode, hr, fn_output_signature=(tf.string, tf.string))
  padding = [[0, max_tiles - tf.shape(hr_png)[0]]]
  return tf.pad(hr_png, padding), tf.pad(lr_png, padding)


def preprocessing_fn(inputs, custom_config):
  """tf.Transform callback; custom_config carries CONFIG_KEYS."""
  hr_size, scale = int(custom_config["hr_size"]), int(custom_config["scale"])
  max_tiles = int(custom_config["max_tiles"])
  if hr_size % scale:
    raise ValueError(f"hr_size {hr_size} is not a multiple of scale {scale}.")
  encoded = tf.reshape(inputs[features.IMAGE], [-1])
  padded = tf.TensorSpec([max_tiles], tf.string)
  hr, lr = tf.map_fn(
      lambda x: make_pairs(x, hr_size, scale, float(custom_config["tiles_per_megapixel"]),
                           int(custom_config["min_tiles"]), max_tiles,
                           int(custom_config["pyramid_levels"])),
      encoded, fn_output_signature=(padded, padded))
  # Variable-length features: a photo's tiles, without the padding (empty strings).
  return {features.HR: tf.sparse.from_dense(hr), features.LR: tf.sparse.from_dense(lr)}
