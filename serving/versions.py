"""TF Serving's version policy for one model's base directory.

- Serve the complete versions (numbered folders holding saved_model.pb; the Pusher's
  hidden `.incoming-N` staging folders and unfinished copies are not versions) that the
  model's policy names: by default the highest one, or the N highest, all, or given
  numbers. Requests without a version go to the highest served one.
- Poll the base directory; load a new version beside the served ones, warm it up, and
  only then serve it and unload what the policy no longer names. Requests in flight
  keep the version they started with.
- A version that fails to load is logged and reported in the status with its error;
  the served versions stay. It is tried again only if its saved_model.pb changes.
- A served version whose folder is removed is unloaded, as TF Serving does: the next
  version the policy names takes over, or, with none left, requests get a clear "no
  version" error (503) until one is pushed. Requests already running finish on the
  model in memory.
"""
import dataclasses
import logging
import os
import threading
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

from superres_tfx.core import names
from superres_tfx.serving import launcher
from superres_tfx.serving.model_config import DEFAULT_POLICY, VersionPolicy
from superres_tfx.inference import upscaling

logger = logging.getLogger("superres_tfx.serving.versions")

# TF Serving's ManagerState names, as GetModelStatus reports them.
LOADING = "LOADING"
AVAILABLE = "AVAILABLE"
END = "END"

WARMUP_SIDE = 8  # pixels per side of the synthetic warm-up image


class VersionNotFound(LookupError):
  """The request named a version that is not being served."""

  def __init__(self, name: str, version: int, served: List[int]):
    super().__init__(f"version {version} of model {name} is not served (serving "
                     f"{versions_text(served)})")
    self.name = name
    self.version = version


class NoVersionAvailable(LookupError):
  """No version is loaded."""


def versions_text(versions) -> str:
  """"version 3" or "versions 3, 4"."""
  versions = sorted(versions)
  return f"version{'s' if len(versions) > 1 else ''} {', '.join(map(str, versions))}"


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
    self.upscaler = upscaling.Upscaler(path)  # raises ModelNotFoundError when unusable
    self.tile_size = self.upscaler.tile_size_for(max_request_memory)
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, names.SAVED_MODEL_FILE), "rb") as f:
      saved_model.ParseFromString(f.read())
    self.signature_defs: Dict[str, meta_graph_pb2.SignatureDef] = dict(
        saved_model.meta_graphs[0].signature_def)

  def warm_up(self) -> None:
    """Runs the serving signature once, so the first request does not pay for tracing."""
    b"".join(self.upscaler.upscale_to_png(np.zeros([WARMUP_SIDE, WARMUP_SIDE, 3], np.uint8),
                                          self.tile_size))


def _stamp(path: str) -> Tuple[int, int]:
  stat = os.stat(os.path.join(path, names.SAVED_MODEL_FILE))
  return stat.st_mtime_ns, stat.st_size


