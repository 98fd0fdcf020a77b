"""Running a served version on checked inputs; shared by the REST and gRPC front ends."""
from typing import List

import numpy as np
import tensorflow as tf

from serving import protocol
from serving.versions import ServedVersion


def upscale_encoded(served: ServedVersion, images: List[bytes], max_pixels: int,
                    field: str = "instances") -> List[bytes]:
  """Encoded images -> PNG bytes through the `serving_default` signature.

  Every image is checked before any is run, so a bad one costs no model time.
  """
  for i, image in enumerate(images):
    protocol.check_image(image, f"{field}[{i}]", max_pixels)
  outputs = []
  for i, image in enumerate(images):
    try:
      outputs.append(served.upscaler.upscale_bytes(image))
    except tf.errors.InvalidArgumentError as error:
      # Readable header, undecodable body: truncated data or a format TensorFlow lacks.
      raise protocol.BadRequest(
          f"{field}[{i}]: cannot decode the image ({_cause(error.message)})") from None
  return outputs


def _cause(message: str) -> str:
  """The op's own message, without the graph-execution framing around it."""
  framing = ("Graph execution error", "Detected at node", "<stack traces", "[[")
  lines = [line.strip() for line in message.splitlines()]
  causes = [line for line in lines if line and not line.startswith(framing)]
  return causes[0] if causes else message


def upscale_float(served: ServedVersion, lr: np.ndarray, max_pixels: int,
                  field: str = protocol.FLOAT_INPUT_KEY) -> np.ndarray:
  """Float RGB [N, H, W, 3] in [0, 1] -> [N, sH, sW, 3] through the `upscale` signature."""
  if lr.ndim != 4 or lr.shape[-1] != 3:
    raise protocol.BadRequest(f"{field}: expected float32 [N, H, W, 3], got shape {list(lr.shape)}")
  protocol.check_size(lr.shape[1], lr.shape[2], field, max_pixels)
  return served.upscaler.upscale(lr.astype(np.float32))
