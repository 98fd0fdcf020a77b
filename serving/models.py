"""Every model the server serves: model name -> its VersionManager, as TF Serving's model
config list.

The models come from serving.model_config: those of --model-base, of a serving
directory (looked at again at every poll: a new folder is served without a restart, a
removed one stops being served), or of a model config file (read again every
--model-config-file-poll-seconds, if set). A model dropped from its source gets 404 /
NOT_FOUND, as TF Serving unloads a model dropped from its config; a changed version
policy applies at the next poll, without reloading the versions it keeps.

One thread polls every model in turn, so one version loads at a time: the memory in use
is the versions the policies name plus at most one being loaded.
"""
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from superres_tfx.serving import model_config
from superres_tfx.serving.versions import ServedVersion, VersionManager

logger = logging.getLogger("superres_tfx.serving.models")

Source = Callable[[], Sequence[model_config.ModelConfig]]


class ModelNotFound(LookupError):
  """The request named a model that is not served."""

  def __init__(self, name: str, served: List[str], version: Optional[int] = None):
    super().__init__(f"no model named '{name}' is served here; "
                     + (f"this server serves {', '.join(served)}" if served
                        else "this server serves no model yet"))
    self.name = name
    self.version = version


class ModelRegistry:
  """The served models, and the thread that keeps them and their versions up to date.

  `models` are served from the start; `source`, when given, is called again every
  `source_seconds` for the models to serve from then on.
  """

  def __init__(self, poll_seconds: float, max_request_memory: int,
               models: Sequence[model_config.ModelConfig], source: Optional[Source] = None,
               source_seconds: float = 0.0, source_name: str = ""):
    self.poll_seconds = poll_seconds
    self.max_request_memory = max_request_memory
    self._source = source
    self._source_seconds = source_seconds
    self._source_name = source_name
    # Replaced whole, never changed in place, so requests read it without a lock.
    self._managers: Dict[str, VersionManager] = {}
    self._update(models)
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  def names(self) -> List[str]:
    return sorted(self._managers)

  def get(self, name: str, version: Optional[int] = None) -> VersionManager:
    """The model's manager; `version` only goes into the error of an unknown name."""
    manager = self._managers.get(name)
    if manager is None:
      raise ModelNotFound(name, self.names(), version)
    return manager

  def served(self, name: str, version: Optional[int] = None) -> ServedVersion:
    """The model's highest served version, or the given one."""
    return self.get(name, version).served(version)

  def _update(self, models: Sequence[model_config.ModelConfig]) -> None:
    """Serves `models` from now on: new ones are added, dropped ones unloaded, and a
    changed policy applies to the versions already loaded."""
    current, managers = self._managers, {}
    for config in models:
      manager = current.get(config.name)
      if manager is None or manager.base_dir != config.base_path:
        manager = VersionManager(config.base_path, self.max_request_memory, config.policy,
                                 config.name)
        manager.log.info("serving %s (version policy: %s)", config.base_path, config.policy)
      elif manager.policy != config.policy:
        manager.log.info("version policy now %s (was %s)", config.policy, manager.policy)
        manager.policy = config.policy
      managers[config.name] = manager
    for name in sorted(current.keys() - managers.keys()):
      # Requests running on it finish on the model in memory.
      current[name].log.info("no longer in %s: not served", self._source_name)
    self._managers = managers

  def _reread(self) -> None:
    try:
      models = self._source()
    except (OSError, model_config.ConfigError) as error:
      # A hiccup of a network file system, or a config file being edited: keep serving.
      reason = error if isinstance(error, model_config.ConfigError) else \
          f"cannot read {self._source_name}: {error}"
      logger.error("%s; still serving the models as they were", reason)
      return
    self._update(models)

  def poll(self) -> None:
    """Polls every model once."""
    for manager in self._managers.values():
      if self._stop.is_set():
        return
      try:
        manager.poll()
      except Exception:  # pylint: disable=broad-except
        manager.log.exception("polling %s failed; trying again", manager.base_dir)

  def _run(self) -> None:
    next_read = time.monotonic() + self._source_seconds
    while not self._stop.wait(self.poll_seconds):
      try:
        if self._source is not None and time.monotonic() >= next_read:
          next_read = time.monotonic() + self._source_seconds
          self._reread()
        self.poll()
      except Exception:  # pylint: disable=broad-except
        logger.exception("polling failed; trying again")

  def start(self) -> None:
    """Loads what is there now, then keeps polling in a background thread."""
    self.poll()
    for manager in self._managers.values():
      if not manager.loaded_versions():
        manager.log.warning("no version to serve under %s yet; looking every %g s",
                            manager.base_dir, self.poll_seconds)
    if not self._managers:
      logger.warning("no model in %s yet; looking every %g s", self._source_name,
                     self._source_seconds)
    self._thread = threading.Thread(target=self._run, name="version-poller", daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
