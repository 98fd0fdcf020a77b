"""Readable progress for a pipeline run: one line per component, full logs to a file.

The local orchestrator announces each component through absl logging; this handler
turns those announcements into short lines with elapsed times, while every log
record still goes, unabridged, to the run's log file. The Tuner and the Trainer report
trials and steps as `superres.progress` records (components/progress_callback.py): on a
terminal the running component's line is a live bar, replaced by its result; redirected,
they become a few plain lines (every quarter of the work).
"""
import dataclasses
import logging
import os
import re
import sys
import time
from typing import Optional

from rich import console as rich_console
from rich import progress as rich_progress
from rich import table as rich_table
from rich import text as rich_text

_RUNNING = re.compile(r"Component (\S+) is running\.")
_FINISHED = re.compile(r"Component (\S+) is finished\.")
_CACHED = re.compile(r"A cached execution (\d+) is used\.")
_SKIPPED = re.compile(r"Skipping component (\S+)\.")


# The logger components/progress_callback.py reports under (not imported: it loads Keras).
PROGRESS_LOGGER = "superres.progress"


def _duration(seconds: float) -> str:
  if seconds < 90:
    return f"{seconds:.0f} s"
  minutes = round(seconds / 60)
  return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"


def _psnr(value) -> str:
  return f"{value:.2f} dB" if value is not None else "?"


def _is_terminal(stream) -> bool:
  try:
    return stream.isatty() and os.environ.get("TERM") != "dumb"
  except (AttributeError, ValueError):
    return False


@dataclasses.dataclass
class _Work:
  """What the running component reported: trials (Tuner) and/or steps."""
  started: float
  by_trials: bool = False  # a Tuner: trials are the work, steps a trial's share
  trials_done: int = 0
  trials_total: Optional[int] = None
  best: Optional[float] = None
  steps_done: int = 0
  steps_total: Optional[int] = None
  val_psnr: Optional[float] = None
  left: Optional[float] = None
  printed_quarter: int = 0  # plain lines already printed, in quarters of the work

  @property
  def fraction(self) -> Optional[float]:
    """How much is done, a trial's steps counting towards the trials."""
    if self.by_trials:
      if not self.trials_total:
        return None
      within = self.steps_done / self.steps_total if self.steps_total else 0.0
      return min(1.0, (self.trials_done + min(within, 1.0)) / self.trials_total)
    if self.steps_total:
      return min(1.0, self.steps_done / self.steps_total)
    return None

  def seconds_left(self) -> Optional[float]:
    if not self.by_trials:
      return self.left
    fraction = self.fraction
    if not fraction:
      return None
    return (time.monotonic() - self.started) * (1 - fraction) / fraction

  def status(self) -> str:
    """`trial 2/4 · best val PSNR 30.12 dB · 3 min left`, for the live bar."""
    if self.by_trials:
      running = self.trials_done + 1
      if self.trials_total:
        running = min(running, self.trials_total)
      parts = [f"trial {running}/{self.trials_total or '?'}"]
      if self.best is not None:
        parts.append(f"best val PSNR {_psnr(self.best)}")
    elif self.steps_total is not None:
      parts = [f"{self.steps_done}/{self.steps_total} steps"]
      if self.val_psnr is not None:
        parts.append(f"val PSNR {_psnr(self.val_psnr)}")
    else:
      return ""
    left = self.seconds_left()
    if left is not None and (self.fraction or 0) < 1:
      parts.append(f"{_duration(left)} left")
    return " · ".join(parts)

  def summary(self) -> str:
    """`: 4 trials, best val PSNR 30.12 dB` for the component's last line."""
    if self.by_trials:
      trials = "trial" if self.trials_done == 1 else "trials"
      return f": {self.trials_done} {trials}, best val PSNR {_psnr(self.best)}"
    if self.steps_done:
      return f": {self.steps_done} steps, val PSNR {_psnr(self.val_psnr)}"
    return ""


class _StatusColumn(rich_progress.ProgressColumn):
  """What the component reports, else how long it has been running."""

  def __init__(self):
    # A steady bar, and one row even on a narrow terminal: the bar shrinks, then this
    # text is cut.
    super().__init__(table_column=rich_table.Column(min_width=50, no_wrap=True,
                                                    overflow="ellipsis"))

  def render(self, task) -> rich_text.Text:
    status = task.fields.get("status")
    if not status:
      elapsed = int(task.elapsed or 0)
      status = f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
    return rich_text.Text(status)


