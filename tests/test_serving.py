"""The model server (`python -m superres_tfx.serving`) as a real process in the serving environment.

Two tiny ESPCN models with different weights are pushed as versions 1 and 2, so answers
tell the versions apart. Requests go through the project's client and through plain TF
Serving client code; answers are compared with local inference in this (pipeline)
environment. The server listens on free loopback ports and is stopped by its PID.
"""
import argparse
import base64
import concurrent.futures
import io
import os
import shutil
import subprocess
import sys
import threading
import time

from google.protobuf import text_format
import grpc
import numpy as np
from PIL import Image
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2
import yaml

from superres_tfx.core import names
from superres_tfx.pipeline import configs
from superres_tfx.serving import client
from superres_tfx.serving import launcher
from superres_tfx.inference import upscaling
from superres_tfx.inference import tiling
from tests import serving_harness
from tests.serving_harness import NAME, SERVING_PYTHON
from tests.serving_harness import local as _local
from tests.serving_harness import pixels_of as _pixels
from tests.serving_harness import png as _png
from tests.serving_harness import random_image as _random_image
from tests.serving_harness import wait_for as _wait_for

if serving_harness.serving_environment_missing():
  pytest.skip(serving_harness.MISSING_ENVIRONMENT, allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_PIXELS = 100 * 100  # small, so that the pixel limit and client tiling are cheap to test
TILE, MARGIN = 64, 16  # (64 + 2 * 16)^2 = 9216 pixels per tile: under MAX_PIXELS
POLL_SECONDS = 0.2
SWAP_TIMEOUT = 60


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  return serving_harness.export_models(str(tmp_path_factory.mktemp("exported")))


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
  with serving_harness.serving(models, tmp_path_factory, [
      "--poll-seconds", str(POLL_SECONDS), "--max-pixels", str(MAX_PIXELS)]) as running:
    yield running


def _served(server) -> int:
  available = [v for v, s in server.served_versions().items() if s["state"] == "AVAILABLE"]
  assert len(available) == 1, server.served_versions()
  return available[0]


def test_status_and_metadata(server):
  response = server.status()
  assert response.status_code == 200
  assert response.json()["model_version_status"][0] == {
      "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}

  with grpc.insecure_channel(server.target) as channel:
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": NAME}), 10)
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": NAME}, metadata_field=["signature_def"])
    metadata = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
        request, 10)
  signatures = get_model_metadata_pb2.SignatureDefMap()
  metadata.metadata["signature_def"].Unpack(signatures)
  assert metadata.model_spec.version.value == 1
  serving_default = signatures.signature_def[names.SERVING_SIGNATURE]
  assert serving_default.inputs["images"].dtype == tf.string.as_datatype_enum
  assert serving_default.outputs["images"].dtype == tf.string.as_datatype_enum
  assert signatures.signature_def[names.FLOAT_SIGNATURE].inputs["lr"].dtype == \
      tf.float32.as_datatype_enum

  rest_metadata = requests.get(f"{server.url}/v1/models/{NAME}/metadata", timeout=10).json()
  assert set(rest_metadata["metadata"]["signature_def"]["signature_def"]) == {
      names.SERVING_SIGNATURE, names.FLOAT_SIGNATURE}


def test_rest_and_grpc_equal_local_inference(server, models):
  version = _served(server)
  png = _png(_random_image(40, 56, seed=1))
  jpeg_buffer = io.BytesIO()
  Image.fromarray(_random_image(48, 32, seed=2)).save(jpeg_buffer, format="JPEG", quality=90)
  for encoded in (png, jpeg_buffer.getvalue()):
    expected = _local(models, version, encoded)
    assert expected.shape[:2] == (_pixels(encoded).shape[0] * 2, _pixels(encoded).shape[1] * 2)
    np.testing.assert_array_equal(_pixels(client.upscale_rest(server.url, NAME, encoded)), expected)
    np.testing.assert_array_equal(_pixels(client.upscale_grpc(server.target, NAME, encoded)),
                                  expected)

  # A version by number, and TF Serving's columnar form.
  with client.RestClient(server.url, NAME, version=version) as versioned:
    np.testing.assert_array_equal(_pixels(versioned.predict([png])[0]),
                                  _local(models, version, png))
  body = {"inputs": [{"b64": base64.b64encode(png).decode()}] * 2}
  outputs = requests.post(f"{server.url}/v1/models/{NAME}:predict", json=body, timeout=30).json()
  assert len(outputs["outputs"]) == 2
  np.testing.assert_array_equal(_pixels(base64.b64decode(outputs["outputs"][1]["b64"])),
                                _local(models, version, png))


def test_plain_tf_serving_client_code(server, models):
  """The request a TF Serving user writes, unchanged: make_tensor_proto + Predict."""
  version = _served(server)
  png = _png(_random_image(24, 24, seed=3))
  lr = _random_image(20, 28, seed=4).astype(np.float32)[np.newaxis] / 255.0
  with grpc.insecure_channel(server.target) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([png]))
    response = stub.Predict(request, 30.0)
    np.testing.assert_array_equal(_pixels(response.outputs["images"].string_val[0]),
                                  _local(models, version, png))
    assert response.model_spec.version.value == version

    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.model_spec.signature_name = "upscale"
    request.inputs["lr"].CopyFrom(tf.make_tensor_proto(lr))
    sr = tf.make_ndarray(stub.Predict(request, 30.0).outputs["sr"])
  np.testing.assert_allclose(sr, models[version][1].upscale(lr), atol=1e-5)


