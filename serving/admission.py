"""Admission control: a bounded number of predictions run, a few more wait, the rest are refused.

Both front ends (REST and gRPC) submit model work here, so the limits hold for the
server as a whole. A request over the limit is refused at once (REST 429 with
Retry-After, gRPC RESOURCE_EXHAUSTED) instead of joining an unbounded queue; one that
waited longer than the queue timeout is refused when its turn comes, without running,
since its client has likely given up. Status and metadata calls never come here.

Slots are given back by the work's own future when it finishes or is cancelled, never
by the request handler, so a client that disconnects cannot leak one.
"""
import concurrent.futures
import dataclasses
import threading
import time
from typing import Callable, TypeVar

RETRY_AFTER_SECONDS = 1  # what a refused client is told to wait (HTTP Retry-After)

T = TypeVar("T")


class Overloaded(RuntimeError):
  """The server has no room for this prediction now; the client should retry later."""


@dataclasses.dataclass(frozen=True)
class AdmissionStats:
  in_flight: int  # predictions running
  queued: int  # admitted, waiting for a running slot
  completed: int  # ran to the end, answered or failed on bad input
  rejected_full: int  # refused on arrival: every running and waiting slot taken
  rejected_timeout: int  # refused after waiting longer than the queue timeout


class Admission:
  """Runs predictions on `max_in_flight` threads with at most `max_queued` waiting."""

  def __init__(self, max_in_flight: int, max_queued: int, queue_timeout_seconds: float):
    if max_in_flight < 1 or max_queued < 0 or queue_timeout_seconds <= 0:
      raise ValueError(f"admission limits must be max_in_flight >= 1, max_queued >= 0, "
                       f"queue timeout > 0; got {max_in_flight}, {max_queued}, "
                       f"{queue_timeout_seconds}")
    self.max_in_flight = max_in_flight
    self.max_queued = max_queued
    self.queue_timeout_seconds = queue_timeout_seconds
    self._executor = concurrent.futures.ThreadPoolExecutor(max_in_flight,
                                                           thread_name_prefix="predict")
    self._lock = threading.Lock()
    self._admitted = 0  # running + waiting
    self._running = 0
    self._completed = 0
    self._rejected_full = 0
    self._rejected_timeout = 0

  @property
  def capacity(self) -> int:
    return self.max_in_flight + self.max_queued

  def stats(self) -> AdmissionStats:
    with self._lock:
      return AdmissionStats(self._running, self._admitted - self._running, self._completed,
                            self._rejected_full, self._rejected_timeout)

  def check(self) -> None:
    """Raises Overloaded when every slot is taken: a cheap early refusal, before the
    request is even read. submit() checks again, atomically."""
    with self._lock:
      self._refuse_if_full()

  def _refuse_if_full(self) -> None:
    if self._admitted >= self.capacity:
      self._rejected_full += 1
      raise Overloaded(
          f"the server is at capacity ({self.max_in_flight} predictions running, "
          f"{self.max_queued} waiting); retry in {RETRY_AFTER_SECONDS} s")

  def submit(self, fn: Callable[..., T], *args) -> "concurrent.futures.Future[T]":
    """Schedules fn(*args), or raises Overloaded at once when every slot is taken.

    The future raises Overloaded if the work waited past the queue timeout; cancelling
    it before it starts (a client gone) frees its slot.
    """
    with self._lock:
      self._refuse_if_full()
      self._admitted += 1
    try:
      future = self._executor.submit(self._run, time.monotonic(), fn, args)
    except RuntimeError:  # shutting down
      self._release(None)
      raise Overloaded("the server is shutting down") from None
    future.add_done_callback(self._release)
    return future

  def _run(self, queued_at: float, fn: Callable[..., T], args) -> T:
    waited = time.monotonic() - queued_at
    if waited > self.queue_timeout_seconds:
      with self._lock:
        self._rejected_timeout += 1
      raise Overloaded(
          f"the server is busy: the request waited {waited:.2f} s for a free slot, over the "
          f"queue timeout of {self.queue_timeout_seconds:g} s; retry in {RETRY_AFTER_SECONDS} s")
    with self._lock:
      self._running += 1
    try:
      return fn(*args)
    finally:
      with self._lock:
        self._running -= 1
        self._completed += 1

  def _release(self, _future) -> None:
    with self._lock:
      self._admitted -= 1

  def shutdown(self) -> None:
    """Cancels waiting work; running predictions finish."""
    self._executor.shutdown(wait=False, cancel_futures=True)
