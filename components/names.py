"""Names that several parts of the project must agree on, and pushed-version discovery.

Plain Python, importing nothing of the project and no TensorFlow: the CLI's quick
commands (`superres runs`, `lineage`), the model server and its client read these
without loading TFX or Keras.
"""
import os
from typing import Callable, Dict, Iterable, Optional

# The exported SavedModel's signatures (components/export.py).
SERVING_SIGNATURE = "serving_default"  # images: string [N] -> images: PNG string [N]
FLOAT_SIGNATURE = "upscale"  # lr: float32 [N, H, W, 3] in [0, 1] -> sr: float32

# A version folder is complete once this file is in it: the Pusher renames a finished
# copy into place, and TF Serving looks for the same file.
SAVED_MODEL_FILE = "saved_model.pb"

# Files components write beside their artifacts.
METRICS_FILE = "metrics.json"  # the Evaluator's scores, in its ModelEvaluation
TRAINING_SUMMARY_FILE = "training.json"  # the Trainer's hyperparameters, in its ModelRun

# The ML Metadata store `superres run` writes: <pipeline root>/metadata.sqlite.
METADATA_FILE = "metadata.sqlite"
# TFX's context types in that store.
RUN_CONTEXT_TYPE = "pipeline_run"
NODE_CONTEXT_TYPE = "node"
PIPELINE_CONTEXT_TYPE = "pipeline"  # named after the model (configs.model_name_for)

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
