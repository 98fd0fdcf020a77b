"""Readable progress for a pipeline run: one line per component, full logs to a file.

The local orchestrator announces each component through absl logging; this handler
turns those announcements into short lines with elapsed times, while every log
record still goes, unabridged, to the run's log file.
"""
import logging
import re
import sys
import time

_RUNNING = re.compile(r"Component (\S+) is running\.")
_FINISHED = re.compile(r"Component (\S+) is finished\.")
_CACHED = re.compile(r"A cached execution (\d+) is used\.")
_SKIPPED = re.compile(r"Skipping component (\S+)\.")


class ProgressPrinter(logging.Handler):
  """Prints `[n/N] Component ... done in 12 s (cached)` lines."""

  def __init__(self, total: int, stream=None):
    super().__init__(level=logging.INFO)
    self.total = total
    self.stream = stream or sys.stdout
    self.done = 0
    self.started = {}
    self.cached = set()
    self.current = None
    self.outcomes = {}  # node id -> "ran" | "cached" | "skipped"

  def _print(self, text: str) -> None:
    self.stream.write(text + "\n")
    self.stream.flush()

  def emit(self, record: logging.LogRecord) -> None:
    try:
      message = record.getMessage()
    except Exception:  # pylint: disable=broad-except
      return
    if match := _RUNNING.search(message):
      self.current = match.group(1)
      self.started[self.current] = time.time()
      self._print(f"[{self.done + 1}/{self.total}] {self.current} ...")
    elif _CACHED.search(message) and self.current:
      self.cached.add(self.current)
    elif match := _FINISHED.search(message):
      node = match.group(1)
      self.done += 1
      elapsed = time.time() - self.started.get(node, time.time())
      outcome = "cached" if node in self.cached else "ran"
      self.outcomes[node] = outcome
      note = " (cached)" if outcome == "cached" else ""
      self._print(f"[{self.done}/{self.total}] {node} done in {elapsed:.0f} s{note}")
    elif match := _SKIPPED.search(message):
      node = match.group(1)
      self.done += 1
      self.outcomes[node] = "skipped"
      self._print(f"[{self.done}/{self.total}] {node} skipped")


class _QuietFileHandler(logging.FileHandler):
  """A log file that stops, silently, when it cannot be written (say, a full disk):
  the run's own error then reaches the user instead of one "Logging error" per record."""

  failed = False

  def emit(self, record):
    if self.failed:
      return
    try:
      super().emit(record)
    except OSError:  # reopening the file after a failure
      self.handleError(record)

  def handleError(self, record):
    del record
    self.failed = True
    self.close()


def route_logs(log_path: str, progress: ProgressPrinter) -> None:
  """Sends every log record to `log_path` and progress lines to the terminal."""
  root = logging.getLogger()
  for handler in list(root.handlers):
    root.removeHandler(handler)
  file_handler = _QuietFileHandler(log_path)
  file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
  root.addHandler(file_handler)
  root.addHandler(progress)
  root.setLevel(logging.INFO)
  # TensorFlow's logger prints to the terminal itself; send it to the file instead.
  tf_logger = logging.getLogger("tensorflow")
  for handler in list(tf_logger.handlers):
    tf_logger.removeHandler(handler)
  tf_logger.propagate = True
  try:
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.get_absl_logger().propagate = True
    absl_handler = absl_logging.get_absl_handler()
    root.removeHandler(absl_handler)
  except ImportError:
    pass
