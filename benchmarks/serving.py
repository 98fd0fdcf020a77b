"""Throughput and latency of the model server, beside in-process calls, as JSON.

Starts `python -m superres_tfx.serving` (the serving environment) on free loopback ports with one
model, then for 64x64 and 256x256 PNG inputs and concurrency 1 and 4 measures
requests/s and p50/p99 latency over REST, gRPC and in-process calls of the same
SavedModel's serving signature (this process, the pipeline's TensorFlow). Also the
server's resident memory with the model loaded (after warm-up) and at the end.

Then the faults: a flood at 4x the server's admission capacity (running + waiting
predictions, the launcher's defaults) over REST and gRPC, counting answers (200 vs
429 / OK vs RESOURCE_EXHAUSTED; anything else is an error) and timing the refusals;
and the time from SIGKILL to a restarted server's first prediction.

Then the speed section: what the CPU time buys against what this machine can do. A
probe (benchmarks.hardware) measures float32 multiply-adds per second of a matmul and of
a 3x3 convolution, with this process's TensorFlow and with the server's. Every x2
network the served profiles (default, quality) can export, and the default profile's
largest at x3 and x4, is exported untrained, single pass and self-ensembled, and pushed
to a running server as a new version; for each, on a SPEED_SIDE PNG: multiply-adds per
output pixel (registry.multiply_adds_per_output_pixel, as benchmarks/quality.py counts
them) and CPU and wall ms per output megapixel in-process (float signature and
serving_default), over REST and over gRPC (the server process's CPU time), with the
multiply-adds per CPU second as a fraction of the probes'. Last, tuning trials, each in
a fresh process with the server's Python (benchmarks.speed_trial): TensorFlow's
intra/inter-op threads, TF_ENABLE_ONEDNN_OPTS=0, XLA (jit_compile and auto-clustering),
concurrent callers and tiles batched or one at a time, as changes in CPU and wall ms
per output megapixel.

  python -m benchmarks.serving [--model DIR] [--requests 200] [--only serving|speed]
      [--out serving.json]

Without --model it exports an untrained ESPCN of the default profile's largest size
(x2, width 64, depth 2), self-ensembled as that profile exports it: serving cost
depends on the network's size, not its weights. The speed section exports its own
networks and ignores --model; `--only speed` runs it alone, in about ten minutes on two
cores.
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
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image
import requests

from benchmarks import hardware
from benchmarks import output
from benchmarks import process_memory
from benchmarks import ports
from superres_tfx.pipeline import configs
from superres_tfx.serving import client
from superres_tfx.serving import launcher
from superres_tfx.inference import upscaling

SIZES = (64, 256)
CONCURRENCY = (1, 4)
WARMUP_CALLS = 5
START_TIMEOUT = 180
FLOOD_FACTOR = 4  # flood concurrency, in multiples of the admission capacity
FLOOD_CALLS_PER_CLIENT = 20
FLOOD_SIDE = 64
SECTIONS = ("serving", "speed")


def _png(side: int) -> bytes:
  pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


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


def server_args(base: str, *options: str) -> argparse.Namespace:
  """The server's options for `base` on free loopback ports."""
  rest_port, grpc_port = ports.free_ports(2)
  return launcher.add_arguments(argparse.ArgumentParser()).parse_args(
      ["--model-base", base, "--rest-port", str(rest_port), "--grpc-port", str(grpc_port),
       *options])


def start_server(args: argparse.Namespace, log) -> subprocess.Popen:
  # pylint: disable=consider-using-with
  return subprocess.Popen(launcher.serving_command(args), stdout=log, stderr=subprocess.STDOUT)


def wait_until(process: subprocess.Popen, log, ready: Callable[[], bool]) -> None:
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


def stop_server(process) -> None:
  if process is not None and process.poll() is None:
    os.kill(process.pid, signal.SIGTERM)
    try:
      process.wait(30)
    except subprocess.TimeoutExpired:
      os.kill(process.pid, signal.SIGKILL)
      process.wait()


