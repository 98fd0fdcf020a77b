"""TF Serving's gRPC API: PredictionService (Predict, GetModelMetadata) and
ModelService.GetModelStatus, with the messages of tensorflow-serving-api, so TF Serving
client code works unchanged. model_spec.name picks one of the registry's models
(serving.models), model_spec.version one of its served versions (else the newest).

Predict serves both signatures: `serving_default` (input "images", DT_STRING [N]) and
`upscale` (input "lr", DT_FLOAT [N, H, W, 3]). Its model work goes through the same
admission control as REST's: RESOURCE_EXHAUSTED when the server is full. N is held to
--max-batch-size, as REST's instances are.
"""
from concurrent import futures
from typing import Optional

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from superres_tfx.core import names
from superres_tfx.serving import admission as admission_control
from superres_tfx.serving import messages
from superres_tfx.serving import predict
from superres_tfx.serving import protocol
from superres_tfx.serving.models import ModelNotFound, ModelRegistry
from superres_tfx.serving.versions import NoVersionAvailable, ServedVersion, VersionNotFound

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
FLOAT_BYTES = 4
# Threads beyond those admitted predictions can hold, so that refusals, status and
# metadata calls are answered at once while predictions run and wait.
SPARE_THREADS = 4


def _version(spec) -> Optional[int]:
  return spec.version.value if spec.HasField("version") else None


class _Base:

  def __init__(self, models: ModelRegistry, max_pixels: int,
               admission: Optional[admission_control.Admission] = None):
    self.models = models
    self.max_pixels = max_pixels
    self.admission = admission

  def _served(self, spec, context) -> ServedVersion:
    if spec.version_label:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                    "version labels are not supported; give a version number, or none for "
                    "the newest")
    try:
      return self.models.served(spec.name, _version(spec))
    except (ModelNotFound, VersionNotFound) as error:
      context.abort(grpc.StatusCode.NOT_FOUND,
                    messages.not_found_text(spec.name, _version(spec), error))
    except NoVersionAvailable as error:
      context.abort(grpc.StatusCode.UNAVAILABLE, str(error))


