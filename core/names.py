"""Names that several parts of the project must agree on, and pushed-version discovery.

Plain Python, importing nothing of the project and no TensorFlow: the CLI's quick
commands (`superres runs`, `lineage`), the model server and its client read these
without loading TFX or Keras.
"""
import os
import re
from typing import Callable, Dict, Iterable, Optional

# A model is named by what it does: superres-x2, superres-x3, superres-x4, plus a
# profile's suffix (the smoke profile's models are superres-xN-smoke). The name is the
# pipeline's name (so its MLMD contexts, its "last blessed model" and its cache) and its
# serving name: <serving_dir>/<model name>/<version>/.
SCALES = (2, 3, 4)
DEFAULT_SCALE = 2
MODEL_NAME_PREFIX = "superres"


def model_name(scale: int, suffix: str = "") -> str:
  return f"{MODEL_NAME_PREFIX}-x{scale}{suffix}"


DEFAULT_MODEL_NAME = model_name(DEFAULT_SCALE)  # what a bare `superres run` pushes


def check_model_name(name: str) -> str:
  """A model name is a folder name, a pipeline name and a URL path segment."""
  if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
    raise ValueError(f"model name {name!r}: use letters, digits, '.', '_' and '-', starting "
                     "with a letter or digit (at most 63 characters)")
  return name

# The exported SavedModel's signatures (components/export.py).
SERVING_SIGNATURE = "serving_default"  # images: string [N] -> images: PNG string [N]
FLOAT_SIGNATURE = "upscale"  # lr: float32 [N, H, W, 3] in [0, 1] -> sr: float32

# A version folder is complete once this file is in it: the Pusher renames a finished
# copy into place, and TF Serving looks for the same file.
SAVED_MODEL_FILE = "saved_model.pb"

# Beside a model's SavedModel (the Trainer's Format-Serving, a shipped model's version
# folder): its Keras weights and the settings they belong to, for warm starts and
# fine-tuning.
KERAS_DIR = "keras"
KERAS_WEIGHTS_FILE = "model.weights.h5"
KERAS_SETTINGS_FILE = "settings.json"

# Files components write beside their artifacts.
METRICS_FILE = "metrics.json"  # the Evaluator's scores, in its ModelEvaluation
TRAINING_SUMMARY_FILE = "training.json"  # the Trainer's hyperparameters, in its ModelRun

# The ML Metadata store `superres run` writes: <pipeline root>/metadata.sqlite.
METADATA_FILE = "metadata.sqlite"
# TFX's context types in that store.
RUN_CONTEXT_TYPE = "pipeline_run"
NODE_CONTEXT_TYPE = "node"
PIPELINE_CONTEXT_TYPE = "pipeline"  # named after the model (model_name)

# The ExampleValidator's integer custom property (0 or 1) that the DAG branches on.
ANOMALIES_FOUND = "anomalies_found"


def complete_versions(base_dir: str,
                      listdir: Callable[[str], Iterable[str]] = os.listdir,
                      isfile: Callable[[str], bool] = os.path.isfile) -> Dict[int, str]:
  """Version number -> directory of every numbered subdirectory holding a SavedModel.

  Versions still being written (no saved_model.pb yet, or a hidden staging name) are
  skipped. The local filesystem by default; the Pusher passes TFX's fileio functions
  so that bucket paths (gs://...) work too.
  """
  versions = {}
  for name in listdir(base_dir):
    name = name.rstrip("/")  # bucket listings end folder names with "/"
    path = os.path.join(base_dir, name)
    if name.isdigit() and isfile(os.path.join(path, SAVED_MODEL_FILE)):
      versions[int(name)] = path
  return versions


def newest_version(base_dir: str,
                   listdir: Callable[[str], Iterable[str]] = os.listdir,
                   isfile: Callable[[str], bool] = os.path.isfile) -> Optional[str]:
  """Directory of the highest complete version (see complete_versions); None when none."""
  versions = complete_versions(base_dir, listdir, isfile)
  return versions[max(versions)] if versions else None