def test_large_images_go_in_tiles(server, models, tmp_path):
  version = _served(server)
  pixels = _random_image(120, 100, seed=5)  # 12000 pixels: over the server's limit
  assert pixels.shape[0] * pixels.shape[1] > MAX_PIXELS
  with pytest.raises(client.ServingError, match="over this server's limit") as refused:
    client.upscale_rest(server.url, NAME, _png(pixels))  # default tiles: one whole request
  assert refused.value.status == 400

  with client.RestClient(server.url, NAME) as rest, client.GrpcClient(server.target, NAME) as rpc:
    via_rest = _pixels(client.upscale_bytes(rest, _png(pixels), TILE, MARGIN))
    via_grpc = client.upscale_array(rpc, pixels, TILE, MARGIN)
  # Locally: the same tiles through the serving signature, stitched.
  expected = np.empty([240, 200, 3], np.uint8)
  for tile in tiling.tiles(120, 100, TILE, MARGIN):
    outer = tile.outer
    tiling.paste(expected, _local(models, version, _png(np.ascontiguousarray(
        pixels[outer.top:outer.bottom, outer.left:outer.right]))), tile, 2)
  np.testing.assert_array_equal(via_rest, expected)
  np.testing.assert_array_equal(via_grpc, expected)
  # And a whole-image float pass: the seams do not show. The float signature and the
  # encoded one may round a pixel value differently (different graphs), never more.
  whole = models[version][1].upscale(pixels.astype(np.float32) / 255.0)
  assert np.abs(np.round(whole * 255.0) - via_rest).max() <= 1

  # A file, read and written as `superres upscale` does locally.
  source = tmp_path / "small.png"
  Image.fromarray(_random_image(60, 80, seed=6)).save(source)
  with client.RestClient(server.url, NAME) as rest:
    assert client.upscale_file(str(source), str(tmp_path / "remote.png"), rest) == (120, 160)
  upscaling.upscale_file(str(source), str(tmp_path / "local.png"), models[version][0])
  remote, local = _pixels((tmp_path / "remote.png").read_bytes()), _pixels(
      (tmp_path / "local.png").read_bytes())
  assert np.abs(remote.astype(int) - local).max() <= 1
  with client.RestClient(server.url, NAME) as rest:
    with pytest.raises(client.ServingError, match="upscales by 2, not 3"):
      client.upscale_file(str(source), str(tmp_path / "x3.png"), rest, scale=3)


def _post(server, path: str, data: bytes, content_type="application/json"):
  headers = {"content-type": content_type} if content_type else {}
  return requests.post(f"{server.url}{path}", data=data, headers=headers, timeout=30)


