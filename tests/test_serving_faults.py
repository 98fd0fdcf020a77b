"""The model server under faults: floods, clients that vanish, versions removed, a kill.

One real `python -m superres_tfx.serving` process with small admission limits (2 running + 2
waiting) serves versions 1 and 2 of two tiny models with different weights. Admission
control itself is also checked in-process, where the timing can be forced.
"""
import base64
import concurrent.futures
import json
import os
import shutil
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from superres_tfx.serving import admission as admission_control
from superres_tfx.serving import client
from tests import serving_harness
from tests.serving_harness import NAME, Server, local, pixels_of, png, random_image, wait_for

if serving_harness.serving_environment_missing():
  pytest.skip(serving_harness.MISSING_ENVIRONMENT, allow_module_level=True)

MAX_IN_FLIGHT, MAX_QUEUED = 2, 2
CAPACITY = MAX_IN_FLIGHT + MAX_QUEUED
FLOOD_THREADS = 4 * CAPACITY
# Long enough that admitted requests never time out here: every refusal is a full server.
QUEUE_TIMEOUT_SECONDS = 30
POLL_SECONDS = 0.2
QUICK_REFUSAL_SECONDS = 0.1
WHOLE_REQUESTS_LEFT = 4  # per round, as many of each half-sent kind
GRPC_CALLS_LEFT = 3  # per round, cancelled and timed out each
FULL_LOAD_REQUESTS = 3 * CAPACITY
JSON = {"content-type": "application/json"}


def _body(encoded: bytes) -> bytes:
  return json.dumps({"instances": [{"b64": base64.b64encode(encoded).decode()}]}).encode()


def _grpc_request(encoded: bytes) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = NAME
  request.inputs["images"].CopyFrom(tf.make_tensor_proto([encoded], dtype=tf.string))
  return request


def _admission(server) -> dict:
  """In-flight, queued, completed and refused predictions from GET /metrics."""
  samples = server.metrics()
  return {
      "in_flight": samples["predict_in_flight"],
      "queued": samples["predict_queued"],
      "completed": samples["predict_completed_total"],
      "rejected": sum(samples[f'predict_rejected_total{{reason="{reason}"}}']
                      for reason in ("full", "queue_timeout")),
  }


def _idle(server) -> dict:
  """The admission counts once nothing runs or waits (requests of gone clients finish first)."""
  def idle():
    counts = _admission(server)
    return counts if counts["in_flight"] == counts["queued"] == 0 else None
  return wait_for(idle, 60, "in-flight and queued predictions to return to 0")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  return serving_harness.export_models(str(tmp_path_factory.mktemp("exported")))


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
  with serving_harness.serving(models, tmp_path_factory, [
      "--poll-seconds", str(POLL_SECONDS), "--max-in-flight", str(MAX_IN_FLIGHT),
      "--max-queued", str(MAX_QUEUED), "--queue-timeout-seconds", str(QUEUE_TIMEOUT_SECONDS)],
                               versions=(1, 2)) as running:
    yield running


# --- admission control in-process: the queue timeout and cancelled work -------------------

def test_admission_refuses_beyond_capacity_and_frees_every_slot():
  gate = threading.Event()
  admission = admission_control.Admission(1, 1, queue_timeout_seconds=0.2)
  running = admission.submit(gate.wait)
  queued = admission.submit(lambda: "ran")
  with pytest.raises(admission_control.Overloaded, match="at capacity"):
    admission.submit(lambda: "never")
  wait_for(lambda: admission.stats().in_flight == 1, 5, "the first to run")
  assert admission.stats().queued == 1
  time.sleep(0.3)  # the queued one waits past its timeout
  gate.set()
  assert running.result(5) is True
  with pytest.raises(admission_control.Overloaded, match="over the queue timeout"):
    queued.result(5)

  # Work cancelled before it starts (its client left) gives its slot back.
  gate.clear()
  blocker = admission.submit(gate.wait)
  abandoned = admission.submit(lambda: "never")
  assert abandoned.cancel()
  taken = admission.submit(lambda: "ran")
  gate.set()
  assert blocker.result(5) and taken.result(5) == "ran"
  stats = admission.stats()
  assert (stats.in_flight, stats.queued) == (0, 0)
  assert (stats.rejected_full, stats.rejected_timeout) == (1, 1)
  assert stats.completed == 3  # the two blockers and `taken`
  admission.shutdown()


