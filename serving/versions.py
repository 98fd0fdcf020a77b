"""TF Serving's version policy for one model's base directory.

- Serve the highest complete version (a numbered folder holding saved_model.pb; the
  Pusher's hidden `.incoming-N` staging folders and unfinished copies are not versions).
- Poll the base directory; load a new version beside the served one, warm it up, and
  only then switch to it. Requests in flight keep the version they started with.
- A version that fails to load is logged and reported in the status with its error;
  the served version stays. It is tried again only if its saved_model.pb changes.
- A served version whose folder is removed is unloaded, as TF Serving does: the
  highest remaining version takes over, or, with none left, requests get a clear
  "no version" error (503) until one is pushed. Requests already running finish on the
  model in memory.
"""
import dataclasses
import logging
import os
import threading
from typing import Dict, List, Optional, Tuple

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

from serving import launcher
from superres import inference

logger = logging.getLogger("serving.versions")

# TF Serving's ManagerState names, as GetModelStatus reports them.
LOADING = "LOADING"
AVAILABLE = "AVAILABLE"
END = "END"

WARMUP_SIDE = 8  # pixels per side of the synthetic warm-up image


class VersionNotFound(LookupError):
  """The request named a version that is not being served."""

  def __init__(self, version: int, served: int):
    super().__init__(f"version {version} is not served (serving version {served})")
    self.version = version


class NoVersionAvailable(LookupError):
  """No version has loaded yet."""


@dataclasses.dataclass(frozen=True)
class VersionStatus:
  version: int
  state: str
  error: str = ""  # why loading failed; empty when it did not


class ServedVersion:
  """One loaded version: the model, its signature definitions, and the tile size that
  keeps one request's upscaling within `max_request_memory` bytes."""

  def __init__(self, version: int, path: str, max_request_memory: int):
    self.version = version
    self.path = path
    self.upscaler = inference.Upscaler(path)  # raises ModelNotFoundError when unusable
    self.tile_size = self.upscaler.tile_size_for(max_request_memory)
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, inference.SAVED_MODEL_FILE), "rb") as f:
      saved_model.ParseFromString(f.read())
    self.signature_defs: Dict[str, meta_graph_pb2.SignatureDef] = dict(
        saved_model.meta_graphs[0].signature_def)

  def warm_up(self) -> None:
    """Runs the serving signature once, so the first request does not pay for tracing."""
    b"".join(self.upscaler.upscale_to_png(np.zeros([WARMUP_SIDE, WARMUP_SIDE, 3], np.uint8),
                                          self.tile_size))


def _stamp(path: str) -> Tuple[int, int]:
  stat = os.stat(os.path.join(path, inference.SAVED_MODEL_FILE))
  return stat.st_mtime_ns, stat.st_size


class VersionManager:
  """Keeps the highest complete version of one model loaded, swapping in newer ones."""

  def __init__(self, base_dir: str, poll_seconds: float = 1.0,
               max_request_memory: int = launcher.DEFAULT_MAX_REQUEST_MEMORY):
    self.base_dir = base_dir
    self.poll_seconds = poll_seconds
    self.max_request_memory = max_request_memory
    self._served: Optional[ServedVersion] = None
    self._statuses: Dict[int, VersionStatus] = {}
    self._failed: Dict[int, Tuple[int, int]] = {}  # version -> stamp of the copy that failed
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self._unloaded = ""  # why nothing is served after a version was removed

  def served(self, version: Optional[int] = None) -> ServedVersion:
    """The served version; when `version` is given, only if it is that one."""
    served = self._served  # one read: a swap cannot change it under the caller
    if served is None:
      raise NoVersionAvailable(self._unloaded or (
          f"no version of the model is loaded yet: waiting for a numbered version folder "
          f"with {inference.SAVED_MODEL_FILE} under {self.base_dir}"))
    if version is not None and version != served.version:
      raise VersionNotFound(version, served.version)
    return served

  def statuses(self) -> List[VersionStatus]:
    with self._lock:
      return sorted(self._statuses.values(), key=lambda status: -status.version)

  def _set_status(self, version: int, state: str, error: str = "") -> None:
    with self._lock:
      self._statuses[version] = VersionStatus(version, state, error)

  def poll(self) -> None:
    """Looks at the base directory once: loads a newer version, or drops a removed one."""
    try:
      versions = inference.complete_versions(self.base_dir)
    except FileNotFoundError:
      versions = {}  # the base directory itself was removed
    except OSError as error:  # e.g. a network file system hiccup: keep what is served
      logger.warning("cannot list %s: %s", self.base_dir, error)
      return
    if versions:
      target = max(versions)
      served = self._served
      if served is None or served.version != target:
        try:
          stamp = _stamp(versions[target])
        except OSError:
          stamp = None  # removed while we looked
        if stamp is not None and self._failed.get(target) != stamp:
          self._load(target, versions[target], stamp)
    served = self._served
    if served is not None and served.version not in versions:
      self._unload_removed(served, versions)

  def _unload_removed(self, served: ServedVersion, versions: Dict[int, str]) -> None:
    """The served version's folder is gone and no other version could replace it."""
    if versions:
      reason = (f"version {served.version} was removed from {self.base_dir} and version "
                f"{max(versions)}, the highest left, failed to load (see its status)")
    else:
      reason = (f"version {served.version} was removed from {self.base_dir} and no complete "
                f"version is left; serving resumes when one is pushed")
    self._unloaded = f"no version of the model is available: {reason}"
    self._served = None
    self._set_status(served.version, END)
    logger.error("stopped serving: %s", reason)

  def _load(self, version: int, path: str, stamp: Tuple[int, int]) -> None:
    logger.info("loading version %d from %s", version, path)
    self._set_status(version, LOADING)
    try:
      candidate = ServedVersion(version, path, self.max_request_memory)
      candidate.warm_up()
    except Exception as error:  # pylint: disable=broad-except
      # Anything a broken SavedModel raises must leave the served version in place.
      message = f"{type(error).__name__}: {error}".strip()
      self._failed[version] = stamp
      self._set_status(version, END, message)
      previous = self._served
      logger.error("version %d failed to load and is not served (%s); %s", version, message,
                   f"still serving version {previous.version}" if previous else "nothing is served")
      return
    self._failed.pop(version, None)
    previous, self._served = self._served, candidate
    self._unloaded = ""
    self._set_status(version, AVAILABLE)
    if previous is not None:
      self._set_status(previous.version, END)
      logger.info("now serving version %d (was %d)", version, previous.version)
    else:
      logger.info("now serving version %d", version)
    logger.info("version %d upscales in tiles of %d px with %d px margins (about %.0f bytes "
                "per input pixel, --max-request-memory %d MiB)", version, candidate.tile_size,
                candidate.upscaler.receptive_radius, candidate.upscaler.bytes_per_pixel,
                self.max_request_memory >> 20)

  def _run(self) -> None:
    while not self._stop.wait(self.poll_seconds):
      try:
        self.poll()
      except Exception:  # pylint: disable=broad-except
        logger.exception("polling %s failed; trying again", self.base_dir)

  def start(self) -> None:
    """Loads the newest version now, then keeps polling in a background thread."""
    self.poll()
    if self._served is None:
      logger.warning("no complete version under %s yet; looking every %g s", self.base_dir,
                     self.poll_seconds)
    self._thread = threading.Thread(target=self._run, name="version-poller", daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