def _machine(load_at_start: float) -> dict:
  return {"cpus": os.cpu_count(), "python": platform.python_version(),
          "platform": platform.platform(),
          # Other work on the machine moves every figure here.
          "load_average_1m": {"start": load_at_start, "end": round(os.getloadavg()[0], 2)}}


def stand_in_network():
  """(architecture, scale, width, depth, self_ensemble) of the default profile's largest
  network, as that profile exports it."""
  profile = configs.PROFILES[configs.DEFAULT_PROFILE]
  return ("espcn", configs.DEFAULT_SCALE, max(profile.widths), max(profile.depths),
          profile.self_ensemble)


def export_stand_in_model(directory: str):
  """(version dir, description) of the stand-in model the module docstring describes."""
  # pylint: disable=import-outside-toplevel
  from superres_tfx.components import export
  from superres_tfx.components.models import registry
  architecture, scale, width, depth, self_ensemble = stand_in_network()
  path = os.path.join(directory, "1")
  export.export_serving_model(registry.build_model(architecture, scale, width=width, depth=depth),
                              scale, path, self_ensemble=self_ensemble)
  ensemble = ", self-ensembled" if self_ensemble else ""
  return path, f"{architecture} x{scale} width {width} depth {depth}{ensemble} (untrained)"


def run(model: str, requests_total: int) -> dict:
  load_at_start = round(os.getloadavg()[0], 2)
  work = tempfile.mkdtemp(prefix="serving-bench-")
  process, log = None, None
  try:
    if model:
      version_dir = description = upscaling.resolve_model_dir(model)
    else:
      version_dir, description = export_stand_in_model(work)
    base = os.path.join(work, configs.MODEL_NAME)
    os.makedirs(base)
    os.symlink(version_dir, os.path.join(base, "1"))
    args = server_args(base)
    # pylint: disable=consider-using-with
    log = open(os.path.join(work, "server.log"), "wb")
    process = start_server(args, log)
    url, target = f"http://127.0.0.1:{args.rest_port}", f"127.0.0.1:{args.grpc_port}"
    status_url = f"{url}/v1/models/{configs.MODEL_NAME}"
    wait_until(process, log, lambda: requests.get(status_url, timeout=5).status_code == 200)
    local_model = upscaling.Upscaler(version_dir)

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
    rss_loaded = process_memory.status_mb(process.pid)
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
              "after_benchmark": round(process_memory.status_mb(process.pid), 1),
              "peak": round(process_memory.status_mb(process.pid, "VmHWM"), 1)}

    capacity = args.max_in_flight + args.max_queued
    flood = {"admission": {"max_in_flight": args.max_in_flight, "max_queued": args.max_queued,
                           "queue_timeout_seconds": args.queue_timeout_seconds},
             "input": f"{FLOOD_SIDE}x{FLOOD_SIDE}"}
    for protocol, call in _flood_calls(args.rest_port, target, _png(FLOOD_SIDE)).items():
      flood[protocol] = _flood(call, FLOOD_FACTOR * capacity)
      print(json.dumps({"flood": protocol, **flood[protocol]}), flush=True)

    # An out-of-memory kill or a lost node, then the same command again.
    os.kill(process.pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    process.wait()
    process = start_server(args, log)
    recover = {}
    wait_until(process, log, lambda: requests.get(status_url, timeout=5).status_code == 200)
    recover["status_ready_s"] = round(time.perf_counter() - killed_at, 2)
    wait_until(process, log,
                lambda: bool(client.upscale_rest(url, configs.MODEL_NAME, _png(SIZES[0]))))
    recover["first_prediction_s"] = round(time.perf_counter() - killed_at, 2)
    print(json.dumps({"recover_after_kill": recover}), flush=True)
    return {
        "model": description,
        "machine": _machine(load_at_start),
        "server_rss_mb": rss_mb,
        "results": results,
        "flood": flood,
        "recover_after_kill": recover,
    }
  finally:
    stop_server(process)
    if log is not None:
      log.close()
    shutil.rmtree(work, ignore_errors=True)


# --only speed: CPU cost per output megapixel beside this machine's measured throughput.
SPEED_SIDE = 256  # input pixels per side: 0.26 MP out at x2, minutes for the whole section
SPEED_PROFILES = ("default", "quality")  # the profiles whose models are served
SPEED_POLL_SECONDS = 0.2  # the server picks up each measured network as a new version
VERSION_STAGING = ".incoming"  # exported beside the versions, then renamed in whole
TUNED_VARIABLES = ("TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS")  # unset unless a trial sets them
XLA_COMPILED_LOG = "Compiled cluster using XLA"  # TensorFlow's log line once XLA has run
CORES = str(os.cpu_count())
# name, environment, benchmarks.speed_trial options; each trial is a fresh server-side
# process. TensorFlow's defaults already give both thread pools one thread per core.
DEFAULTS, DEFAULTS_AGAIN = "defaults", "defaults, again"
TUNING_TRIALS = (
    (DEFAULTS, {}, ("--extras",)),
    (f"intra_op {CORES}, inter_op 1", {}, ("--intra-op", CORES, "--inter-op", "1")),
    ("intra_op 1, inter_op 1", {}, ("--intra-op", "1", "--inter-op", "1")),
    ("TF_ENABLE_ONEDNN_OPTS=0", {"TF_ENABLE_ONEDNN_OPTS": "0"}, ()),
    ("TF_XLA_FLAGS=--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit",
     {"TF_XLA_FLAGS": "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"}, ()),
    # Last: the baseline is the mean of both default runs (load drifts over the trials),
    # and their difference is how far the machine's noise alone moves a figure.
    (DEFAULTS_AGAIN, {}, ()),
)
SPEED_NOTES = {
    "cpu_ms_per_output_mp": "CPU milliseconds per output megapixel, median of rounds: this "
                            "process's CPU for in_process*, the server process's (/proc "
                            "utime+stime, all threads) for rest and grpc",
    "in_process_float": "the `upscale` signature on float pixels: the network alone",
    "in_process": "the `serving_default` signature on PNG bytes, as TF Serving runs it",
    "gmac_per_cpu_s": "counted multiply-adds (convolutions only) per CPU second",
    "fraction_of_matmul": "gmac_per_cpu_s over the probe's tf_matmul gmac_per_cpu_s, probed "
                          "with the TensorFlow that ran the path (fraction_of_conv: tf_conv3x3)",
    "cores_busy": "a probe's CPU seconds per wall second: below threads_working when other "
                  "work shares the cores",
    "tuning": "CPU and wall ms per output MP of the float signature, one caller and "
              "concurrent callers; changes in percent against the defaults trial, negative "
              "is cheaper or faster. Wall figures move with other work on the machine",
}


def _serving_env_run(module: str, *options: str, env=None) -> subprocess.CompletedProcess:
  """`python -m module` with the server's Python and TensorFlow."""
  return subprocess.run([launcher.serving_python(), "-m", module, *options], cwd=launcher.ROOT,
                        env=env, capture_output=True, text=True, check=True)


def _speed_networks() -> List[dict]:
  """Every x2 network the served profiles can export, then the stand-in at the other scales."""
  networks: List[dict] = []
  for name in SPEED_PROFILES:
    profile = configs.PROFILES[name]
    for architecture in profile.architectures:
      for width in profile.widths:
        for depth in profile.depths:
          key = (architecture, configs.DEFAULT_SCALE, width, depth)
          known = next((n for n in networks if n["key"] == key), None)
          if known:
            known["profiles"].append(name)
          else:
            networks.append({"key": key, "profiles": [name]})
  architecture, scale, width, depth, _ = stand_in_network()
  for other in configs.SCALES:
    if other != scale:
      networks.append({"key": (architecture, other, width, depth),
                       "profiles": [configs.DEFAULT_PROFILE]})
  return networks


def _push_version(base: str, version: int, model, scale: int, self_ensemble: bool) -> str:
  """Exports `model` as the next version; the rename makes it appear whole."""
  # pylint: disable=import-outside-toplevel
  from superres_tfx.components import export
  staging = os.path.join(base, f"{VERSION_STAGING}-{version}")
  export.export_serving_model(model, scale, staging, self_ensemble=self_ensemble)
  path = os.path.join(base, str(version))
  os.rename(staging, path)
  return path


def _wait_for_version(process, log, url: str, version: int) -> None:
  def serves_it() -> bool:
    with client.RestClient(url, version=version) as channel:
      return bool(channel.predict([_png(8)]))
  wait_until(process, log, serves_it)


def _costs(rounds, output_pixels: int, macs_per_pixel: float, probe: dict) -> Dict[str, float]:
  """`probe`: of the TensorFlow that ran the calls."""
  cpu_s, wall_s = (hardware.median_per_call(rounds, field) for field in ("cpu_s", "wall_s"))
  gmacs = macs_per_pixel * output_pixels / hardware.GIGA
  per_mp = 1000.0 * 1e6 / output_pixels
  return {"cpu_ms_per_output_mp": round(cpu_s * per_mp, 1),
          "wall_ms_per_output_mp": round(wall_s * per_mp, 1),
          "gmac_per_cpu_s": round(gmacs / cpu_s, 1),
          "fraction_of_matmul": round(gmacs / cpu_s / probe["tf_matmul"]["gmac_per_cpu_s"], 3),
          "fraction_of_conv": round(gmacs / cpu_s / probe["tf_conv3x3"]["gmac_per_cpu_s"], 3)}


def _path_costs(version_dir: str, scale: int, macs_per_pixel: float, channels: dict,
                server_pid: int, probes: dict) -> Dict[str, dict]:
  """The four ways to run one version on the same SPEED_SIDE input."""
  image = _png(SPEED_SIDE)
  lr = np.asarray(Image.open(io.BytesIO(image)), np.float32)[np.newaxis] / 255.0
  local = upscaling.Upscaler(version_dir)
  server_cpu = lambda: hardware.process_cpu_seconds(server_pid)
  calls = {
      "in_process_float": (lambda: local.upscale(lr), time.process_time, "in_process"),
      "in_process": (lambda: local.upscale_bytes(image), time.process_time, "in_process"),
      "rest": (lambda: channels["rest"].predict([image]), server_cpu, "server"),
      "grpc": (lambda: channels["grpc"].predict([image]), server_cpu, "server"),
  }
  output_pixels = (SPEED_SIDE * scale) ** 2
  return {path: _costs(hardware.measure(call, cpu_clock), output_pixels, macs_per_pixel,
                       probes[probe])
          for path, (call, cpu_clock, probe) in calls.items()}


def _speed_row(network: dict, macs: float) -> dict:
  # pylint: disable=import-outside-toplevel
  from superres_tfx.imaging import image_ops
  architecture, scale, width, depth = network["key"]
  return {"network": f"{architecture} w{width} d{depth} x{scale}",
          "profiles": network["profiles"],
          "multiply_adds_per_output_pixel": {
              "single_pass": round(macs),
              "self_ensemble": round(macs * image_ops.SELF_ENSEMBLE_PASSES)}}


def _measure_networks(base: str, server: dict, networks: List[dict], probes: dict) -> List[dict]:
  """Costs every path of each network, single pass then self-ensembled, each pushed to
  the running server as the next version (version 1, the first, is already there).

  `server` holds process, log, url and target. Fills each network's "dirs"
  (self_ensemble -> version directory) for the tuning trials.
  """
  # pylint: disable=import-outside-toplevel
  from superres_tfx.imaging import image_ops
  from superres_tfx.components.models import registry
  rows, version = [], 0
  channels = {"rest": client.RestClient(server["url"]), "grpc": client.GrpcClient(server["target"])}
  try:
    for network in networks:
      model, scale = network["model"], network["key"][1]
      macs = registry.multiply_adds_per_output_pixel(model, scale)
      row = _speed_row(network, macs)
      for ensemble in (False, True):
        version += 1
        if version > 1:
          network["dirs"][ensemble] = _push_version(base, version, model, scale, ensemble)
        _wait_for_version(server["process"], server["log"], server["url"], version)
        passes = image_ops.SELF_ENSEMBLE_PASSES if ensemble else 1
        row["self_ensemble" if ensemble else "single_pass"] = _path_costs(
            network["dirs"][ensemble], scale, macs * passes, channels, server["process"].pid,
            probes)
      rows.append(row)
      print(json.dumps(row), flush=True)
  finally:
    for channel in channels.values():
      channel.close()
  return rows


def _trial_env(additions: Dict[str, str]) -> Dict[str, str]:
  env = {k: v for k, v in os.environ.items() if k not in TUNED_VARIABLES}
  env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # keeps the log line that says XLA compiled something
  env.update(additions)
  return env


def _tuning_models(networks: List[dict], rows: List[dict]) -> Dict[str, Tuple[str, int]]:
  """Name -> (version dir, network passes per call): each served profile's costliest x2
  network, the default profile's self-ensembled as it ships, the others single pass (an
  ensemble is 8 of them, and 8 times slower to try)."""
  # pylint: disable=import-outside-toplevel
  from superres_tfx.imaging import image_ops
  models = {}
  for profile in SPEED_PROFILES:
    candidates = [(row["multiply_adds_per_output_pixel"]["single_pass"], network, row)
                  for network, row in zip(networks, rows)
                  if profile in network["profiles"] and network["key"][1] == configs.DEFAULT_SCALE]
    _, network, row = max(candidates, key=lambda candidate: candidate[0])
    ensemble = profile == configs.DEFAULT_PROFILE
    name = f"{row['network']}, {'self-ensembled' if ensemble else 'single pass'}"
    models[name] = (network["dirs"][ensemble],
                    image_ops.SELF_ENSEMBLE_PASSES if ensemble else 1)
  return models


def _run_trial(options: List[str], env: Dict[str, str]) -> dict:
  try:
    done = _serving_env_run("benchmarks.speed_trial", *options, env=_trial_env(env))
  except subprocess.CalledProcessError as error:
    return {"error": (error.stderr or "").strip().splitlines()[-1:]}
  result = json.loads(done.stdout.strip().splitlines()[-1])
  result["xla_compiled"] = XLA_COMPILED_LOG in done.stderr
  return result


def _percent(value: float, baseline: float) -> float:
  return round(100.0 * (value / baseline - 1.0), 1)


def _findings(trials: Dict[str, dict], passes: Dict[str, int]) -> Dict[str, dict]:
  """Per model: the defaults' figures, their noise, and each trial's change in percent."""
  findings = {}
  for name, defaults in trials[DEFAULTS].get("models", {}).items():
    runs = [_figures(trial["models"][name]) for trial in (trials[DEFAULTS], trials[DEFAULTS_AGAIN])
            if "models" in trial]
    baseline = {key: round(sum(run[key] for run in runs) / len(runs), 1) for key in runs[0]}
    changes = {trial: {key: _percent(value, baseline[key])
                       for key, value in _figures(result["models"][name]).items()}
               for trial, result in trials.items()
               if trial not in (DEFAULTS, DEFAULTS_AGAIN) and "models" in result}
    cpu = lambda measurement: measurement["cpu_ms_per_output_mp"]
    jit = defaults["xla_jit_compile"]
    changes["xla_jit_compile"] = (jit["error"] if "error" in jit
                                  else {"cpu": _percent(cpu(jit), cpu(defaults["plain"]))})
    changes["4 tiles batched, against one at a time"] = {"cpu": _percent(
        cpu(defaults["tiles_batched"]), cpu(defaults["tiles_one_at_a_time"]))}
    changes["4 tiles batched, against the whole input"] = {"cpu": _percent(
        cpu(defaults["tiles_batched"]), cpu(defaults["plain"]))}
    # The fixed bicubic upscaling runs once per network pass.
    def share(key, name=name, defaults=defaults, cpu=cpu):
      return round(100.0 * passes[name] * cpu(defaults[key]) / cpu(defaults["plain"]), 1)
    findings[name] = {
        "defaults_ms_per_output_mp": baseline,
        "defaults_again_against_defaults_percent": {
            key: _percent(runs[-1][key], runs[0][key]) for key in runs[0]},
        "change_percent": changes,
        "bicubic_cpu_share_percent": share("bicubic_only"),
        "bicubic_without_antialias_cpu_share_percent": share("bicubic_without_antialias_only")}
  return findings


def _figures(model_result: dict) -> Dict[str, float]:
  alone, together = model_result["plain"], model_result["concurrent"]
  return {"cpu": alone["cpu_ms_per_output_mp"], "wall": alone["wall_ms_per_output_mp"],
          "concurrent_cpu": together["cpu_ms_per_output_mp"],
          "concurrent_wall": together["wall_ms_per_output_mp"]}


def _tuning(models: Dict[str, Tuple[str, int]]) -> dict:
  """The TUNING_TRIALS on `models` (name -> (version dir, passes)), each in a fresh process."""
  options = [option for name, (path, _) in models.items()
             for option in ("--model", f"{name}={path}")]
  trials = {}
  for name, env, trial_options in TUNING_TRIALS:
    trials[name] = _run_trial(options + list(trial_options), env)
    print(json.dumps({"tuning": name, **trials[name]}), flush=True)
  passes = {name: model_passes for name, (_, model_passes) in models.items()}
  return {"findings": _findings(trials, passes), "trials": trials}


def run_speed() -> dict:
  """Probes, then the cost of every served network on every path, then tuning trials."""
  # pylint: disable=import-outside-toplevel
  from superres_tfx.components.models import registry
  load_at_start = round(os.getloadavg()[0], 2)
  probes = {"in_process": hardware.probe(),
            "server": json.loads(_serving_env_run("benchmarks.hardware").stdout)}
  print(json.dumps({"probes": probes}), flush=True)
  networks = _speed_networks()
  for network in networks:
    architecture, scale, width, depth = network["key"]
    network["model"] = registry.build_model(architecture, scale, width=width, depth=depth)
    network["dirs"] = {}
  work = tempfile.mkdtemp(prefix="serving-speed-")
  process, log = None, None
  try:
    base = os.path.join(work, configs.MODEL_NAME)
    os.makedirs(base)
    first = networks[0]
    first["dirs"][False] = _push_version(base, 1, first["model"], first["key"][1], False)
    args = server_args(base, "--poll-seconds", str(SPEED_POLL_SECONDS))
    # pylint: disable=consider-using-with
    log = open(os.path.join(work, "server.log"), "wb")
    process = start_server(args, log)
    server = {"process": process, "log": log, "url": f"http://127.0.0.1:{args.rest_port}",
              "target": f"127.0.0.1:{args.grpc_port}"}
    rows = _measure_networks(base, server, networks, probes)
    stop_server(process)  # idle, but not in the way of the trials
    tuning = _tuning(_tuning_models(networks, rows))
  finally:
    stop_server(process)
    if log is not None:
      log.close()
    shutil.rmtree(work, ignore_errors=True)
  return {"input": f"{SPEED_SIDE}x{SPEED_SIDE} PNG, random pixels", "notes": SPEED_NOTES,
          "load_average_1m": {"start": load_at_start, "end": round(os.getloadavg()[0], 2)},
          "probes": probes, "networks": rows, "tuning": tuning}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", help="a pushed version or serving directory (default: an "
                      "untrained ESPCN of the default profile's size)")
  parser.add_argument("--requests", type=int, default=200,
                      help="requests per 64x64 measurement (256x256: a quarter)")
  parser.add_argument("--only", choices=SECTIONS,
                      help="run one section: serving (throughput, latency, faults) or speed "
                      "(CPU cost against this machine's throughput; ignores --model)")
  parser.add_argument("--out", help="also write the JSON here")
  args = parser.parse_args(argv)
  load_at_start = round(os.getloadavg()[0], 2)
  result = {} if args.only == "speed" else run(args.model, args.requests)
  if args.only != "serving":
    result["speed"] = run_speed()
  if args.only == "speed":
    result = {"machine": _machine(load_at_start), **result}
  output.emit(result, args.out)


if __name__ == "__main__":
  main()