# --- the real server -------------------------------------------------------------------

def test_flood_gets_429s_and_health_stays_up(server, models):
  image = png(random_image(96, 96, seed=1))
  before = _idle(server)
  local_sessions = threading.local()
  stop = threading.Event()

  def rest_call(_):
    if not hasattr(local_sessions, "session"):
      local_sessions.session = requests.Session()
    started = time.perf_counter()
    response = local_sessions.session.post(server.predict_url, data=_body(image), headers=JSON,
                                           timeout=60)
    return response, time.perf_counter() - started

  health = []

  def probe_health():
    with grpc.insecure_channel(server.target) as channel:
      status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
      while not stop.is_set():
        health.append(server.status().status_code)
        health.append(requests.get(f"{server.url}/v1/models/{NAME}/metadata",
                                   timeout=10).status_code)
        status_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": NAME}), 10)
        health.append("grpc-ok")
        time.sleep(0.05)

  prober = threading.Thread(target=probe_health)
  prober.start()
  try:
    with concurrent.futures.ThreadPoolExecutor(FLOOD_THREADS) as pool:
      answers = list(pool.map(rest_call, range(FLOOD_THREADS * 8)))
  finally:
    stop.set()
    prober.join()

  codes = [response.status_code for response, _ in answers]
  assert set(codes) <= {200, 429}, sorted(set(codes))
  assert codes.count(200) >= CAPACITY and codes.count(429) > 0, codes
  refused = [(response, seconds) for response, seconds in answers if response.status_code == 429]
  for response, _ in refused:
    assert response.headers["Retry-After"] == str(admission_control.RETRY_AFTER_SECONDS)
    assert "at capacity" in response.json()["error"]
  distinct = {response.json()["predictions"][0]["b64"] for response, _ in answers
              if response.status_code == 200}
  assert len(distinct) == 1
  np.testing.assert_array_equal(pixels_of(base64.b64decode(distinct.pop())),
                                local(models, max(models), image))
  assert health and set(health) == {200, "grpc-ok"}, health

  after = _idle(server)
  assert after["rejected"] - before["rejected"] == codes.count(429)
  assert after["completed"] - before["completed"] == codes.count(200)


def test_refusal_is_quick_while_every_slot_is_busy(server):
  """A refused request does not wait for capacity: it is answered while predictions run."""
  slow = _body(png(random_image(384, 384, seed=7)))
  probe = _body(png(random_image(16, 16, seed=8)))
  stop = threading.Event()

  def hold_a_slot():
    with requests.Session() as session:
      while not stop.is_set():
        session.post(server.predict_url, data=slow, headers=JSON, timeout=60)

  holders = [threading.Thread(target=hold_a_slot) for _ in range(CAPACITY)]
  for holder in holders:
    holder.start()
  refusals = []
  try:
    wait_for(lambda: _admission(server)["in_flight"] == MAX_IN_FLIGHT, 30, "every slot to be busy")
    with requests.Session() as session:
      for _ in range(30):
        started = time.perf_counter()
        response = session.post(server.predict_url, data=probe, headers=JSON, timeout=60)
        if response.status_code == 429:
          refusals.append(time.perf_counter() - started)
        time.sleep(0.02)
  finally:
    stop.set()
    for holder in holders:
      holder.join()
  assert len(refusals) >= 10, f"only {len(refusals)} of 30 probes were refused"
  print(f"refusals while full: median {np.median(refusals) * 1000:.1f} ms, "
        f"max {max(refusals) * 1000:.1f} ms")
  assert np.median(refusals) < QUICK_REFUSAL_SECONDS, refusals
  _idle(server)


