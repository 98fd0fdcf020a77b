"""The model server's request limits: body size (413), batch size, and what stays reachable.

One real `python -m superres_tfx.serving` process with a small body limit and batch limit serves a
tiny model. Oversized bodies are refused without being held (the server's memory is
read from /proc), status calls stay quick while large predictions run, and only TF
Serving's REST API and /metrics answer: KServe's V2 and model-repository routes do not.
"""
import argparse
import base64
import json
import select
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from superres_tfx.serving import launcher
from tests import serving_harness
from tests.serving_harness import NAME, local, pixels_of, png, random_image, wait_for

if serving_harness.serving_environment_missing():
  pytest.skip(serving_harness.MISSING_ENVIRONMENT, allow_module_level=True)

MAX_BODY_BYTES = 4 * 1024 * 1024  # holds a LOAD_SIDE image's request
MAX_BATCH_SIZE = 2
HUGE_BODY_BYTES = 300 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
QUICK_413_SECONDS = 1.0
# The server's memory may grow by the bytes it reads before refusing (the limit), and by
# allocator noise; a body held whole would add HUGE_BODY_BYTES.
MEMORY_SLACK_BYTES = 32 * 1024 * 1024
LOAD_PREDICTIONS = 4  # the server's default --max-in-flight
LOAD_SIDE = 768  # a random PNG this size takes a second or more to upscale here
STATUS_SECONDS = 0.1
STATUS_PROBES = 20
JSON = {"content-type": "application/json"}
PHONE_PHOTO = (6120, 8160)  # height, width of a 50 MP phone camera's photo


def _body(*encoded: bytes, field: str = "instances") -> bytes:
  return json.dumps({field: [{"b64": base64.b64encode(e).decode()} for e in encoded]}).encode()


def _grpc_predict(server, tensor: tf.Tensor, input_key: str, signature: str = ""):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = NAME
  request.model_spec.signature_name = signature
  request.inputs[input_key].CopyFrom(tf.make_tensor_proto(tensor))
  with grpc.insecure_channel(server.target) as channel:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 30)


def _memory(pid: int) -> dict:
  """The process's resident memory and its peak, in bytes (/proc/PID/status)."""
  with open(f"/proc/{pid}/status") as f:
    fields = dict(line.split(":", 1) for line in f)
  return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}


