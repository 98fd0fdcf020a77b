"""TF Serving's status and metadata messages, for the gRPC services and their REST twins."""
from typing import List, Optional

from google.protobuf import json_format
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import status_pb2

from superres_tfx.serving.versions import ServedVersion, VersionStatus

SIGNATURE_DEF_FIELD = "signature_def"  # the one metadata field TF Serving knows


def model_spec(name: str, version: Optional[int] = None,
               signature: str = "") -> model_pb2.ModelSpec:
  spec = model_pb2.ModelSpec(name=name, signature_name=signature)
  if version is not None:
    spec.version.value = version
  return spec


def not_found_text(name: str, version: Optional[int], reason) -> str:
  """TF Serving's answer to a request for a model or version it does not serve."""
  servable = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
  return f"Servable not found for request: {servable}: {reason}"


def model_status(statuses: List[VersionStatus]) -> get_model_status_pb2.GetModelStatusResponse:
  response = get_model_status_pb2.GetModelStatusResponse()
  for status in statuses:
    response.model_version_status.add(
        version=status.version,
        state=get_model_status_pb2.ModelVersionStatus.State.Value(status.state),
        status=status_pb2.StatusProto(
            error_code=error_codes_pb2.UNKNOWN if status.error else error_codes_pb2.OK,
            error_message=status.error))
  return response


def model_metadata(name: str,
                   served: ServedVersion) -> get_model_metadata_pb2.GetModelMetadataResponse:
  response = get_model_metadata_pb2.GetModelMetadataResponse(
      model_spec=model_spec(name, served.version))
  signatures = get_model_metadata_pb2.SignatureDefMap()
  for key, signature in served.signature_defs.items():
    if not key.startswith("__"):  # internal entries such as __saved_model_init_op
      signatures.signature_def[key].CopyFrom(signature)
  response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
  return response


def to_json(message) -> dict:
  """A message as TF Serving's REST API prints it: proto field names, defaults included."""
  return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                   always_print_fields_with_no_presence=True)


def metadata_json(name: str, served: ServedVersion) -> dict:
  """GET /v1/models/NAME/metadata: the Any of the gRPC answer unpacked, as TF Serving does."""
  response = model_metadata(name, served)
  signatures = get_model_metadata_pb2.SignatureDefMap()
  response.metadata[SIGNATURE_DEF_FIELD].Unpack(signatures)
  return {"model_spec": to_json(response.model_spec),
          "metadata": {SIGNATURE_DEF_FIELD: to_json(signatures)}}