def _b64_body(data: bytes) -> bytes:
  return ('{"instances": [{"b64": "%s"}]}' % base64.b64encode(data).decode()).encode()


@pytest.mark.parametrize("path,body,content_type,status,message", [
    (f"/v1/models/{NAME}:predict", b'{"instances": [', "application/json", 400,
     "Unrecognized request format"),
    (f"/v1/models/{NAME}:predict", b"instances=1", "application/x-www-form-urlencoded", 400,
     "not valid JSON"),
    (f"/v1/models/{NAME}:predict", b'{"instances": [{"b64": "not base64!"}]}', None, 400,
     "not valid base64"),
    (f"/v1/models/{NAME}:predict", b'{"instances": [{"image": "x"}]}', None, 400,
     'expected {"b64"'),
    (f"/v1/models/{NAME}:predict", _b64_body(b"plain text, not an image"), None, 400,
     "not an image"),
    (f"/v1/models/{NAME}:predict", _b64_body(_png(_random_image(120, 100, seed=7))), None, 400,
     "12000 pixels, over this server's limit of 10000"),
    (f"/v1/models/{NAME}:predict", _b64_body(_png(_random_image(30, 30, seed=8))[:200]), None,
     400, "cannot decode the image"),
    ("/v1/models/no-such-model:predict", _b64_body(b"x"), None, 404, "no-such-model"),
    (f"/v1/models/{NAME}/versions/99:predict", _b64_body(b"x"), None, 404,
     f"Servable not found for request: Specific({NAME}, 99)"),
])
def test_bad_rest_requests(server, path, body, content_type, status, message):
  response = _post(server, path, body, content_type)
  assert response.status_code == status, response.text
  assert message in response.json()["error"]
  # The server keeps serving.
  assert _post(server, f"/v1/models/{NAME}:predict",
               _b64_body(_png(_random_image(8, 8, seed=9)))).status_code == 200


def _grpc_request(images=None, name=NAME, version=None, signature="", tensor=None):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  request.inputs["images"].CopyFrom(tensor if tensor is not None else
                                    tf.make_tensor_proto(images, dtype=tf.string))
  return request


@pytest.mark.parametrize("request_,code,message", [
    (_grpc_request([b"plain text"]), grpc.StatusCode.INVALID_ARGUMENT, "not an image"),
    (_grpc_request([_png(_random_image(120, 100, seed=7))]), grpc.StatusCode.INVALID_ARGUMENT,
     "over this server's limit"),
    (_grpc_request(tensor=tf.make_tensor_proto([1.0, 2.0])), grpc.StatusCode.INVALID_ARGUMENT,
     "must be string"),
    (_grpc_request([b"x"], signature="classify"), grpc.StatusCode.INVALID_ARGUMENT,
     "not found in signature def"),
    (_grpc_request([b"x"], name="no-such-model"), grpc.StatusCode.NOT_FOUND,
     "Latest(no-such-model)"),
    (_grpc_request([b"x"], version=99), grpc.StatusCode.NOT_FOUND, f"Specific({NAME}, 99)"),
])
def test_bad_grpc_requests(server, request_, code, message):
  with grpc.insecure_channel(server.target) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as error:
      stub.Predict(request_, 30.0)
    assert error.value.code() == code
    assert message in error.value.details()
    ok = stub.Predict(_grpc_request([_png(_random_image(8, 8, seed=9))]), 30.0)
    assert len(ok.outputs["images"].string_val) == 1


