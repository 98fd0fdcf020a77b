"""Transform's preprocessing_fn: encoded images -> aligned high-/low-resolution pairs.

Deterministic on purpose: TFX caches Transform's output, so random crops and flips
belong to the Trainer's input pipeline (components/training_data.py).
"""
import tensorflow as tf

from components import features
from components import image_ops


def make_pair(encoded: tf.Tensor, hr_size: int, scale: int):
  """One encoded image -> (hr [hr_size, hr_size, 3], lr [hr_size/scale, ..., 3])."""
  image = image_ops.decode_rgb(encoded)
  hr = image_ops.fixed_size_crop(image, hr_size)
  hr.set_shape([hr_size, hr_size, 3])
  lr = image_ops.degrade(hr, scale)
  lr_size = hr_size // scale
  lr.set_shape([lr_size, lr_size, 3])
  return hr, lr


def preprocessing_fn(inputs, custom_config):
  """tf.Transform callback. custom_config carries `hr_size` and `scale`."""
  hr_size = int(custom_config["hr_size"])
  scale = int(custom_config["scale"])
  if hr_size % scale:
    raise ValueError(f"hr_size {hr_size} is not a multiple of scale {scale}.")
  encoded = tf.reshape(inputs[features.IMAGE], [-1])
  lr_size = hr_size // scale
  hr, lr = tf.map_fn(
      lambda x: make_pair(x, hr_size, scale), encoded,
      fn_output_signature=(tf.TensorSpec([hr_size, hr_size, 3], tf.float32),
                           tf.TensorSpec([lr_size, lr_size, 3], tf.float32)))
  return {features.HR: hr, features.LR: lr}