class ProgressPrinter(logging.Handler):
  """Prints `[n/N] Component done in 12 s (cached)` lines, and the Tuner's and the
  Trainer's progress: a live bar on a terminal, a few plain lines otherwise."""

  def __init__(self, total: int, stream=None, live: Optional[bool] = None):
    super().__init__(level=logging.DEBUG)  # DEBUG: the step ticks of a live bar
    self.total = total
    self.stream = stream or sys.stdout
    self.live = _is_terminal(self.stream) if live is None else live
    self.done = 0
    self.started = {}
    self.cached = set()
    self.current = None
    self.outcomes = {}  # node id -> "ran" | "cached" | "skipped"
    self.work = None  # _Work of the current component, once it reports progress
    self._bar = None  # rich Progress of the current component (live only)
    self._task = None

  def _print(self, text: str) -> None:
    self.stream.write(text + "\n")
    self.stream.flush()

  def _prefix(self) -> str:
    return f"[{self.done + 1}/{self.total}] "

  def _start_bar(self) -> None:
    console = rich_console.Console(file=self.stream, force_terminal=True)
    self._bar = rich_progress.Progress(
        rich_progress.TextColumn("{task.description}"),
        rich_progress.BarColumn(bar_width=None),  # what the text leaves, up to the width
        _StatusColumn(),
        console=console, transient=True, refresh_per_second=4, expand=True)
    self._task = self._bar.add_task(f"{self._prefix()}{self.current}", total=None, status="")
    self._bar.start()

  def _stop_bar(self) -> None:
    if self._bar is not None:
      self._bar.stop()  # transient: the component's last line replaces it
      self._bar = None

  def _update_bar(self) -> None:
    if self._bar is None:
      return
    fraction = self.work.fraction
    self._bar.update(self._task, total=None if fraction is None else 1.0,
                     completed=fraction or 0.0, status=self.work.status())

  def close(self) -> None:
    """Ends a live bar left by a run that stopped, saying where it stopped."""
    if self._bar is not None:
      self._stop_bar()
      elapsed = time.time() - self.started.get(self.current, time.time())
      self._print(f"{self._prefix()}{self.current} stopped after {elapsed:.0f} s")
    super().close()

  def _on_progress(self, fields: dict) -> None:
    if self.work is None:
      self.work = _Work(started=time.monotonic())
    work, kind = self.work, fields.get("kind")
    if fields.get("unit") == "trials":
      work.by_trials = True
      work.trials_done = fields.get("done") or 0
      work.trials_total = fields.get("total")
      if fields.get("best") is not None:
        work.best = fields["best"]
      if kind in ("trial_begin", "trial"):  # the trial's steps now count as a whole trial
        work.steps_done, work.steps_total = 0, None
      if kind == "trial" and not self.live:
        self._print_milestone(work.trials_done, work.trials_total,
                              f"trial {work.trials_done}/{work.trials_total or '?'}: "
                              f"val PSNR {_psnr(fields.get('score'))} "
                              f"(best {_psnr(work.best)})")
    elif fields.get("unit") == "steps":
      work.steps_done = fields.get("done") or 0
      work.steps_total = fields.get("total")
      work.left = fields.get("left")
      if fields.get("val_psnr") is not None:
        work.val_psnr = fields["val_psnr"]
      if not self.live and not fields.get("nested"):
        self._print_steps(kind, fields)
    self._update_bar()

  def _print_steps(self, kind: str, fields: dict) -> None:
    work = self.work
    if kind == "begin":
      self._print(" " * len(self._prefix()) + f"training {work.steps_total or '?'} steps "
                  f"in {fields.get('epochs', '?')} epochs")
    elif kind == "epoch":
      left = f", {_duration(work.left)} left" if work.left else ""
      percent = f" ({100 * work.fraction:.0f}%)" if work.fraction is not None else ""
      self._print_milestone(work.steps_done, work.steps_total,
                            f"step {work.steps_done}/{work.steps_total}{percent}: "
                            f"val PSNR {_psnr(work.val_psnr)}{left}")
    elif kind == "end" and work.steps_total and work.steps_done < work.steps_total:
      self._print(" " * len(self._prefix()) +
                  f"stopped early at step {work.steps_done}/{work.steps_total}: "
                  f"best val PSNR {_psnr(fields.get('best'))}")

  def _print_milestone(self, done: int, total: Optional[int], text: str) -> None:
    """Prints when `done` reaches a new quarter of `total` (every time without a total)."""
    quarter = 4 * done // total if total else self.work.printed_quarter + 1
    if quarter > self.work.printed_quarter:
      self.work.printed_quarter = quarter
      self._print(" " * len(self._prefix()) + text)

  def emit(self, record: logging.LogRecord) -> None:
    fields = getattr(record, "progress", None)
    if isinstance(fields, dict):
      if self.current is not None:
        self._on_progress(fields)
      return
    if record.levelno < logging.INFO:
      return
    try:
      message = record.getMessage()
    except Exception:  # pylint: disable=broad-except
      return
    if match := _RUNNING.search(message):
      self.current = match.group(1)
      self.started[self.current] = time.time()
      self.work = None
      # Redirected output gets one line per component, when it ends (plus the Tuner's and
      # the Trainer's few progress lines in between).
      if self.live:
        self._start_bar()
    elif _CACHED.search(message) and self.current:
      self.cached.add(self.current)
    elif match := _FINISHED.search(message):
      node = match.group(1)
      self._stop_bar()
      self.done += 1
      elapsed = time.time() - self.started.get(node, time.time())
      outcome = "cached" if node in self.cached else "ran"
      self.outcomes[node] = outcome
      note = " (cached)" if outcome == "cached" else ""
      # Live, the bar is gone: its last state goes on the component's line.
      if self.live and self.work is not None and node == self.current:
        note += self.work.summary()
      self._print(f"[{self.done}/{self.total}] {node} done in {elapsed:.0f} s{note}")
      self.current = None
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
  # Step ticks are for the live bar only; epochs and trials are logged.
  file_handler.addFilter(lambda record: record.levelno >= logging.INFO)
  root.addHandler(file_handler)
  root.addHandler(progress)
  root.setLevel(logging.INFO)
  logging.getLogger(PROGRESS_LOGGER).setLevel(logging.DEBUG if progress.live else logging.INFO)
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