class PredictionService(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):

  def __init__(self, models: ModelRegistry, max_pixels: int,
               admission: admission_control.Admission, max_batch_size: int):
    super().__init__(models, max_pixels, admission)
    self.max_batch_size = max_batch_size

  def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
    served = self._served(request.model_spec, context)
    signature = request.model_spec.signature_name or names.SERVING_SIGNATURE
    response = predict_pb2.PredictResponse(
        model_spec=messages.model_spec(request.model_spec.name, served.version, signature))
    try:
      if signature == names.SERVING_SIGNATURE:
        input_key, output_key = protocol.INPUT_KEY, protocol.OUTPUT_KEY
        images = list(self._input(request, input_key, tf.string, 1))

        def run():
          # Each PNG goes straight into the answer, so a large one is not copied twice.
          tensor = response.outputs[output_key]
          tensor.dtype = tf.string.as_datatype_enum
          tensor.tensor_shape.dim.add(size=len(images))
          for png in predict.png_streams(served, images, self.max_pixels, input_key):
            tensor.string_val.append(b"".join(png))
      elif signature == names.FLOAT_SIGNATURE:
        input_key, output_key = protocol.FLOAT_INPUT_KEY, protocol.FLOAT_OUTPUT_KEY
        lr = self._input(request, input_key, tf.float32, 4)
        _check_float_answer_fits(lr.shape, served.upscaler.scale, output_key)

        def run():
          response.outputs[output_key].CopyFrom(
              tf.make_tensor_proto(predict.upscale_float(served, lr, self.max_pixels)))
      else:
        raise protocol.BadRequest(
            f"Serving signature name: \"{signature}\" not found in signature def; this model "
            f"serves \"{names.SERVING_SIGNATURE}\" and \"{names.FLOAT_SIGNATURE}\"")
      unknown = set(request.output_filter) - {output_key}
      if unknown:
        raise protocol.BadRequest(f"output_filter names {sorted(unknown)}; signature "
                                  f"'{signature}' has only the output '{output_key}'")
      self._admitted(run, context)
    except protocol.BadRequest as error:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    except admission_control.Overloaded as error:
      context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
    return response

  def _admitted(self, run, context):
    """run() through admission control; work not yet started is dropped if the client leaves."""
    future = self.admission.submit(run)
    context.add_callback(future.cancel)  # called when the RPC ends, however it ends
    try:
      return future.result()
    except futures.CancelledError:
      context.abort(grpc.StatusCode.CANCELLED, "the client cancelled the request")

  def _input(self, request, key: str, dtype: tf.DType, rank: int):
    extra = set(request.inputs) - {key}
    if key not in request.inputs or extra:
      raise protocol.BadRequest(f"expected exactly one input '{key}', got {sorted(request.inputs)}")
    proto = request.inputs[key]
    if proto.dtype != dtype.as_datatype_enum:
      raise protocol.BadRequest(f"input '{key}' must be {dtype.name}, got "
                                f"{tf.dtypes.as_dtype(proto.dtype).name}")
    try:
      array = tf.make_ndarray(proto)
    except (ValueError, TypeError) as error:
      raise protocol.BadRequest(f"input '{key}' is not a valid tensor ({error})") from None
    if array.ndim != rank:
      raise protocol.BadRequest(
          f"input '{key}' must have rank {rank}, got shape {list(array.shape)}")
    if array.shape[0] == 0:
      raise protocol.BadRequest(f"input '{key}' holds no images")
    protocol.check_batch(array.shape[0], f"input '{key}'", self.max_batch_size)
    return array

  def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
    served = self._served(request.model_spec, context)
    unknown = set(request.metadata_field) - {messages.SIGNATURE_DEF_FIELD}
    if unknown or not request.metadata_field:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                    f"metadata_field must be ['{messages.SIGNATURE_DEF_FIELD}'], got "
                    f"{list(request.metadata_field)}")
    return messages.model_metadata(request.model_spec.name, served)


class ModelService(_Base, model_service_pb2_grpc.ModelServiceServicer):

  def GetModelStatus(self, request, context):
    spec = request.model_spec
    version = _version(spec)
    try:
      statuses = self.models.get(spec.name, version).statuses()
    except ModelNotFound as error:
      context.abort(grpc.StatusCode.NOT_FOUND,
                    f"Could not find any versions of model {spec.name}: {error}")
    if version is not None:
      statuses = [status for status in statuses if status.version == version]
    if not statuses:
      what = f"version {version} of model {spec.name}" if version is not None else \
          f"any versions of model {spec.name}"
      context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find {what}")
    return messages.model_status(statuses)


def _check_float_answer_fits(shape, scale: int, output_key: str) -> None:
  """Refuses, before any work, a float batch whose answer could not be sent back."""
  count, height, width, channels = shape
  answer_bytes = count * height * scale * width * scale * channels * FLOAT_BYTES
  if answer_bytes > MAX_MESSAGE_BYTES:
    raise protocol.BadRequest(
        f"output '{output_key}' would be {count}x{height * scale}x{width * scale}x{channels} "
        f"floats ({answer_bytes} bytes), over the {MAX_MESSAGE_BYTES}-byte gRPC message limit; "
        f"send encoded images to '{names.SERVING_SIGNATURE}' (PNG answers are ~10x smaller) "
        f"or smaller tiles")


def build_server(models: ModelRegistry, max_pixels: int, host: str, port: int,
                 admission: admission_control.Admission, max_batch_size: int) -> grpc.Server:
  """A started-to-be gRPC server bound to host:port (raises RuntimeError if the port is taken)."""
  server = grpc.server(
      futures.ThreadPoolExecutor(max_workers=admission.capacity + SPARE_THREADS,
                                 thread_name_prefix="grpc"),
      options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               ("grpc.so_reuseport", 0)])
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionService(models, max_pixels, admission, max_batch_size), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      ModelService(models, max_pixels), server)
  address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
  server.add_insecure_port(address)
  return server