def test_hot_swap_loses_no_request(server, models):
  assert _served(server) == 1
  png = _png(_random_image(24, 24, seed=10))
  expected = {version: _local(models, version, png) for version in (1, 2)}
  assert not np.array_equal(expected[1], expected[2])
  answers, errors, stop = [], [], threading.Event()

  def loop():
    with client.RestClient(server.url, NAME) as rest, client.GrpcClient(server.target, NAME) as rpc:
      deadline = time.monotonic() + SWAP_TIMEOUT + 30  # bounded even if the test fails
      while not stop.is_set() and time.monotonic() < deadline:
        for channel in (rest, rpc):
          try:
            answer = _pixels(channel.predict([png])[0])
          except Exception as error:  # pylint: disable=broad-except
            errors.append(repr(error))
            continue
          answers.append(next((v for v, e in expected.items() if np.array_equal(answer, e)), None))

  worker = threading.Thread(target=loop)
  worker.start()
  try:
    _wait_for(lambda: len(answers) >= 4, 30, "the first answers")
    base = server.base
    # A push in progress, as the Pusher does it: a hidden staging folder, saved_model.pb
    # last; then renamed into place.
    staging = os.path.join(base, ".incoming-2")
    shutil.copytree(models[2][0], staging, ignore=lambda directory, _: (
        [names.SAVED_MODEL_FILE] if directory == models[2][0] else []))
    time.sleep(5 * POLL_SECONDS)
    shutil.copy(os.path.join(models[2][0], names.SAVED_MODEL_FILE), staging)
    time.sleep(5 * POLL_SECONDS)
    assert set(server.served_versions()) == {1}, "a half-written or hidden version was loaded"
    seen = len(answers)
    os.rename(staging, os.path.join(base, "2"))
    _wait_for(lambda: 2 in answers[seen:], SWAP_TIMEOUT, "answers from version 2")
    switched = len(answers)
    _wait_for(lambda: len(answers) >= switched + 6, 30, "answers after the swap")
  finally:
    stop.set()
    worker.join()
  assert errors == []
  assert None not in answers, "an answer matched neither version"
  first_two = answers.index(2)
  assert set(answers[:first_two]) == {1} and set(answers[first_two:]) == {2}
  versions = server.served_versions()
  assert versions[2]["state"] == "AVAILABLE" and versions[1]["state"] == "END"
  # As TF Serving: the replaced version is no longer served.
  with client.RestClient(server.url, NAME, version=1) as old:
    with pytest.raises(client.ServingError) as gone:
      old.predict([png])
  assert gone.value.status == 404


def test_corrupt_version_is_ignored(server, models):
  served = _served(server)
  broken = os.path.join(server.base, str(served + 1))
  os.makedirs(os.path.join(broken, "variables"))
  with open(os.path.join(broken, names.SAVED_MODEL_FILE), "wb") as f:
    f.write(b"this is not a SavedModel")
  failed = _wait_for(lambda: server.served_versions().get(served + 1, {}).get("state") == "END"
                     and server.served_versions()[served + 1], 30, "the broken version to fail")
  assert failed["status"]["error_code"] != "OK" and failed["status"]["error_message"]
  assert _served(server) == served
  png = _png(_random_image(16, 16, seed=11))
  np.testing.assert_array_equal(_pixels(client.upscale_rest(server.url, NAME, png)),
                                _local(models, served, png))
  assert f"version {served + 1} failed to load" in server.log()


def test_load_run_has_no_errors(server, models):
  """300 requests, 4 at a time, REST and gRPC interleaved."""
  version = _served(server)
  png = _png(_random_image(32, 32, seed=12))
  expected = _local(models, version, png)
  local = threading.local()

  def one(i):
    if not hasattr(local, "clients"):
      local.clients = (client.RestClient(server.url, NAME), client.GrpcClient(server.target, NAME))
    return np.array_equal(_pixels(local.clients[i % 2].predict([png])[0]), expected)

  started = time.monotonic()
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    results = list(pool.map(one, range(300)))
  assert all(results), f"{results.count(False)} of 300 answers differ"
  assert time.monotonic() - started < 120


