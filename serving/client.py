"""Clients of the model server, over TF Serving's REST or gRPC API.

Works against `python -m superres_tfx.serving` and against TensorFlow Serving itself. Images
larger than a tile are sent as overlapping tiles (inference/tiling.py, as local inference
does), so no request exceeds the server's pixel limit and server memory stays bounded;
the result is the same as one whole-image pass.

  with RestClient("http://127.0.0.1:8501") as client:
    png = upscale_bytes(client, open("photo.jpg", "rb").read())

Importable from the pipeline environment; REST needs only `requests`, gRPC imports
TensorFlow's message classes (tensorflow-serving-api).
"""
import base64
import io
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError
import requests

from superres_tfx.core import errors
from superres_tfx.core import names
from superres_tfx.inference import tiling

INPUT_KEY = "images"
OUTPUT_KEY = "images"
DEFAULT_TIMEOUT_SECONDS = 120.0
MAX_GRPC_MESSAGE_BYTES = 256 * 1024 * 1024
SIXTEEN_TO_EIGHT_BITS = 257.0  # 65535 / 255


class ServingError(errors.SuperresError):
  """The server refused a request or could not be reached; `status` is the HTTP or gRPC code."""

  def __init__(self, message: str, status=None):
    super().__init__(message)
    self.status = status


class RestClient:
  """TF Serving's REST predict API: POST /v1/models/NAME[/versions/N]:predict."""

  def __init__(self, url: str, name: str = names.DEFAULT_MODEL_NAME, version: Optional[int] = None,
               timeout: float = DEFAULT_TIMEOUT_SECONDS):
    self.url = url.rstrip("/")
    path = f"/v1/models/{name}" + (f"/versions/{version}" if version is not None else "")
    self._predict_url = f"{self.url}{path}:predict"
    self._timeout = timeout
    self._session = requests.Session()

  def predict(self, images: List[bytes]) -> List[bytes]:
    """Encoded images -> PNG bytes of the upscaled images."""
    body = {"instances": [{"b64": base64.b64encode(image).decode("ascii")} for image in images]}
    try:
      response = self._session.post(self._predict_url, json=body, timeout=self._timeout)
    except requests.RequestException as error:
      raise ServingError(f"cannot reach the model server at {self.url} ({error}); is it "
                         f"running (`superres serve`)?") from None
    if response.status_code != 200:
      try:
        message = response.json()["error"]
      except (ValueError, KeyError, TypeError):
        message = response.text[:500]
      raise ServingError(f"{self._predict_url}: HTTP {response.status_code}: {message}",
                         response.status_code)
    try:
      predictions = response.json()["predictions"]
      return [base64.b64decode(prediction["b64"]) for prediction in predictions]
    except (ValueError, KeyError, TypeError) as error:
      raise ServingError(f"{self._predict_url}: unexpected answer ({error}): "
                         f"{response.text[:200]}") from None

  def close(self) -> None:
    self._session.close()

  def __enter__(self):
    return self

  def __exit__(self, *_):
    self.close()


class GrpcClient:
  """TF Serving's gRPC PredictionService.Predict on the `serving_default` signature."""

  def __init__(self, target: str, name: str = names.DEFAULT_MODEL_NAME,
               version: Optional[int] = None,
               timeout: float = DEFAULT_TIMEOUT_SECONDS):
    # pylint: disable=import-outside-toplevel
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    self._grpc = grpc
    self.target = target
    self._name, self._version, self._timeout = name, version, timeout
    self._channel = grpc.insecure_channel(
        target, options=[("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
                         ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES)])
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

  def predict(self, images: List[bytes]) -> List[bytes]:
    # pylint: disable=import-outside-toplevel
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2
    request = predict_pb2.PredictRequest()
    request.model_spec.name = self._name
    request.model_spec.signature_name = names.SERVING_SIGNATURE
    if self._version is not None:
      request.model_spec.version.value = self._version
    request.inputs[INPUT_KEY].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=images,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(images))])))
    try:
      response = self._stub.Predict(request, timeout=self._timeout)
    except self._grpc.RpcError as error:
      code = error.code()
      hint = " (is the server running?)" if code == self._grpc.StatusCode.UNAVAILABLE else ""
      raise ServingError(f"{self.target}: {code.name}: {error.details()}{hint}", code) from None
    if OUTPUT_KEY not in response.outputs:
      raise ServingError(f"{self.target}: the answer has no '{OUTPUT_KEY}' output "
                         f"(got {sorted(response.outputs)})")
    return list(response.outputs[OUTPUT_KEY].string_val)

  def close(self) -> None:
    self._channel.close()

  def __enter__(self):
    return self

  def __exit__(self, *_):
    self.close()


