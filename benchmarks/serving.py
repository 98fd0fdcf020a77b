"""Throughput and latency of the model server, beside in-process calls, as JSON.

Starts `python -m serving` (the serving environment) on free loopback ports with one
model, then for 64x64 and 256x256 PNG inputs and concurrency 1 and 4 measures
requests/s and p50/p99 latency over REST, gRPC and in-process calls of the same
SavedModel's serving signature (this process, the pipeline's TensorFlow). Also the
server's resident memory with the model loaded (after warm-up) and at the end.

Then the faults: a flood at 4x the server's admission capacity (running + waiting
predictions, the launcher's defaults) over REST and gRPC, counting answers (200 vs
429 / OK vs RESOURCE_EXHAUSTED; anything else is an error) and timing the refusals;
and the time from SIGKILL to a restarted server's first prediction.

  python -m benchmarks.serving [--model DIR] [--requests 200] [--out serving.json]

Without --model it exports an untrained ESPCN of the default profile's largest size
(x2, width 64, depth 2), self-ensembled as that profile exports it: serving cost
depends on the network's size, not its weights.
"""
import argparse
import base64
import concurrent.futures
import http.client
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Callable, Dict, List

import numpy as np
from PIL import Image
import requests

from benchmarks import output
from benchmarks import ports
from pipeline import configs
from serving import client
from serving import launcher
from superres import inference

SIZES = (64, 256)
CONCURRENCY = (1, 4)
WARMUP_CALLS = 5
START_TIMEOUT = 180
FLOOD_FACTOR = 4  # flood concurrency, in multiples of the admission capacity
FLOOD_CALLS_PER_CLIENT = 20
FLOOD_SIDE = 64


def _png(side: int) -> bytes:
  pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024.0
  raise RuntimeError(f"no {field} for process {pid}")


def _percentiles_ms(seconds) -> Dict[str, float]:
  if len(seconds) == 0:
    return {}
  return {"p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 2),
          "p99_ms": round(float(np.percentile(seconds, 99)) * 1000, 2)}


def _measure(make_call: Callable[[], Callable[[], bytes]], requests_total: int,
             concurrency: int) -> Dict[str, float]:
  """make_call() gives one worker's call (each worker keeps its own connection)."""
  local = threading.local()

  def timed(_):
    if not hasattr(local, "call"):
      local.call = make_call()
      for _ in range(WARMUP_CALLS):
        local.call()
    start = time.perf_counter()
    local.call()
    return time.perf_counter() - start

  with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    list(pool.map(timed, range(concurrency)))  # connect and warm up every worker
    started = time.perf_counter()
    latencies = np.array(list(pool.map(timed, range(requests_total))))
    wall = time.perf_counter() - started
  return {"requests": requests_total, "requests_per_s": round(requests_total / wall, 1),
          **_percentiles_ms(latencies)}


def _flood(call: Callable[[], Callable[[], str]], clients: int) -> Dict[str, object]:
  """`clients` workers each make FLOOD_CALLS_PER_CLIENT calls back to back, ignoring
  Retry-After. A call returns "ok", "refused" or an error description."""
  local = threading.local()

  def timed(_):
    if not hasattr(local, "call"):
      local.call = call()
    start = time.perf_counter()
    try:
      outcome = local.call()
    except Exception as error:  # pylint: disable=broad-except
      outcome = f"{type(error).__name__}: {error}"[:200]
    return outcome, time.perf_counter() - start

  started = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    results = list(pool.map(timed, range(clients * FLOOD_CALLS_PER_CLIENT)))
  wall = time.perf_counter() - started
  by_outcome: Dict[str, List[float]] = {}
  for outcome, seconds in results:
    by_outcome.setdefault(outcome, []).append(seconds)
  ok, refused = by_outcome.pop("ok", []), by_outcome.pop("refused", [])
  return {"clients": clients, "requests": len(results), "answered": len(ok),
          "refused": len(refused), "errors": sum(len(v) for v in by_outcome.values()),
          "error_kinds": sorted(by_outcome)[:5],
          "answered_per_s": round(len(ok) / wall, 1),
          "answered_latency": _percentiles_ms(ok), "refused_latency": _percentiles_ms(refused)}


def _flood_calls(rest_port: int, target: str, image: bytes) -> Dict[str, Callable]:
  """Calls that report a refusal rather than raise. REST goes through http.client, whose
  small cost per call keeps 4x-capacity client threads from timing themselves."""
  body = json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]})
  path = f"/v1/models/{configs.MODEL_NAME}:predict"

  def rest():
    connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=60)

    def call() -> str:
      connection.request("POST", path, body=body, headers={"content-type": "application/json"})
      response = connection.getresponse()
      text = response.read()
      if response.status == 200:
        return "ok"
      if response.status == 429 and response.getheader("retry-after"):
        return "refused"
      return f"HTTP {response.status}: {text[:100]!r}"
    return call

  def grpc_():
    # pylint: disable=import-outside-toplevel
    import grpc
    grpc_client = client.GrpcClient(target)

    def call() -> str:
      try:
        grpc_client.predict([image])
      except client.ServingError as error:
        if error.status == grpc.StatusCode.RESOURCE_EXHAUSTED:
          return "refused"
        raise
      return "ok"
    return call

  return {"rest": rest, "grpc": grpc_}


def _start(args: argparse.Namespace, log) -> subprocess.Popen:
  # pylint: disable=consider-using-with
  return subprocess.Popen(launcher.serving_command(args), stdout=log, stderr=subprocess.STDOUT)


