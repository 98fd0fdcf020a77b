"""Canary requests for infra validation: a few real eval images, sent to the model server
the way clients send them, and the answers the candidate gives in this process.

Three requests, each carrying every canary image: encoded PNG bytes over REST and over
gRPC (`serving_default`), and float32 pixels over gRPC (`upscale`). The server serves the
float signature over gRPC only (serving/protocol.py refuses it over REST, as its API
documents), so floats have no REST request.
"""
import dataclasses
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from superres_tfx.core import names
from superres_tfx.components import training_data
from superres_tfx.serving import client

# A difference of one grey level, on the [0, 1] float scale: PNG answers are 8-bit, and
# the server runs another TensorFlow release than the Trainer did.
TOLERANCE = 1.0 / 255.0
# Canaries are cropped to this many LR pixels per side: enough for every layer's
# receptive field, small enough that each request takes milliseconds.
CROP = 32
COUNT = 3
FLOAT_INPUT_KEY = "lr"  # components/export.py's upscale signature
FLOAT_OUTPUT_KEY = "sr"


@dataclasses.dataclass
class Canaries:
  lr: np.ndarray  # float32 [N, h, w, 3] in [0, 1]
  pngs: List[bytes]  # the same images in 8 bits, PNG-encoded


@dataclasses.dataclass
class Answers:
  """What one way of asking returned: decoded 8-bit images, or float images."""
  images: List[np.ndarray]


def from_eval_split(split_uri: str, transform_output, count: int = COUNT,
                    crop: int = CROP) -> Canaries:
  """The first `count` low-resolution eval tiles (the best ones of the first photos),
  their top-left `crop` x `crop` pixels."""
  pairs = training_data.eval_dataset(os.path.join(split_uri, "*"), transform_output, count,
                                     tiles_per_photo=count)
  batches = list(pairs.take(1).as_numpy_iterator())
  if not batches:
    raise ValueError(f"no eval images in {split_uri}")
  lr = np.clip(batches[0][0][:, :crop, :crop, :], 0.0, 1.0).astype(np.float32)
  pngs = [client.encode_png(np.round(image * 255.0).astype(np.uint8)) for image in lr]
  return Canaries(lr=lr, pngs=pngs)


def expected(model_path: str, canaries: Canaries) -> Tuple[int, Dict[str, Answers]]:
  """The candidate's own answers in this process, through the same two signatures:
  (scale, {"bytes": ..., "floats": ...})."""
  loaded = tf.saved_model.load(model_path)
  pngs = loaded.signatures[names.SERVING_SIGNATURE](
      images=tf.constant(canaries.pngs))[client.OUTPUT_KEY].numpy()
  sr = loaded.signatures[names.FLOAT_SIGNATURE](
      **{FLOAT_INPUT_KEY: tf.constant(canaries.lr)})[FLOAT_OUTPUT_KEY].numpy()
  return int(loaded.scale.numpy()), {"bytes": Answers([client.decode_png(png) for png in pngs]),
                                     "floats": Answers(list(sr))}


def rest_bytes(url: str, name: str, canaries: Canaries) -> Answers:
  with client.RestClient(url, name) as rest:
    return Answers([client.decode_png(png) for png in rest.predict(canaries.pngs)])


def grpc_bytes(target: str, name: str, canaries: Canaries) -> Answers:
  with client.GrpcClient(target, name) as grpc_client:
    return Answers([client.decode_png(png) for png in grpc_client.predict(canaries.pngs)])


def grpc_floats(target: str, name: str, canaries: Canaries) -> Answers:
  """The `upscale` signature over gRPC (superres_tfx.serving.client sends encoded images only)."""
  # pylint: disable=import-outside-toplevel
  import grpc
  from tensorflow_serving.apis import predict_pb2
  from tensorflow_serving.apis import prediction_service_pb2_grpc
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  request.model_spec.signature_name = names.FLOAT_SIGNATURE
  request.inputs[FLOAT_INPUT_KEY].CopyFrom(tf.make_tensor_proto(canaries.lr))
  with grpc.insecure_channel(target, options=[
      ("grpc.max_receive_message_length", client.MAX_GRPC_MESSAGE_BYTES)]) as channel:
    try:
      response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
          request, timeout=client.DEFAULT_TIMEOUT_SECONDS)
    except grpc.RpcError as error:
      raise client.ServingError(f"{target}: {error.code().name}: {error.details()}") from None
  if FLOAT_OUTPUT_KEY not in response.outputs:
    raise client.ServingError(f"{target}: the answer has no '{FLOAT_OUTPUT_KEY}' output "
                              f"(got {sorted(response.outputs)})")
  return Answers(list(tf.make_ndarray(response.outputs[FLOAT_OUTPUT_KEY])))


# Each way of asking: (name in reasons, what it is compared with, how it is sent).
REQUESTS: List[Tuple[str, str, Callable[..., Answers]]] = [
    ("REST bytes", "bytes", lambda server, name, c: rest_bytes(server.url, name, c)),
    ("gRPC bytes", "bytes", lambda server, name, c: grpc_bytes(server.target, name, c)),
    ("gRPC floats", "floats", lambda server, name, c: grpc_floats(server.target, name, c)),
]


def _as_float(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  return image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)


def compare(what: str, got: Answers, want: Answers, canaries: Canaries,
            scale: int) -> Tuple[float, Optional[str]]:
  """(max abs difference on the [0, 1] scale, the first problem or None)."""
  if len(got.images) != len(want.images):
    return float("inf"), (f"{what}: {len(got.images)} images answered for "
                          f"{len(want.images)} sent")
  worst = 0.0
  for i, (answer, reference) in enumerate(zip(got.images, want.images)):
    height, width = canaries.lr[i].shape[:2]
    shape = (height * scale, width * scale, 3)
    if tuple(np.shape(answer)) != shape:
      return float("inf"), (f"{what}: image {i} came back {list(np.shape(answer))} for a "
                            f"{height}x{width} input; expected {list(shape)} (x{scale})")
    worst = max(worst, float(np.max(np.abs(_as_float(answer) - _as_float(reference)))))
  if worst > TOLERANCE + 1e-6:
    return worst, (f"{what}: answers differ from the Trainer's model by up to {worst:.4f} "
                   f"({worst * 255:.1f} grey levels; at most 1 is allowed)")
  return worst, None