def test_grpc_flood_gets_resource_exhausted(server):
  image = png(random_image(96, 96, seed=2))
  local_stubs = threading.local()

  def grpc_call(_):
    if not hasattr(local_stubs, "stub"):
      local_stubs.stub = prediction_service_pb2_grpc.PredictionServiceStub(
          grpc.insecure_channel(server.target))
    try:
      local_stubs.stub.Predict(_grpc_request(image), 60)
      return grpc.StatusCode.OK, ""
    except grpc.RpcError as error:
      return error.code(), error.details()

  with concurrent.futures.ThreadPoolExecutor(FLOOD_THREADS) as pool:
    results = list(pool.map(grpc_call, range(FLOOD_THREADS * 6)))
  codes = [code for code, _ in results]
  assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, results
  assert codes.count(grpc.StatusCode.OK) >= CAPACITY
  assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) > 0
  assert all("at capacity" in details for code, details in results if code != grpc.StatusCode.OK)
  _idle(server)


def _send(server, data: bytes) -> None:
  """Sends raw bytes on a new connection and closes it without reading an answer."""
  with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
    sock.sendall(data)


def _disconnecting_clients(server, big_image: bytes) -> int:
  """Clients that leave mid-request; returns how many gRPC calls they made."""
  body = _body(big_image)
  head = (f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
          f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
  for _ in range(WHOLE_REQUESTS_LEFT):  # half a body, or only the headers, then gone
    _send(server, head + body[:len(body) // 2])
    _send(server, head)
  for _ in range(WHOLE_REQUESTS_LEFT):  # the whole request, gone before the answer
    _send(server, head + body)
  with grpc.insecure_channel(server.target) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for _ in range(GRPC_CALLS_LEFT):  # cancelled, and out of time, while running or waiting
      stub.Predict.future(_grpc_request(big_image)).cancel()
      with pytest.raises(grpc.RpcError) as late:
        stub.Predict(_grpc_request(big_image), 0.02)
      # Out of time while running or waiting, or refused: the earlier ones may still run.
      assert late.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                   grpc.StatusCode.RESOURCE_EXHAUSTED)
  return 2 * GRPC_CALLS_LEFT


def _full_load(server, image: bytes, expected: bytes) -> None:
  """CAPACITY clients at once, REST and gRPC: all answered, none refused."""
  def one(i):
    channel = client.RestClient(server.url, NAME) if i % 2 else client.GrpcClient(server.target,
                                                                                  NAME)
    with channel:
      return [channel.predict([image])[0] == expected
              for _ in range(FULL_LOAD_REQUESTS // CAPACITY)]

  with concurrent.futures.ThreadPoolExecutor(CAPACITY) as pool:
    assert all(ok for answers in pool.map(one, range(CAPACITY)) for ok in answers)


def test_disconnecting_clients_leak_nothing(server):
  big = png(random_image(384, 384, seed=3))
  small = png(random_image(24, 24, seed=4))
  expected = client.upscale_rest(server.url, NAME, small)
  _full_load(server, small, expected)
  before = _idle(server)
  fds = server.open_fds()

  threads, grpc_calls = [], 0
  for _ in range(2):  # a leak of any kind would grow with the rounds
    grpc_calls += _disconnecting_clients(server, big)
    _idle(server)
    _full_load(server, small, expected)  # no slot is lost: CAPACITY clients, none refused
    wait_for(lambda: server.open_fds() <= fds, 30, f"open files to return to {fds}")
    threads.append(server.threads())
  server.check_running()
  assert threads[1] <= threads[0], threads
  after = _idle(server)
  # Every whole request ran or was refused; cancelled gRPC calls may not have arrived.
  accounted = (after["completed"] + after["rejected"]) - (before["completed"] + before["rejected"])
  expected_at_least = 2 * (WHOLE_REQUESTS_LEFT + FULL_LOAD_REQUESTS)
  assert expected_at_least <= accounted <= expected_at_least + grpc_calls
  assert "Traceback" not in server.log()


def _predict_forever(server, image, expected, answers, errors, stop):
  with client.RestClient(server.url, NAME) as rest, client.GrpcClient(server.target, NAME) as rpc:
    deadline = time.monotonic() + 90  # bounded even if the test fails
    while not stop.is_set() and time.monotonic() < deadline:
      for channel in (rest, rpc):
        try:
          answer = pixels_of(channel.predict([image])[0])
        except client.ServingError as error:
          errors.append(error)
          continue
        answers.append(next((v for v, e in expected.items() if np.array_equal(answer, e)), None))


def test_served_version_removed_while_serving(server, models):
  image = png(random_image(24, 24, seed=5))
  expected = {version: local(models, version, image) for version in models}
  big = png(random_image(512, 512, seed=9))
  assert set(server.served_versions()) == {2}
  answers, errors, stop = [], [], threading.Event()
  worker = threading.Thread(target=_predict_forever,
                            args=(server, image, expected, answers, errors, stop))
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    long_request = pool.submit(client.upscale_rest, server.url, NAME, big)
    try:
      wait_for(lambda: _admission(server)["in_flight"] >= 1, 30, "the long request to run")
      shutil.rmtree(os.path.join(server.base, "2"))
      worker.start()  # new requests from here on
      wait_for(lambda: server.served_versions().get(1, {}).get("state") == "AVAILABLE", 60,
               "version 1 to take over")
      switched = len(answers)
      wait_for(lambda: len(answers) >= switched + 6, 30, "answers from version 1")
    finally:
      stop.set()
      if worker.is_alive():
        worker.join()
    # The request running when its version's folder went is answered by that version.
    np.testing.assert_array_equal(pixels_of(long_request.result(60)), local(models, 2, big))
  assert errors == []
  assert None not in answers, "an answer matched neither version"
  # Version 2 from memory until version 1 has loaded, then version 1.
  assert answers == sorted(answers, reverse=True) and answers[-1] == 1, answers
  assert server.served_versions()[2]["state"] == "END"

  # The last version goes too: a clear 503 / UNAVAILABLE, never a crash.
  shutil.rmtree(os.path.join(server.base, "1"))
  wait_for(lambda: server.status().status_code == 503, 30, "the status to report no version")
  response = requests.post(server.predict_url, data=_body(image), headers=JSON, timeout=30)
  assert response.status_code == 503
  assert "version 1 was removed" in response.json()["error"]
  assert "no complete version is left" in response.json()["error"]
  status = server.status().json()
  assert "version 1 was removed" in status["error"]
  assert {s["state"] for s in status["model_version_status"]} == {"END"}
  assert requests.get(f"{server.url}/v1/models/{NAME}/metadata", timeout=10).status_code == 503
  with pytest.raises(client.ServingError) as unavailable:
    client.upscale_grpc(server.target, NAME, image)
  assert unavailable.value.status == grpc.StatusCode.UNAVAILABLE
  server.check_running()

  # A new push is served again.
  shutil.copytree(models[1][0], os.path.join(server.base, "3"))
  server.wait_ready(60)
  assert np.array_equal(pixels_of(client.upscale_rest(server.url, NAME, image)), expected[1])


def test_restart_after_kill(server, tmp_path):
  """SIGKILL leaves nothing that stops a new server on the same ports (the benchmark times it)."""
  image = png(random_image(24, 24, seed=6))
  before = client.upscale_rest(server.url, NAME, image)
  server.kill()
  killed_at = time.monotonic()
  restarted = Server(server.base, str(tmp_path / "restarted.log"), [
      "--max-in-flight", str(MAX_IN_FLIGHT), "--max-queued", str(MAX_QUEUED)],
                     rest_port=server.rest_port, grpc_port=server.grpc_port)
  try:
    def first_answer():
      restarted.check_running()
      try:
        return client.upscale_rest(restarted.url, NAME, image)
      except client.ServingError:
        return None
    answer = wait_for(first_answer, serving_harness.START_TIMEOUT, "the restarted server",
                      interval=0.05)
    print(f"first prediction {time.monotonic() - killed_at:.1f} s after SIGKILL")
    assert answer == before
    assert client.upscale_grpc(restarted.target, NAME, image) == before
    assert _idle(restarted)["completed"] == 2
  finally:
    assert restarted.stop() == 0, restarted.log()[-3000:]
