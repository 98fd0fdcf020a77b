"""The project's model server (`python -m superres_tfx.serving`, in the serving
environment) as a child process on free loopback ports, for one candidate model.

The server loads the highest version under its base directory before it opens its
ports, and keeps running when that version fails to load (reporting the error in the
version's status, as TF Serving does), so start-up ends in one of three ways: the
status says AVAILABLE, the status carries a load error, or the process exits.
"""
import os
import re
import signal
import socket
import subprocess
import time
from typing import List, Optional

import requests

from superres_tfx.serving import launcher

LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_SECONDS = 20
POLL_SECONDS = 0.25
STATUS_TIMEOUT_SECONDS = 5
LOG_TAIL_LINES = 6
REASON_CHARS = 600
# A port picked free can be taken before the server binds it; only then is a second
# start worth it.
PORT_TAKEN = re.compile(r"address already in use|failed to bind", re.IGNORECASE)


class ServerFailed(Exception):
  """The server did not come up on the model; the message is the reason, one line."""


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind((LOOPBACK, 0))
    return sock.getsockname()[1]


def one_line(text: str, limit: int = REASON_CHARS) -> str:
  """Lines joined with " | ", keeping the end (where the error is) when too long."""
  joined = " | ".join(line.strip() for line in text.splitlines() if line.strip())
  return joined if len(joined) <= limit else "..." + joined[-limit:]


class ServerProcess:
  """`python -m superres_tfx.serving --model-base BASE --name NAME` with its output in `log_path`.

  Raises launcher.ServingEnvironmentMissing (a ValueError) when the serving environment
  is not installed.
  """

  def __init__(self, model_base: str, name: str, log_path: str):
    self.model_base, self.name, self.log_path = model_base, name, log_path
    self._python = launcher.serving_python()
    self.process: Optional[subprocess.Popen] = None
    self.rest_port = self.grpc_port = 0
    self.started = 0.0  # time.monotonic() at start()

  @property
  def url(self) -> str:
    return f"http://{LOOPBACK}:{self.rest_port}"

  @property
  def target(self) -> str:
    return f"{LOOPBACK}:{self.grpc_port}"

  def command(self) -> List[str]:
    return [self._python, "-m", launcher.SERVER_MODULE, "--model-base", self.model_base,
            "--name", self.name, "--host", LOOPBACK, "--rest-port", str(self.rest_port),
            "--grpc-port", str(self.grpc_port)]

  def start(self) -> None:
    self.rest_port, self.grpc_port = free_port(), free_port()
    # The serving environment is another Python (with this project installed in it):
    # none of this process's PYTHONPATH.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env[launcher.EXIT_WITH_PARENT_ENV] = str(os.getpid())
    self.started = time.monotonic()
    with open(self.log_path, "ab") as log:
      self.process = subprocess.Popen(  # pylint: disable=consider-using-with
          self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
          cwd="/", env=env)

  def log(self) -> str:
    try:
      with open(self.log_path, errors="replace") as f:
        return f.read()
    except FileNotFoundError:
      return ""

  def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
    """The last non-empty lines of the log; a crash's exception line ends them."""
    text = [line for line in self.log().splitlines() if line.strip()]
    return "\n".join(text[-lines:])

  def _status(self) -> Optional[requests.Response]:
    try:
      return requests.get(f"{self.url}/v1/models/{self.name}", timeout=STATUS_TIMEOUT_SECONDS)
    except requests.RequestException:
      return None  # not listening yet

  def wait_ready(self, timeout: float) -> None:
    """Returns once the model is AVAILABLE; raises ServerFailed with the reason if the
    server exits, reports a load error, or is not ready `timeout` seconds after start()."""
    deadline = self.started + timeout
    while True:
      code = self.process.poll()
      if code is not None:
        raise ServerFailed(f"the model server exited with status {code} before serving the "
                           f"model: {one_line(self.log_tail())}")
      response = self._status()
      if response is not None:
        error = _load_error(response)
        if response.status_code == 200 and not error:
          return
        if error:
          raise ServerFailed(f"the model server cannot load the model: {one_line(error)}")
      if time.monotonic() > deadline:
        raise ServerFailed(f"the model server did not serve the model within {timeout:g} s; "
                           f"its log ends: {one_line(self.log_tail())}")
      time.sleep(POLL_SECONDS)

  def port_was_taken(self) -> bool:
    return self.process is not None and self.process.poll() is not None and bool(
        PORT_TAKEN.search(self.log_tail(20)))

  def stop(self) -> Optional[int]:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_SECONDS; the exit status."""
    if self.process is None:
      return None
    if self.process.poll() is None:
      self.process.send_signal(signal.SIGTERM)
      try:
        self.process.wait(STOP_TIMEOUT_SECONDS)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    return self.process.returncode


def _load_error(response: requests.Response) -> str:
  """The error of a version that failed to load (state END with an error message)."""
  try:
    statuses = response.json().get("model_version_status", [])
  except ValueError:
    return ""
  for status in statuses:
    message = (status.get("status") or {}).get("error_message", "")
    if status.get("state") == "END" and message:
      return message
  return ""
