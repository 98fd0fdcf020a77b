"""Which models the server serves, and which of their versions: TF Serving's model config.

Three sources, one per command line:
- one model's base directory (--model-base, --name), serving its highest version;
- a serving directory (--serving-dir): every folder in it is a model named after the
  folder, serving its highest version, as the Pusher writes <serving-dir>/<name>/<version>/;
- TF Serving's own model config file (--model-config-file): a text ModelServerConfig
  whose model_config_list gives each model's name, base_path and version policy.

Nothing here imports TensorFlow, so a bad configuration is reported at once.
"""
import dataclasses
import os
from typing import FrozenSet, Iterable, List, Set

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from superres_tfx.core import errors

LATEST, ALL, SPECIFIC = "latest", "all", "specific"
PLATFORM = "tensorflow"


class ConfigError(errors.SuperresError):
  """The configuration cannot be served; the message says why and where."""


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
  """TF Serving's ServableVersionPolicy: which complete versions of a model are served."""
  kind: str = LATEST
  num_versions: int = 1  # for LATEST
  versions: FrozenSet[int] = frozenset()  # for SPECIFIC

  def select(self, versions: Iterable[int]) -> Set[int]:
    """The versions to serve, out of the complete ones on disk."""
    versions = set(versions)
    if self.kind == ALL:
      return versions
    if self.kind == SPECIFIC:
      return versions & self.versions
    return set(sorted(versions)[-self.num_versions:])

  def __str__(self) -> str:
    if self.kind == SPECIFIC:
      return f"specific {sorted(self.versions)}"
    return f"latest {self.num_versions}" if self.kind == LATEST else ALL


DEFAULT_POLICY = VersionPolicy()


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  name: str
  base_path: str
  policy: VersionPolicy = DEFAULT_POLICY


def _policy(proto) -> VersionPolicy:
  kind = proto.WhichOneof("policy_choice")
  if kind == SPECIFIC:
    if not proto.specific.versions:
      raise ConfigError("its specific version policy lists no versions")
    return VersionPolicy(SPECIFIC, versions=frozenset(proto.specific.versions))
  if kind == ALL:
    return VersionPolicy(ALL)
  # As TF Serving: no policy, or num_versions 0, means the latest one.
  return VersionPolicy(LATEST, max(1, proto.latest.num_versions) if kind else 1)


def read_config_file(path: str) -> List[ModelConfig]:
  """The models of a text ModelServerConfig; relative base paths are taken from its folder."""
  try:
    with open(path) as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as error:
    raise ConfigError(f"cannot read --model-config-file {path}: {error}") from None
  try:
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
  except text_format.ParseError as error:
    raise ConfigError(f"--model-config-file {path} is not a text ModelServerConfig: "
                      f"{error}") from None
  if config.WhichOneof("config") != "model_config_list":
    raise ConfigError(f"--model-config-file {path} has no model_config_list (the one form "
                      f"this server reads)")
  folder = os.path.dirname(os.path.abspath(path))
  models = []
  for i, entry in enumerate(config.model_config_list.config):
    where = f"{path}: config {entry.name!r}" if entry.name else f"{path}: config #{i + 1}"
    try:
      if not entry.name:
        raise ConfigError("it has no name")
      if not entry.base_path:
        raise ConfigError("it has no base_path")
      if entry.model_platform not in ("", PLATFORM):
        raise ConfigError(f"model_platform is {entry.model_platform!r}; this server serves "
                          f"{PLATFORM!r} SavedModels only")
      if entry.version_labels:
        raise ConfigError("version_labels are not supported; address versions by number")
      if entry.name in (model.name for model in models):
        raise ConfigError("the name is used by an earlier config too")
      base = os.path.join(folder, os.path.expanduser(entry.base_path))
      models.append(ModelConfig(entry.name, _existing_dir(base, "base_path"),
                                _policy(entry.model_version_policy)))
    except ConfigError as error:
      raise ConfigError(f"{where}: {error}") from None
  if not models:
    raise ConfigError(f"--model-config-file {path} lists no models")
  return models


def _existing_dir(path: str, what: str) -> str:
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isdir(path):
    raise ConfigError(f"{what} {path} is not a directory")
  return path


def model_base(path: str, name: str) -> ModelConfig:
  """--model-base: the folder holding numbered versions; the serving root above it is
  accepted too."""
  base = _existing_dir(path, "--model-base")
  nested = os.path.join(base, name)
  if not any(entry.isdigit() for entry in os.listdir(base)) and os.path.isdir(nested):
    base = nested
  return ModelConfig(name, base)


def serving_dir(path: str) -> str:
  """--serving-dir, checked: a folder of model folders, not one model's versions."""
  path = _existing_dir(path, "--serving-dir")
  if any(entry.isdigit() for entry in os.listdir(path)):
    raise ConfigError(f"--serving-dir {path} holds numbered version folders: it is one "
                      f"model's base directory; serve it with --model-base")
  return path


def model_folders(path: str) -> List[ModelConfig]:
  """The models of a serving directory, one per folder named after it: hidden folders
  (the Pusher's staging) and numbered ones (versions) are not models."""
  models = []
  for name in sorted(os.listdir(path)):
    base = os.path.join(path, name)
    if not name.startswith(".") and not name.isdigit() and os.path.isdir(base):
      models.append(ModelConfig(name, base))
  return models
