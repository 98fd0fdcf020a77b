"""Training progress as log records rather than Keras' own printing.

The Tuner and the Trainer fit with verbose=0 and report through the `superres.progress`
logger instead: every record has a readable message and its numbers in a `progress`
attribute (a dict). On Kubeflow they are ordinary log lines; the local CLI draws them as
progress bars. Step ticks are DEBUG records, so only a handler that asks for them (a
live progress bar) pays for them.
"""
import logging
import time
from typing import Optional

import keras

LOGGER_NAME = "superres.progress"
TICK_SECONDS = 0.25  # step ticks at most this often: enough for a smooth bar

_logger = logging.getLogger(LOGGER_NAME)


def report(component: str, kind: str, message: str, *args, level: int = logging.INFO,
           **fields) -> None:
  """Logs `component: message % args` with `progress` = {component, kind, **fields}."""
  if _logger.isEnabledFor(level):
    _logger.log(level, "%s: " + message, component, *args,
                extra={"progress": {"component": component, "kind": kind, **fields}})


def duration(seconds: float) -> str:
  """12 s, 7 min, 1 h 05 min."""
  if seconds < 90:
    return f"{seconds:.0f} s"
  minutes = round(seconds / 60)
  if minutes < 90:
    return f"{minutes} min"
  return f"{minutes // 60} h {minutes % 60:02d} min"


class TrainingProgress(keras.callbacks.Callback):
  """Reports a fit(): its start, step ticks, each epoch's metrics and its end.

  Inside a Tuner trial (nested=True) the tuner announces the trials, so only steps and
  epochs are reported, marked nested. Keras Tuner deep-copies callbacks for every trial:
  all state is reset in on_train_begin.
  """

  def __init__(self, component: str, objective: str = "val_psnr", nested: bool = False):
    super().__init__()
    self.component = component
    self.objective = objective
    self.nested = nested

  def _report(self, kind: str, message: str, *args, level: int = logging.INFO, **fields):
    report(self.component, kind, message, *args, level=level, unit="steps",
           done=self._done, total=self._total, nested=self.nested, **fields)

  def _seconds_left(self) -> Optional[float]:
    # Timed from the first step's end: the first step also traces and compiles.
    if self._first_step is None or self._done < 2 or not self._total:
      return None
    per_step = (time.monotonic() - self._first_step) / (self._done - 1)
    return per_step * max(0, self._total - self._done)

  def on_train_begin(self, logs=None):
    self._epochs = self.params.get("epochs") or 1
    steps = self.params.get("steps")
    self._total = self._epochs * steps if steps else None
    self._done = 0
    self._started = time.monotonic()
    self._first_step = None
    self._last_tick = 0.0
    self._score = self._best = None
    if not self.nested:
      self._report("begin", "training %s steps in %d epochs", self._total or "?",
                   self._epochs, epochs=self._epochs)

  def on_train_batch_end(self, batch, logs=None):
    self._done += 1
    now = time.monotonic()
    if self._first_step is None:
      self._first_step = now
    if now - self._last_tick >= TICK_SECONDS and _logger.isEnabledFor(logging.DEBUG):
      self._last_tick = now
      self._report("step", "step %d/%s", self._done, self._total or "?",
                   level=logging.DEBUG, val_psnr=self._score, left=self._seconds_left())

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    score = logs.get(self.objective)
    if score is not None:
      self._score = float(score)
      self._best = self._score if self._best is None else max(self._best, self._score)
    metrics = ", ".join(f"{name} {float(value):.4g}" for name, value in logs.items()
                        if isinstance(value, (int, float)) or hasattr(value, "__float__"))
    left = self._seconds_left()
    self._report("epoch", "epoch %d/%d, step %d/%s: %s%s", epoch + 1, self._epochs,
                 self._done, self._total or "?", metrics,
                 f"; about {duration(left)} left" if left else "",
                 epoch=epoch + 1, epochs=self._epochs, val_psnr=self._score, left=left)

  def on_train_end(self, logs=None):
    if self.nested:
      return
    best = f", best {self.objective} {self._best:.2f}" if self._best is not None else ""
    self._report("end", "trained %d of %s steps in %s%s", self._done, self._total or "?",
                 duration(time.monotonic() - self._started), best,
                 val_psnr=self._score, best=self._best)
