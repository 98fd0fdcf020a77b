"""The model server (`python -m superres_tfx.serving`) as a real process, for the serving
test modules.

A Server runs in the serving environment on free loopback ports and is stopped by its
PID. export_models() pushes tiny ESPCN models with different random weights
(random_model(), also what the Pusher tests push), so that answers tell the versions
apart; local() is what a version gives in this process.
"""
import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import requests

from superres_tfx.components import export
from superres_tfx.components.models import registry
from superres_tfx.pipeline import configs
from superres_tfx.serving import client
from superres_tfx.serving import launcher
from superres_tfx.inference import upscaling

SERVING_PYTHON = os.path.join(launcher.SERVING_VENV, "bin", "python")
MISSING_ENVIRONMENT = (f"the serving environment {launcher.SERVING_VENV} is missing; create it "
                       f"with {launcher.SETUP_SCRIPT}")
NAME = configs.MODEL_NAME
START_TIMEOUT = 180  # TensorFlow imports slowly on a busy machine
STOP_TIMEOUT = 20
GRPC_EVENT_ENGINE_THREAD = "event_engine"  # the thread name gRPC's C core gives its pool


def serving_environment_missing() -> bool:
  return not os.access(SERVING_PYTHON, os.X_OK)


png = client.encode_png
pixels_of = client.decode_png


def random_image(height: int, width: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.1):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    value = condition()
    if value:
      return value
    time.sleep(interval)
  raise AssertionError(f"timed out after {timeout} s waiting for {what}")


Models = Dict[int, Tuple[str, upscaling.Upscaler]]


def random_model(seed: int, scale: int = 2):
  """A tiny ESPCN whose weights are drawn from `seed`.

  Random rather than initial weights: an untrained network is exactly bicubic (its last
  layer starts at zero), the same for every seed, which would hide both the version and
  any seam between tiles.
  """
  model = registry.build_model("espcn", scale, width=8, depth=1)
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(0.0, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()])
  return model


def export_models(directory: str, versions=(1, 2), scale: int = 2) -> Models:
  """Exported models with different random weights: {version: (path, Upscaler)}."""
  exported = {}
  for version in versions:
    path = os.path.join(directory, str(version))
    export.export_serving_model(random_model(version, scale), scale, path)
    exported[version] = (path, upscaling.Upscaler(path))
  return exported


def local(models: Models, version: int, encoded: bytes) -> np.ndarray:
  """What the pushed model gives locally, computed as the server does (decoded to uint8,
  upscaled through the float signature, rounded; one tile for these small images)."""
  upscaler = models[version][1]
  lr = upscaling.decode_image(encoded)
  return pixels_of(b"".join(upscaler.upscale_to_png(lr, max(lr.shape[:2]))))


class Server:
  """A running `python -m superres_tfx.serving` process and its addresses.

  `options` are further command-line options (e.g. ["--max-in-flight", "2"]); pass the
  ports of a stopped server to start another in its place. Without `base` (--model-base),
  `options` say which models to serve (e.g. ["--serving-dir", DIR]); `name` is the model
  that status() and predict_url are about.
  """

  def __init__(self, base: Optional[str], log_path: str, options: List[str] = (),
               rest_port: Optional[int] = None, grpc_port: Optional[int] = None,
               name: str = NAME):
    self.base = base
    self.name = name
    self.log_path = log_path
    self.rest_port, self.grpc_port = rest_port or free_port(), grpc_port or free_port()
    self.url = f"http://127.0.0.1:{self.rest_port}"
    self.target = f"127.0.0.1:{self.grpc_port}"
    self.predict_url = f"{self.url}/v1/models/{name}:predict"
    args = launcher.add_arguments(argparse.ArgumentParser()).parse_args([
        *(["--model-base", base] if base is not None else []), "--rest-port",
        str(self.rest_port), "--grpc-port", str(self.grpc_port), *options])
    self.command = launcher.serving_command(args)
    self.killed = False
    self._log = open(log_path, "ab")  # pylint: disable=consider-using-with
    self.process = subprocess.Popen(  # pylint: disable=consider-using-with
        self.command, stdout=self._log, stderr=subprocess.STDOUT, cwd="/",
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

  @property
  def pid(self) -> int:
    return self.process.pid

  def log(self) -> str:
    with open(self.log_path, errors="replace") as f:
      return f.read()

  def status(self, name: Optional[str] = None) -> requests.Response:
    return requests.get(f"{self.url}/v1/models/{name or self.name}", timeout=10)

  def served_versions(self, name: Optional[str] = None):
    statuses = self.status(name).json()["model_version_status"]
    return {int(s["version"]): s for s in statuses}

  def check_running(self) -> None:
    if self.process.poll() is not None:
      raise AssertionError(f"the server exited with {self.process.returncode}:\n"
                           f"{self.log()[-3000:]}")

  def wait_ready(self, timeout: float = START_TIMEOUT, name: Optional[str] = None) -> None:
    def ready():
      self.check_running()
      try:
        return self.status(name).status_code == 200
      except requests.ConnectionError:
        return False
    wait_for(ready, timeout, f"the server to load a version of {name or self.name}")

  def metrics(self) -> Dict[str, float]:
    """The Prometheus samples of GET /metrics, keyed by name{labels} as printed."""
    text = requests.get(f"{self.url}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
      if line and not line.startswith("#"):
        key, value = line.rsplit(" ", 1)
        samples[key] = float(value)
    return samples

  def open_fds(self) -> int:
    return len(os.listdir(f"/proc/{self.pid}/fd"))

  def threads(self) -> int:
    """The server's threads, less gRPC's event engine pool, which grows and shrinks with
    the load by itself."""
    count = 0
    for task in os.listdir(f"/proc/{self.pid}/task"):
      try:
        with open(f"/proc/{self.pid}/task/{task}/comm") as f:
          count += f.read().strip() != GRPC_EVENT_ENGINE_THREAD
      except FileNotFoundError:  # ended while we looked
        pass
    return count

  def kill(self) -> None:
    """SIGKILL, as an out-of-memory kill or a node failure would end it."""
    os.kill(self.pid, signal.SIGKILL)
    self.process.wait()
    self.killed = True
    self._log.close()

  def stop(self) -> int:
    """SIGTERM by PID; returns the exit status (a forced kill fails the test)."""
    try:
      if self.process.poll() is None:
        os.kill(self.pid, signal.SIGTERM)
        try:
          return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
          os.kill(self.pid, signal.SIGKILL)
          self.process.wait()
          raise AssertionError(f"the server ignored SIGTERM for {STOP_TIMEOUT} s") from None
      return self.process.returncode
    finally:
      self._log.close()


@contextlib.contextmanager
def serving(models: Models, tmp_path_factory, options: List[str] = (),
            versions=(1,)) -> Iterator[Server]:
  """A ready Server on copies of `versions` of `models`; on leaving, it must stop cleanly
  on SIGTERM (unless a test killed it)."""
  base = tmp_path_factory.mktemp("serving") / NAME
  base.mkdir()
  for version in versions:
    shutil.copytree(models[version][0], base / str(version))
  with started(Server(str(base), str(tmp_path_factory.mktemp("log") / "server.log"),
                      options)) as running:
    yield running


@contextlib.contextmanager
def started(server: Server) -> Iterator[Server]:
  """`server` once it serves its model; on leaving, it must stop cleanly on SIGTERM
  (unless a test killed it)."""
  try:
    server.wait_ready()
    yield server
  finally:
    status = server.stop()
  if not server.killed:
    assert status == 0, f"the server exited with {status} on SIGTERM:\n{server.log()[-3000:]}"