def test_launcher_and_rest_client_need_no_tensorflow():
  code = ("import sys; import superres_tfx.serving.launcher, superres_tfx.serving.client; "
          "print(sorted(m for m in ('tensorflow', 'kserve', 'grpc') if m in sys.modules))")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True, env=dict(os.environ, PYTHONPATH=ROOT))
  assert result.stdout.strip() == "[]"
  args = launcher.add_arguments(argparse.ArgumentParser()).parse_args(["--model-base", "m"])
  assert launcher.serving_command(args) == [
      SERVING_PYTHON, "-m", "superres_tfx.serving", "--model-base", os.path.abspath("m"),
      "--host", "127.0.0.1", "--rest-port", "8501", "--grpc-port", "8500",
      "--poll-seconds", "1.0", "--max-pixels", str(launcher.DEFAULT_MAX_PIXELS),
      "--max-body-bytes", str(launcher.DEFAULT_MAX_BODY_BYTES),
      "--max-batch-size", str(launcher.DEFAULT_MAX_BATCH_SIZE),
      "--max-request-memory", str(launcher.DEFAULT_MAX_REQUEST_MEMORY),
      "--max-in-flight", str(launcher.DEFAULT_MAX_IN_FLIGHT),
      "--max-queued", str(launcher.DEFAULT_MAX_QUEUED),
      "--queue-timeout-seconds", str(launcher.DEFAULT_QUEUE_TIMEOUT_SECONDS)]


MANIFESTS = os.path.join(ROOT, "kubeflow", "serving")


def _check_manifests(*paths):
  return subprocess.run([SERVING_PYTHON, "-m", "superres_tfx.serving.check_manifests", *paths],
                        cwd=ROOT, capture_output=True, text=True, check=False)


def test_manifests_validate(tmp_path):
  paths = sorted(os.path.join(MANIFESTS, name) for name in os.listdir(MANIFESTS))
  result = _check_manifests(*paths)
  assert result.returncode == 0, result.stdout + result.stderr
  assert f"{len(paths)} manifest files checked, 0 problems" in result.stdout

  # The checks have teeth: a misspelt field fails each kind.
  broken = []
  for name, good, bad in (("tf-serving.yaml", "readinessProbe", "readinesProbe"),
                          ("inference-service.yaml", "runtimeVersion", "runtimeVersoin")):
    with open(os.path.join(MANIFESTS, name)) as f:
      (tmp_path / name).write_text(f.read().replace(good, bad))
    broken.append(str(tmp_path / name))
  result = _check_manifests(*broken)
  assert result.returncode == 1
  assert "readinesProbe" in result.stdout and "runtimeVersoin: unknown field" in result.stdout

  # Both deployments serve every scale's model from its base directory under the Pusher's
  # serving directory, with the release the pipeline exports with.
  with open(os.path.join(MANIFESTS, "tf-serving.yaml")) as f:
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(f)}
  with open(os.path.join(MANIFESTS, "inference-service.yaml")) as f:
    services = list(yaml.safe_load_all(f))
  pod = documents["Deployment"]["spec"]["template"]["spec"]
  container = pod["containers"][0]
  config_file = next(a.split("=", 1)[1] for a in container["args"]
                     if a.startswith("--model_config_file="))
  assert os.path.dirname(config_file) == container["volumeMounts"][0]["mountPath"]
  assert pod["volumes"][0]["configMap"]["name"] == documents["ConfigMap"]["metadata"]["name"]
  listed = text_format.Parse(documents["ConfigMap"]["data"][os.path.basename(config_file)],
                             model_server_config_pb2.ModelServerConfig())
  names = [configs.model_name_for(scale) for scale in configs.SCALES]
  base_paths = {entry.name: entry.base_path for entry in listed.model_config_list.config}
  assert list(base_paths) == names
  assert all(base_paths[name].endswith("/serving/" + name) for name in names)
  assert {isvc["metadata"]["name"]: isvc["spec"]["predictor"]["tensorflow"]["storageUri"]
          for isvc in services} == base_paths
  assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{NAME}"
  with open(os.path.join(ROOT, "requirements", "pipeline.lock")) as f:
    pinned = next(line.split("==")[1].strip() for line in f
                  if line.startswith("tensorflow-serving-api=="))
  assert container["image"] == f"tensorflow/serving:{pinned}"
  assert {isvc["spec"]["predictor"]["tensorflow"]["runtimeVersion"] for isvc in services} == {
      pinned}
