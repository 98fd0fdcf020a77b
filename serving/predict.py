"""Running a served version on checked inputs; shared by the REST and gRPC front ends.

Every input path runs in tiles (superres_tfx.inference.upscaling): encoded images are decoded to
uint8, upscaled a row of tiles at a time and encoded into the PNG stream as each row is
done, so the working memory of a request is set by --max-request-memory, not by the size
of the picture. The result equals a whole-image pass within one grey level.
"""
from typing import Iterator, List

import numpy as np
import tensorflow as tf

from superres_tfx.serving import memory
from superres_tfx.serving import protocol
from superres_tfx.serving.versions import ServedVersion
from superres_tfx.inference import upscaling


def png_streams(served: ServedVersion, images: List[bytes], max_pixels: int,
                field: str = "instances") -> Iterator[Iterator[bytes]]:
  """Encoded images -> one PNG byte stream per image, upscaled in tiles as it is read.

  Every image is checked (header, then a full decode) before this returns, so a bad one
  costs no model time and an answer never fails half-sent. Only the image being
  upscaled is held decoded.
  """
  for i, image in enumerate(images):
    protocol.check_image(image, f"{field}[{i}]", max_pixels)
  first = _decode(images[0], f"{field}[0]")
  for i in range(1, len(images)):
    _decode(images[i], f"{field}[{i}]")  # checked now, decoded again when its turn comes
  return _streams(served, images, first, field)


def _streams(served: ServedVersion, images: List[bytes], first: np.ndarray,
             field: str) -> Iterator[Iterator[bytes]]:
  lr, pixels = first, 0
  for i in range(len(images)):
    if i:
      lr = _decode(images[i], f"{field}[{i}]")
    pixels += lr.shape[0] * lr.shape[1]
    yield served.upscaler.upscale_to_png(lr, served.tile_size)
  del lr
  if pixels >= memory.LARGE_REQUEST_PIXELS:
    memory.release_free_memory()


def _decode(image: bytes, where: str) -> np.ndarray:
  try:
    return upscaling.decode_image(image)
  except tf.errors.InvalidArgumentError as error:
    # Readable header, undecodable body: truncated data or a format TensorFlow lacks.
    raise protocol.BadRequest(f"{where}: cannot decode the image ({_cause(error.message)})") \
        from None


def _cause(message: str) -> str:
  """The op's own message, without the graph-execution framing around it."""
  framing = ("Graph execution error", "Detected at node", "<stack traces", "[[")
  lines = [line.strip() for line in message.splitlines()]
  causes = [line for line in lines if line and not line.startswith(framing)]
  return causes[0] if causes else message


def upscale_float(served: ServedVersion, lr: np.ndarray, max_pixels: int,
                  field: str = protocol.FLOAT_INPUT_KEY) -> np.ndarray:
  """Float RGB [N, H, W, 3] in [0, 1] -> [N, sH, sW, 3] through the `upscale` signature,
  in tiles."""
  if lr.ndim != 4 or lr.shape[-1] != 3:
    raise protocol.BadRequest(f"{field}: expected float32 [N, H, W, 3], got shape {list(lr.shape)}")
  protocol.check_size(lr.shape[1], lr.shape[2], field, max_pixels)
  return served.upscaler.upscale(lr.astype(np.float32), tile_size=served.tile_size)
