"""The serving SavedModel: encoded image bytes of any size in, PNG bytes out.

Incoming bytes are decoded as components.image_ops.decode_rgb decodes training images in
Transform (its two steps, decode_rgb_uint8 and to_float, the second tile by tile), so
serving and training see identical pixels. Each image is upscaled in tiles
(components.image_ops.upscale_in_tiles), so a phone photo needs no more network
activations in stock TF Serving than a small image does.
With self_ensemble the graph itself averages the 8 flips/rotations, so TF Serving, the
Evaluator and `superres upscale` all serve the same, ensembled, images.
"""
import keras
import tensorflow as tf

from superres_tfx.inference import footprint
from superres_tfx.imaging import image_ops
from superres_tfx.core import names

# serving_default upscales each image in tiles sized so that one image's network
# activations stay within this, by the estimate of components.footprint; beside them
# stock TF Serving holds the 8-bit photo, the 8-bit result (twice, while its rows are
# joined) and the PNG.
SERVING_TILE_MEMORY = 256 * 1024 * 1024


class SuperResolutionModule(tf.Module):
  """Holds the network and its scale; both signatures call the same network."""

  def __init__(self, model: keras.Model, scale: int, self_ensemble: bool = False,
               tile_memory: int = SERVING_TILE_MEMORY):
    super().__init__()
    self.model = model
    self.scale = tf.Variable(scale, dtype=tf.int32, trainable=False, name="scale")
    # Saved, so a loaded model says whether it ensembles (inference/upscaling.py's
    # Upscaler); the Python bool decides the traced graph.
    self.self_ensemble = tf.Variable(self_ensemble, trainable=False, name="self_ensemble")
    self._ensemble = self_ensemble
    kernels = [weight.shape for weight in model.weights if len(weight.shape) == 4]
    self._tile_margin = footprint.receptive_radius(kernels)
    self._tile_size = footprint.tile_size_for_budget(
        tile_memory, footprint.bytes_per_pixel(kernels, scale, self_ensemble),
        self._tile_margin)
    self._scale = scale

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="lr")])
  def upscale(self, lr):
    network = lambda x: self.model(x, training=False)
    sr = image_ops.self_ensemble(network, lr) if self._ensemble else network(lr)
    return {"sr": tf.clip_by_value(sr, 0.0, 1.0)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
  def serve_encoded(self, images):
    def upscale_one(encoded):
      sr = image_ops.upscale_in_tiles(lambda lr: self.upscale(lr)["sr"],
                                      image_ops.decode_rgb_uint8(encoded), self._scale,
                                      self._tile_size, self._tile_margin)
      return tf.io.encode_png(sr)
    # Images of different sizes cannot share a batch tensor: one at a time.
    return {"images": tf.map_fn(upscale_one, images, fn_output_signature=tf.string)}


def export_serving_model(model: keras.Model, scale: int, export_dir: str,
                         self_ensemble: bool = False,
                         tile_memory: int = SERVING_TILE_MEMORY) -> None:
  """`tile_memory` sets serving_default's tile size (see SERVING_TILE_MEMORY)."""
  module = SuperResolutionModule(model, scale, self_ensemble, tile_memory)
  tf.saved_model.save(module, export_dir, signatures={
      names.SERVING_SIGNATURE: module.serve_encoded,
      names.FLOAT_SIGNATURE: module.upscale,
  })