class VersionManager:
  """Keeps the versions of one model that its policy names loaded, swapping in newer ones.

  `poll()` is called by one thread only (serving.models' poller); requests read the
  loaded versions at any time.
  """

  def __init__(self, base_dir: str,
               max_request_memory: int = launcher.DEFAULT_MAX_REQUEST_MEMORY,
               policy: VersionPolicy = DEFAULT_POLICY, name: str = names.DEFAULT_MODEL_NAME):
    self.base_dir = base_dir
    self.max_request_memory = max_request_memory
    self.policy = policy
    self.name = name
    self.log = _ModelLog(logger, {"model": name})
    # Replaced whole, never changed in place: a request reads it once, and keeps the
    # version it found however the set changes.
    self._loaded: Dict[int, ServedVersion] = {}
    self._statuses: Dict[int, VersionStatus] = {}
    self._failed: Dict[int, Tuple[int, int]] = {}  # version -> stamp of the copy that failed
    self._lock = threading.Lock()
    self._unloaded = ""  # why nothing is served after versions were removed

  def served(self, version: Optional[int] = None) -> ServedVersion:
    """The highest loaded version, or the given one if it is loaded."""
    loaded = self._loaded
    if not loaded:
      raise NoVersionAvailable(self._unloaded or (
          f"no version of model {self.name} is loaded yet: waiting for a numbered version "
          f"folder with {names.SAVED_MODEL_FILE} under {self.base_dir}"
          + ("" if self.policy == DEFAULT_POLICY else f" (version policy: {self.policy})")))
    if version is None:
      return loaded[max(loaded)]
    if version not in loaded:
      raise VersionNotFound(self.name, version, sorted(loaded))
    return loaded[version]

  def loaded_versions(self) -> List[int]:
    return sorted(self._loaded)

  def statuses(self) -> List[VersionStatus]:
    with self._lock:
      return sorted(self._statuses.values(), key=lambda status: -status.version)

  def _set_status(self, version: int, state: str, error: str = "") -> None:
    with self._lock:
      self._statuses[version] = VersionStatus(version, state, error)

  def poll(self) -> None:
    """Looks at the base directory once: loads the versions the policy names that are not
    loaded yet, then unloads those it no longer names or whose folders are gone."""
    try:
      on_disk = names.complete_versions(self.base_dir)
    except FileNotFoundError:
      on_disk = {}  # the base directory itself was removed
    except OSError as error:  # e.g. a network file system hiccup: keep what is served
      self.log.warning("cannot list %s: %s", self.base_dir, error)
      return
    while True:  # each turn loads or fails one version, the highest first
      wanted = self._wanted(on_disk)
      missing = wanted - self._loaded.keys()
      if not missing:
        break
      version = max(missing)
      try:
        stamp = _stamp(on_disk[version])
      except OSError:  # removed while we looked
        del on_disk[version]
        continue
      self._load(version, on_disk[version], stamp)
    for version in sorted(self._loaded.keys() - wanted):
      self._unload(version, on_disk)

  def _wanted(self, on_disk: Dict[int, str]) -> Set[int]:
    """What the policy serves of the versions on disk, passing over those that failed to
    load (unless their saved_model.pb has changed since): in their place, the versions
    served before stay or the next ones load."""
    def loadable(version):
      if version not in self._failed:
        return True
      try:
        return _stamp(on_disk[version]) != self._failed[version]
      except OSError:
        return False
    return self.policy.select(v for v in on_disk if loadable(v))

  def _unload(self, version: int, on_disk: Dict[int, str]) -> None:
    loaded = dict(self._loaded)
    del loaded[version]
    self._loaded = loaded  # requests running on it finish on the model in memory
    self._set_status(version, END)
    if loaded:
      self.log.info("version %d unloaded (%s); serving %s", version,
                    "its folder was removed" if version not in on_disk else
                    f"version policy: {self.policy}", versions_text(loaded))
      return
    gone = (f"version {version} was removed from {self.base_dir}" if version not in on_disk
            else f"the version policy ({self.policy}) no longer names version {version}")
    left = self.policy.select(on_disk)
    if not left:
      reason = (f"{gone} and no complete version"
                + ("" if self.policy == DEFAULT_POLICY else f" the policy ({self.policy}) names")
                + " is left; serving resumes when one is pushed")
    else:
      reason = (f"{gone} and {versions_text(left)}, left in its place, failed to load (see "
                f"the model's status)")
    self._unloaded = f"no version of model {self.name} is available: {reason}"
    self.log.error("stopped serving: %s", reason)

  def _load(self, version: int, path: str, stamp: Tuple[int, int]) -> None:
    self.log.info("loading version %d from %s", version, path)
    self._set_status(version, LOADING)
    try:
      candidate = ServedVersion(version, path, self.max_request_memory)
      candidate.warm_up()
    except Exception as error:  # pylint: disable=broad-except
      # Anything a broken SavedModel raises must leave the served versions in place.
      message = f"{type(error).__name__}: {error}".strip()
      self._failed[version] = stamp
      self._set_status(version, END, message)
      self.log.error("version %d failed to load and is not served (%s); %s", version, message,
                     f"still serving {versions_text(self._loaded)}" if self._loaded else
                     "nothing is served")
      return
    self._failed.pop(version, None)
    self._loaded = {**self._loaded, version: candidate}
    self._unloaded = ""
    self._set_status(version, AVAILABLE)
    self.log.info("version %d is available: it upscales in tiles of %d px with %d px margins "
                  "(about %.0f bytes per input pixel, --max-request-memory %d MiB)", version,
                  candidate.tile_size, candidate.upscaler.receptive_radius,
                  candidate.upscaler.bytes_per_pixel, self.max_request_memory >> 20)


class _ModelLog(logging.LoggerAdapter):
  """Log lines that say which model they are about: one server serves several."""

  def process(self, msg, kwargs):
    return f"model {self.extra['model']}: {msg}", kwargs