def _wait_until(process: subprocess.Popen, log, ready: Callable[[], bool]) -> None:
  deadline = time.monotonic() + START_TIMEOUT
  while True:
    if process.poll() is not None or time.monotonic() > deadline:
      raise RuntimeError(f"the server did not start; see {log.name}")
    try:
      if ready():
        return
    except (requests.ConnectionError, client.ServingError):
      pass
    time.sleep(0.05)


def _export_default_model(directory: str):
  """(version dir, description) of the stand-in model the module docstring describes."""
  # pylint: disable=import-outside-toplevel
  from components import export
  from components.models import registry
  profile = configs.PROFILES[configs.DEFAULT_PROFILE]
  scale, width, depth = configs.DEFAULT_SCALE, max(profile.widths), max(profile.depths)
  path = os.path.join(directory, "1")
  export.export_serving_model(registry.build_model("espcn", scale, width=width, depth=depth),
                              scale, path, self_ensemble=profile.self_ensemble)
  ensemble = ", self-ensembled" if profile.self_ensemble else ""
  return path, f"espcn x{scale} width {width} depth {depth}{ensemble} (untrained)"


def run(model: str, requests_total: int) -> dict:
  load_at_start = round(os.getloadavg()[0], 2)
  work = tempfile.mkdtemp(prefix="serving-bench-")
  process, log = None, None
  try:
    if model:
      version_dir = description = inference.resolve_model_dir(model)
    else:
      version_dir, description = _export_default_model(work)
    base = os.path.join(work, configs.MODEL_NAME)
    os.makedirs(base)
    os.symlink(version_dir, os.path.join(base, "1"))
    rest_port, grpc_port = ports.free_ports(2)
    args = launcher.add_arguments(argparse.ArgumentParser()).parse_args(
        ["--model-base", base, "--rest-port", str(rest_port), "--grpc-port", str(grpc_port)])
    # pylint: disable=consider-using-with
    log = open(os.path.join(work, "server.log"), "wb")
    process = _start(args, log)
    url, target = f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}"
    status_url = f"{url}/v1/models/{configs.MODEL_NAME}"
    _wait_until(process, log, lambda: requests.get(status_url, timeout=5).status_code == 200)
    local_model = inference.Upscaler(version_dir)

    def protocols(image: bytes) -> Dict[str, Callable[[], Callable[[], bytes]]]:
      def rest():
        channel = client.RestClient(url)
        return lambda: channel.predict([image])[0]

      def grpc_():
        channel = client.GrpcClient(target)
        return lambda: channel.predict([image])[0]

      return {"rest": rest, "grpc": grpc_,
              "in_process": lambda: lambda: local_model.upscale_bytes(image)}

    # One model loaded and warmed up: what a deployment holds between requests.
    client.upscale_rest(url, configs.MODEL_NAME, _png(SIZES[0]))
    rss_loaded = _rss_mb(process.pid)
    results: List[dict] = []
    for side in SIZES:
      image = _png(side)
      count = requests_total if side <= 64 else max(requests_total // 4, 20)
      for concurrency in CONCURRENCY:
        for protocol, make_call in protocols(image).items():
          row = {"input": f"{side}x{side}", "protocol": protocol, "concurrency": concurrency}
          row.update(_measure(make_call, count, concurrency))
          results.append(row)
          print(json.dumps(row), flush=True)
    rss_mb = {"one_model_loaded": round(rss_loaded, 1),
              "after_benchmark": round(_rss_mb(process.pid), 1),
              "peak": round(_rss_mb(process.pid, "VmHWM"), 1)}

    capacity = args.max_in_flight + args.max_queued
    flood = {"admission": {"max_in_flight": args.max_in_flight, "max_queued": args.max_queued,
                           "queue_timeout_seconds": args.queue_timeout_seconds},
             "input": f"{FLOOD_SIDE}x{FLOOD_SIDE}"}
    for protocol, call in _flood_calls(rest_port, target, _png(FLOOD_SIDE)).items():
      flood[protocol] = _flood(call, FLOOD_FACTOR * capacity)
      print(json.dumps({"flood": protocol, **flood[protocol]}), flush=True)

    # An out-of-memory kill or a lost node, then the same command again.
    os.kill(process.pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    process.wait()
    process = _start(args, log)
    recover = {}
    _wait_until(process, log, lambda: requests.get(status_url, timeout=5).status_code == 200)
    recover["status_ready_s"] = round(time.perf_counter() - killed_at, 2)
    _wait_until(process, log,
                lambda: bool(client.upscale_rest(url, configs.MODEL_NAME, _png(SIZES[0]))))
    recover["first_prediction_s"] = round(time.perf_counter() - killed_at, 2)
    print(json.dumps({"recover_after_kill": recover}), flush=True)
    return {
        "model": description,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    # Other work on the machine moves every figure here.
                    "load_average_1m": {"start": load_at_start,
                                        "end": round(os.getloadavg()[0], 2)}},
        "server_rss_mb": rss_mb,
        "results": results,
        "flood": flood,
        "recover_after_kill": recover,
    }
  finally:
    if process is not None and process.poll() is None:
      os.kill(process.pid, signal.SIGTERM)
      try:
        process.wait(30)
      except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    if log is not None:
      log.close()
    shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", help="a pushed version or serving directory (default: an "
                      "untrained ESPCN of the default profile's size)")
  parser.add_argument("--requests", type=int, default=200,
                      help="requests per 64x64 measurement (256x256: a quarter)")
  parser.add_argument("--out", help="also write the JSON here")
  args = parser.parse_args(argv)
  output.emit(run(args.model, args.requests), args.out)


if __name__ == "__main__":
  main()