def _reset_peak_memory(pid: int) -> None:
  with open(f"/proc/{pid}/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS (proc(5))


def _read_answer(sock: socket.socket):
  """The status line and body of the HTTP answer on `sock`."""
  answer = b""
  while b"\r\n\r\n" not in answer:
    data = sock.recv(65536)
    assert data, f"the server closed the connection; got {answer!r}"
    answer += data
  head, _, body = answer.partition(b"\r\n\r\n")
  length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:"))
  while len(body) < length:
    body += sock.recv(65536)
  return head.split(b"\r\n")[0].decode(), body


def _limit_error(response) -> str:
  assert response.status_code == 413, response.text
  error = response.json()["error"]
  assert f"limit of {MAX_BODY_BYTES} bytes (--max-body-bytes)" in error, error
  return error


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  return serving_harness.export_models(str(tmp_path_factory.mktemp("exported")), versions=(1,))


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
  with serving_harness.serving(models, tmp_path_factory, [
      "--max-body-bytes", str(MAX_BODY_BYTES), "--max-batch-size", str(MAX_BATCH_SIZE)]) as running:
    yield running


def test_limit_flags():
  parser = launcher.add_arguments(argparse.ArgumentParser())
  command = launcher.serving_command(parser.parse_args(
      ["--model-base", "m", "--max-body-bytes", "1000", "--max-batch-size", "3"]))
  assert command[command.index("--max-body-bytes") + 1] == "1000"
  assert command[command.index("--max-batch-size") + 1] == "3"
  for flag in ("--max-body-bytes", "--max-batch-size"):
    with pytest.raises(SystemExit):
      parser.parse_args(["--model-base", "m", flag, "0"])
  assert PHONE_PHOTO[0] * PHONE_PHOTO[1] <= launcher.DEFAULT_MAX_PIXELS


def test_predictions_within_the_limits(server, models):
  images = [png(random_image(24, 32, seed=seed)) for seed in range(MAX_BATCH_SIZE)]
  expected = [local(models, 1, image) for image in images]
  for field, answer_field in (("instances", "predictions"), ("inputs", "outputs")):
    for url in (server.predict_url, f"{server.url}/v1/models/{NAME}/versions/1:predict"):
      response = requests.post(url, data=_body(*images, field=field), headers=JSON, timeout=30)
      assert response.status_code == 200, response.text
      answers = response.json()[answer_field]
      assert len(answers) == MAX_BATCH_SIZE
      for answer, pixels in zip(answers, expected):
        np.testing.assert_array_equal(pixels_of(base64.b64decode(answer["b64"])), pixels)

  strings = _grpc_predict(server, tf.constant(images), "images").outputs["images"].string_val
  for answer, pixels in zip(strings, expected):
    np.testing.assert_array_equal(pixels_of(answer), pixels)
  lr = np.stack([random_image(8, 8, seed=seed) for seed in range(MAX_BATCH_SIZE)]) / 255.0
  sr = _grpc_predict(server, tf.constant(lr, tf.float32), "lr", "upscale").outputs["sr"]
  assert list(tf.make_ndarray(sr).shape) == [MAX_BATCH_SIZE, 16, 16, 3]


def test_declared_oversize_body_is_refused_before_it_is_sent(server):
  head = (f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
          f"Content-Type: application/json\r\nContent-Length: {HUGE_BODY_BYTES}\r\n\r\n").encode()
  with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
    started = time.perf_counter()
    sock.sendall(head)  # and no body at all
    status_line, body = _read_answer(sock)
    seconds = time.perf_counter() - started
  assert status_line.startswith("HTTP/1.1 413 "), status_line
  error = json.loads(body)["error"]
  assert f"({HUGE_BODY_BYTES} bytes) is over this server's limit of {MAX_BODY_BYTES}" in error
  assert "--max-body-bytes" in error
  print(f"413 for a declared {HUGE_BODY_BYTES} byte body after {seconds * 1000:.1f} ms")
  assert seconds < QUICK_413_SECONDS

  # An ordinary client sends the whole body, then reads the answer; either predict route.
  for url in (server.predict_url, f"{server.url}/v1/models/{NAME}/versions/1:predict"):
    _limit_error(requests.post(url, data=b"x" * (MAX_BODY_BYTES + 1), headers=JSON, timeout=30))


def test_chunked_oversize_body_is_refused_as_it_streams(server):
  """A 300 MB body without Content-Length: refused once past the limit, never held."""
  sent = 0

  def huge_body():
    nonlocal sent
    chunk = b"x" * CHUNK_BYTES
    while sent < HUGE_BODY_BYTES:
      sent += CHUNK_BYTES
      yield chunk

  before = _memory(server.pid)
  _reset_peak_memory(server.pid)
  with requests.Session() as session:
    started = time.perf_counter()
    error = _limit_error(session.post(server.predict_url, data=huge_body(), headers=JSON,
                                      timeout=60))
    seconds = time.perf_counter() - started
    # The server read the rest of the body and dropped it: the connection serves on.
    ok = session.post(server.predict_url, data=_body(png(random_image(8, 8, seed=1))),
                      headers=JSON, timeout=30)
  after = _memory(server.pid)
  assert sent == HUGE_BODY_BYTES and ok.status_code == 200, ok.text
  assert "the request body is over" in error
  print(f"chunked {HUGE_BODY_BYTES >> 20} MB body: 413 after {seconds:.2f} s (all sent); server "
        f"RSS {before['VmRSS'] >> 20} -> {after['VmRSS'] >> 20} MB, peak while refusing "
        f"{after['VmHWM'] >> 20} MB")
  assert after["VmHWM"] - before["VmRSS"] < MEMORY_SLACK_BYTES
  assert after["VmRSS"] - before["VmRSS"] < MEMORY_SLACK_BYTES


def test_chunked_refusal_comes_before_the_body_ends(server):
  """The 413 arrives while the client is still sending, soon after the limit."""
  head = (f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
          f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
  chunk = b"%x\r\n" % CHUNK_BYTES + b"x" * CHUNK_BYTES + b"\r\n"
  sent = 0
  with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
    sock.sendall(head)
    while sent < HUGE_BODY_BYTES and not select.select([sock], [], [], 0)[0]:
      sock.sendall(chunk)
      sent += CHUNK_BYTES
    status_line, _ = _read_answer(sock)
  assert status_line.startswith("HTTP/1.1 413 "), status_line
  print(f"413 after {sent >> 20} MB of a {HUGE_BODY_BYTES >> 20} MB chunked body was sent")
  # What the server read before refusing, plus what socket buffers held.
  assert sent < MAX_BODY_BYTES + 64 * CHUNK_BYTES


def test_batch_over_the_limit_is_refused(server):
  images = [png(random_image(8, 8, seed=seed)) for seed in range(MAX_BATCH_SIZE + 1)]
  too_many = f"{MAX_BATCH_SIZE + 1} images, over this server's limit of {MAX_BATCH_SIZE} " \
      f"per request (--max-batch-size)"
  for field in ("instances", "inputs"):
    response = requests.post(server.predict_url, data=_body(*images, field=field), headers=JSON,
                             timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == (
        f"{field}: {too_many}; send them in several requests or raise the limit")

  lr = np.zeros([MAX_BATCH_SIZE + 1, 8, 8, 3], np.float32)
  for tensor, input_key, signature in ((tf.constant(images), "images", ""),
                                       (tf.constant(lr), "lr", "upscale")):
    with pytest.raises(grpc.RpcError) as refused:
      _grpc_predict(server, tensor, input_key, signature)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"input '{input_key}': {too_many}" in refused.value.details()


def test_status_is_quick_while_large_predictions_run(server):
  body = _body(png(random_image(LOAD_SIDE, LOAD_SIDE, seed=2)))
  assert len(body) < MAX_BODY_BYTES
  stop = threading.Event()
  codes = []

  def predict_until_stopped():
    with requests.Session() as session:
      while not stop.is_set():
        codes.append(session.post(server.predict_url, data=body, headers=JSON,
                                  timeout=120).status_code)

  loaders = [threading.Thread(target=predict_until_stopped) for _ in range(LOAD_PREDICTIONS)]
  for loader in loaders:
    loader.start()
  seconds = []
  try:
    in_flight = "predict_in_flight"  # the server's, all models together
    wait_for(lambda: server.metrics()[in_flight] == LOAD_PREDICTIONS, 60,
             f"{LOAD_PREDICTIONS} predictions to run")
    with requests.Session() as session:
      for _ in range(STATUS_PROBES):
        for path in (f"/v1/models/{NAME}", f"/v1/models/{NAME}/metadata"):
          started = time.perf_counter()
          assert session.get(server.url + path, timeout=10).status_code == 200
          seconds.append(time.perf_counter() - started)
        time.sleep(0.02)
    still_running = server.metrics()[in_flight]
  finally:
    stop.set()
    for loader in loaders:
      loader.join()
  assert set(codes) == {200}, codes
  assert still_running >= 1, "the predictions ended before the status calls did"
  milliseconds = np.array(seconds) * 1000
  print(f"status and metadata during {LOAD_PREDICTIONS} predictions of {LOAD_SIDE}x{LOAD_SIDE}: "
        f"median {np.median(milliseconds):.1f} ms, 90th percentile "
        f"{np.percentile(milliseconds, 90):.1f} ms, max {milliseconds.max():.1f} ms")
  # Nothing on their path waits for a prediction (that would take seconds); the odd probe
  # may still wait for a CPU shared with the whole machine.
  assert np.percentile(seconds, 90) < STATUS_SECONDS, milliseconds


@pytest.mark.parametrize("method,path,status", [
    ("POST", f"/v2/repository/models/{NAME}/load", 404),
    ("POST", f"/v2/repository/models/{NAME}/unload", 404),
    ("POST", f"/v1/models/{NAME}:load", 405),
    ("POST", f"/v1/models/{NAME}:unload", 405),
    ("POST", f"/v2/models/{NAME}/infer", 404),
    ("GET", f"/v2/models/{NAME}", 404),
    ("GET", f"/v2/models/{NAME}/ready", 404),
    ("GET", "/v2/health/live", 404),
    ("GET", "/v2", 404),
    ("POST", f"/v1/models/{NAME}:explain", 405),
    ("GET", "/v1/models", 404),
    ("GET", "/", 404),
    ("GET", "/openapi.json", 404),
    ("GET", "/docs", 404),
])
def test_only_tf_serving_routes_are_reachable(server, method, path, status):
  response = requests.request(method, server.url + path, timeout=10)
  assert response.status_code == status, response.text
  error = response.json()["error"]
  assert error.startswith(f"{method} {path}: ") and "TF Serving's REST API" in error, error
  assert server.status().status_code == 200  # still served: nothing was unloaded


def test_documented_routes_answer(server):
  for path in (f"/v1/models/{NAME}", f"/v1/models/{NAME}/versions/1", f"/v1/models/{NAME}/metadata",
               f"/v1/models/{NAME}/versions/1/metadata", "/metrics"):
    assert requests.get(server.url + path, timeout=10).status_code == 200, path


def test_float_answer_too_large_for_grpc_is_refused_before_running(server):
  # 2400 x 2400 floats in (69 MB) would be 276 MB out at x2: over gRPC's message limit.
  lr = np.zeros([1, 2400, 2400, 3], np.float32)
  started = time.monotonic()
  with pytest.raises(grpc.RpcError) as refused:
    _grpc_predict(server, tf.constant(lr), "lr", "upscale")
  assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "over the 268435456-byte gRPC message limit" in refused.value.details()
  assert "send encoded images to 'serving_default'" in refused.value.details()
  assert time.monotonic() - started < 10  # refused, not run