def decode_png(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert("RGB"))


def encode_png(pixels: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


def _to_rgb8(image: Image.Image) -> np.ndarray:
  """uint8 [H, W, 3] as the server's decoder gives it (alpha dropped, 16-bit scaled down)."""
  if image.mode.startswith("I"):
    gray = np.round(np.asarray(image, np.float64) / SIXTEEN_TO_EIGHT_BITS)
    return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., np.newaxis], 3, axis=-1)
  return np.asarray(image.convert("RGB"))


def upscale_array(client, pixels: np.ndarray, tile_size: int = tiling.TILE_SIZE,
                  tile_margin: int = tiling.TILE_MARGIN, scale: Optional[int] = None) -> np.ndarray:
  """uint8 RGB [H, W, 3] -> upscaled uint8 [sH, sW, 3], one request per tile.

  With `scale`, a server whose model upscales by another factor is refused at the first tile.
  """
  if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] != 3:
    raise ValueError(f"expected uint8 RGB pixels [H, W, 3], got {pixels.dtype} {pixels.shape}")
  height, width = pixels.shape[:2]
  sr, served_scale = None, None
  for tile in tiling.tiles(height, width, tile_size, tile_margin):
    outer = tile.outer
    lr = pixels[outer.top:outer.bottom, outer.left:outer.right]
    tile_sr = decode_png(client.predict([encode_png(np.ascontiguousarray(lr))])[0])
    tile_scale = tile_sr.shape[0] // lr.shape[0]
    if tile_sr.shape[:2] != (lr.shape[0] * tile_scale, lr.shape[1] * tile_scale) or tile_scale < 1:
      raise ServingError(f"the server returned {tile_sr.shape[1]}x{tile_sr.shape[0]} for a "
                         f"{lr.shape[1]}x{lr.shape[0]} tile: not a whole-number upscale")
    if sr is None:
      if scale is not None and tile_scale != scale:
        raise ServingError(f"the model on the server upscales by {tile_scale}, not {scale}; "
                           f"omit the scale or serve a model trained for x{scale}")
      served_scale = tile_scale
      sr = np.empty([height * served_scale, width * served_scale, 3], np.uint8)
    elif tile_scale != served_scale:
      raise ServingError(f"the server's scale changed from {served_scale} to {tile_scale} "
                         f"during the image (a new model version?); try again")
    tiling.paste(sr, tile_sr, tile, served_scale)
  return sr


def upscale_bytes(client, data: bytes, tile_size: int = tiling.TILE_SIZE,
                  tile_margin: int = tiling.TILE_MARGIN) -> bytes:
  """Encoded image bytes (PNG, JPEG, ...) -> PNG bytes of the upscaled image.

  An image within one tile is sent as it is and decoded by the server; a larger one is
  decoded here and sent as PNG tiles.
  """
  try:
    with Image.open(io.BytesIO(data)) as image:
      if not tiling.needs_tiling(image.height, image.width, tile_size):
        return client.predict([data])[0]
      image.load()
      pixels = _to_rgb8(image)
  except (UnidentifiedImageError, OSError, SyntaxError) as error:
    raise ValueError(f"not an image that can be read ({error}); send PNG, JPEG, BMP, GIF "
                     f"or WebP bytes") from None
  return encode_png(upscale_array(client, pixels, tile_size, tile_margin))


def upscale_rest(url: str, name: str, data: bytes, **tile_options) -> bytes:
  """One image through TF Serving's REST API; `url` like http://127.0.0.1:8501."""
  with RestClient(url, name) as client:
    return upscale_bytes(client, data, **tile_options)


def upscale_grpc(target: str, name: str, data: bytes, **tile_options) -> bytes:
  """One image through TF Serving's gRPC API; `target` like 127.0.0.1:8500."""
  with GrpcClient(target, name) as client:
    return upscale_bytes(client, data, **tile_options)


def upscale_file(input_path: str, output_path: str, client,
                 scale: Optional[int] = None) -> Tuple[int, int]:
  """`superres upscale` through a server: read, upscale in tiles, write; returns (height, width).

  Reads and writes exactly as local inference does (inference/upscaling.py: EXIF
  orientation, any pixel mode, output format from the extension), so only the model runs
  elsewhere.
  """
  from superres_tfx.inference import upscaling  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
  lr = upscaling.read_image(input_path)
  pixels = np.round(lr * 255.0).astype(np.uint8)
  sr = upscale_array(client, pixels, scale=scale)
  upscaling.write_image(output_path, sr.astype(np.float32) / 255.0)
  return sr.shape[0], sr.shape[1]
