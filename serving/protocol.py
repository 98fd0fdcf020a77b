"""Requests in TF Serving's shapes, checked before any TensorFlow work.

REST (TF Serving's JSON API), row or columnar form:
  {"instances": [{"b64": "<base64 image>"}, ...]} -> {"predictions": [{"b64": "<base64 PNG>"}]}
  {"inputs": [{"b64": ...}, ...]}                 -> {"outputs": [{"b64": ...}, ...]}
An instance may also name the input: {"images": {"b64": ...}}.

The limits on images per request and pixels per image are checked here, for REST and
gRPC alike.
"""
import base64
import binascii
import io
import json
from typing import Any, Iterable, Iterator, List, Tuple

from PIL import Image, UnidentifiedImageError

from superres_tfx.core import names

INPUT_KEY = "images"  # the serving signature's input and output names (components/export.py)
OUTPUT_KEY = "images"
FLOAT_INPUT_KEY = "lr"
FLOAT_OUTPUT_KEY = "sr"

# The size check below is ours; PIL's own decompression-bomb limit would only get in its way.
Image.MAX_IMAGE_PIXELS = None

# Answers are base64-encoded in pieces of this many bytes, a multiple of 3 so that the
# pieces join into the whole's encoding: each holds the GIL for a millisecond or so, not
# for the whole of a large image, and the event loop answers status calls meanwhile.
B64_PIECE_BYTES = 3 * 256 * 1024

EXAMPLE = '{"instances": [{"b64": "<base64 of a PNG or JPEG file>"}]}'


class BadRequest(ValueError):
  """The request is malformed; the message says what to fix."""


def parse_json(body: Any) -> Any:
  """A request body (bytes, or already parsed) as JSON."""
  if isinstance(body, (bytes, bytearray, str)):
    try:
      return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
      # "Unrecognized request format" is what KServe's route said; clients may match it.
      raise BadRequest(f"Unrecognized request format: the request body is not valid JSON "
                       f"({error}); send {EXAMPLE}") from None
  return body


def parse_predict_request(body: Any, max_batch_size: int) -> Tuple[List[bytes], bool]:
  """Encoded images of a predict request, and whether it used the columnar ("inputs") form."""
  body = parse_json(body)
  if not isinstance(body, dict):
    raise BadRequest(f"the request must be a JSON object like {EXAMPLE}")
  signature = body.get("signature_name", names.SERVING_SIGNATURE)
  if signature != names.SERVING_SIGNATURE:
    raise BadRequest(f"signature '{signature}' is not served over REST; omit signature_name "
                     f"or use '{names.SERVING_SIGNATURE}' (gRPC also serves "
                     f"'{names.FLOAT_SIGNATURE}')")
  if ("instances" in body) == ("inputs" in body):
    raise BadRequest(
        f"the request needs exactly one of \"instances\" or \"inputs\", like {EXAMPLE}")
  columnar = "inputs" in body
  field = "inputs" if columnar else "instances"
  items = body[field]
  if isinstance(items, dict) and INPUT_KEY in items:  # {"inputs": {"images": [...]}}
    items = items[INPUT_KEY]
  if not isinstance(items, list) or not items:
    raise BadRequest(f"\"{field}\" must be a non-empty list of images, like {EXAMPLE}")
  check_batch(len(items), field, max_batch_size)
  return [_decode_b64(item, f"{field}[{i}]") for i, item in enumerate(items)], columnar


def _decode_b64(item: Any, where: str) -> bytes:
  if isinstance(item, dict) and set(item) == {INPUT_KEY}:
    item = item[INPUT_KEY]
  if not (isinstance(item, dict) and set(item) == {"b64"} and isinstance(item["b64"], str)):
    raise BadRequest(f"{where}: expected {{\"b64\": \"<base64 image bytes>\"}}, got "
                     f"{json.dumps(item)[:80]}")
  try:
    return base64.b64decode(item["b64"], validate=True)
  except (binascii.Error, ValueError) as error:
    raise BadRequest(f"{where}: \"b64\" is not valid base64 ({error})") from None


def check_image(data: bytes, where: str, max_pixels: int) -> None:
  """Rejects bytes that are not an image, or an image over the pixel limit, from its header."""
  if not data:
    raise BadRequest(f"{where}: empty image")
  try:
    with Image.open(io.BytesIO(data)) as image:
      width, height = image.size
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
    raise BadRequest(f"{where}: not an image (send PNG, JPEG, BMP, GIF or WebP bytes)") from None
  check_size(height, width, where, max_pixels)


def check_size(height: int, width: int, where: str, max_pixels: int) -> None:
  if height * width > max_pixels:
    raise BadRequest(
        f"{where}: {width}x{height} is {width * height} pixels, over this server's limit of "
        f"{max_pixels} (--max-pixels); send it in tiles (`superres upscale --server` does) "
        "or raise the limit")
  if height == 0 or width == 0:
    raise BadRequest(f"{where}: image has no pixels")


def check_batch(count: int, where: str, max_batch_size: int) -> None:
  """Refuses more images in one request than --max-batch-size, before any is decoded."""
  if count > max_batch_size:
    raise BadRequest(
        f"{where}: {count} images, over this server's limit of {max_batch_size} per request "
        f"(--max-batch-size); send them in several requests or raise the limit")


def predict_response_pieces(images: Iterable[Iterable[bytes]],
                            columnar: bool) -> Iterator[bytes]:
  """The JSON answer, {"predictions": [{"b64": ...}, ...]} (or "outputs"), in pieces.

  Each image comes as its bytes in pieces (a PNG stream), encoded as they arrive, so the
  answer need never be held whole. Written out rather than by a JSON encoder, which
  would scan every base64 character again while holding the GIL; base64 needs no
  escaping.
  """
  yield b'{"outputs":[' if columnar else b'{"predictions":['
  for i, pieces in enumerate(images):
    yield b',{"b64":"' if i else b'{"b64":"'
    carry = b""  # base64 encodes 3 bytes at a time: the rest waits for the next piece
    for piece in pieces:
      data = carry + piece if carry else piece
      whole = len(data) - len(data) % 3
      for start in range(0, whole, B64_PIECE_BYTES):
        yield base64.b64encode(data[start:min(start + B64_PIECE_BYTES, whole)])
      carry = data[whole:]
    if carry:
      yield base64.b64encode(carry)
    yield b'"}'
  yield b"]}"


def predict_response(images: List[bytes], columnar: bool) -> bytes:
  """The whole JSON answer for images held whole."""
  return b"".join(predict_response_pieces(([image] for image in images), columnar))
