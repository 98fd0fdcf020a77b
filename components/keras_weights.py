"""A network's Keras weights beside its SavedModel, and where training starts from.

The Trainer writes them next to Format-Serving in its Model artifact; a shipped model
keeps them next to its version folder (pretrained/). Training starts from scratch,
from the last blessed model (`--warm-start`) or from the shipped model of the run's
scale (`--init pretrained`), and only from weights of the same network and scale.
"""
import json
import os
import tempfile

import keras_tuner
import tensorflow as tf

from superres_tfx import pretrained
from superres_tfx.core import names


def keras_dir(serving_model_dir: str) -> str:
  """The weights' folder beside a SavedModel directory."""
  return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), names.KERAS_DIR)


def settings_of(hp: keras_tuner.HyperParameters, scale: int) -> dict:
  """What weights fit: the network's architecture, width, depth and scale."""
  return {"architecture": hp.get("architecture"), "width": hp.get("width"),
          "depth": hp.get("depth"), "scale": scale}


def save(model, settings: dict, serving_model_dir: str) -> None:
  folder = keras_dir(serving_model_dir)
  tf.io.gfile.makedirs(folder)
  local = os.path.join(tempfile.mkdtemp(), names.KERAS_WEIGHTS_FILE)
  model.save_weights(local)
  tf.io.gfile.copy(local, os.path.join(folder, names.KERAS_WEIGHTS_FILE), overwrite=True)
  with tf.io.gfile.GFile(os.path.join(folder, names.KERAS_SETTINGS_FILE), "w") as f:
    json.dump(settings, f)


def load_matching(model, serving_model_dir: str, settings: dict, what: str) -> str:
  """Loads the weights kept beside `serving_model_dir` when they are of the same network
  and scale. Returns what happened (`what` names the model), for the log and the
  training summary."""
  folder = keras_dir(serving_model_dir)
  settings_path = os.path.join(folder, names.KERAS_SETTINGS_FILE)
  if not tf.io.gfile.exists(settings_path):
    return f"{what} ({serving_model_dir}) has no Keras weights: trained from scratch"
  with tf.io.gfile.GFile(settings_path) as f:
    found = json.load(f)
  if found != settings:
    return f"{what} is {found}, this one {settings}: trained from scratch"
  # Keras reads .h5 from local files only: copy it over when it lives in a bucket.
  local = os.path.join(tempfile.mkdtemp(), names.KERAS_WEIGHTS_FILE)
  tf.io.gfile.copy(os.path.join(folder, names.KERAS_WEIGHTS_FILE), local)
  model.load_weights(local)
  return f"started from {what} ({serving_model_dir})"


def initialise(model, settings: dict, config: dict, base_model_dir=None) -> str:
  """Where the run's custom_config says training starts: the shipped model of its scale
  (init "pretrained"), the last blessed model (warm_start, `base_model_dir`), or scratch."""
  if config.get("init") == "pretrained":
    shipped = pretrained.version_dir(settings["scale"])
    if shipped is None:
      return f"no model shipped for x{settings['scale']}: trained from scratch"
    return load_matching(model, shipped, settings, "the shipped model")
  if config.get("warm_start"):
    if not base_model_dir:
      return "no blessed model yet: trained from scratch"
    return load_matching(model, base_model_dir, settings, "the last blessed model")
  return "trained from scratch"
