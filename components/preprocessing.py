"""Transform's preprocessing_fn: encoded images -> aligned high-/low-resolution pairs.

Each image gives a grid of tiles (imaging/image_ops.tile_grid) so training sees
most of every photo at native resolution. Deterministic on purpose: TFX caches
Transform's output, so random crops and flips belong to the Trainer's input pipeline
(components/training_data.py).
"""
import tensorflow as tf

from superres_tfx.components import features
from superres_tfx.imaging import image_ops

# What preprocessing_fn reads of custom_config: the pipeline passes Transform these only.
CONFIG_KEYS = ("hr_size", "tiles_per_side", "scale")


def pair_shapes(hr_size: int, tiles_per_side: int, scale: int):
  """Shapes of one image's pairs: ([tiles, hr_size, hr_size, 3], [tiles, lr_size, lr_size, 3])
  with tiles = tiles_per_side^2 and lr_size = hr_size / scale."""
  tiles = tiles_per_side * tiles_per_side
  lr_size = hr_size // scale
  return [tiles, hr_size, hr_size, 3], [tiles, lr_size, lr_size, 3]


def make_pairs(encoded: tf.Tensor, hr_size: int, tiles_per_side: int, scale: int):
  """One encoded image -> (hr, lr) of the shapes pair_shapes() gives."""
  hr_shape, lr_shape = pair_shapes(hr_size, tiles_per_side, scale)
  hr = image_ops.tile_grid(image_ops.decode_rgb(encoded), hr_size, tiles_per_side)
  hr.set_shape(hr_shape)
  lr = image_ops.degrade(hr, scale)
  lr.set_shape(lr_shape)
  return hr, lr


def preprocessing_fn(inputs, custom_config):
  """tf.Transform callback. custom_config carries `hr_size`, `tiles_per_side` and `scale`."""
  hr_size = int(custom_config["hr_size"])
  tiles_per_side = int(custom_config["tiles_per_side"])
  scale = int(custom_config["scale"])
  if hr_size % scale:
    raise ValueError(f"hr_size {hr_size} is not a multiple of scale {scale}.")
  encoded = tf.reshape(inputs[features.IMAGE], [-1])
  hr_shape, lr_shape = pair_shapes(hr_size, tiles_per_side, scale)
  hr, lr = tf.map_fn(
      lambda x: make_pairs(x, hr_size, tiles_per_side, scale), encoded,
      fn_output_signature=(tf.TensorSpec(hr_shape, tf.float32),
                           tf.TensorSpec(lr_shape, tf.float32)))
  return {features.HR: hr, features.LR: lr}
