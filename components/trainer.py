"""TFX Trainer module: trains the tuned network under a tf.distribute strategy and
exports the serving SavedModel."""
import json
import os
import tempfile

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx

from superres_tfx.components import export
from superres_tfx.components import model as model_lib
from superres_tfx.core import names
from superres_tfx.components import progress_callback
from superres_tfx.components import strategies
from superres_tfx.components import training_data


def hyperparameters_for(fn_args: tfx.components.FnArgs) -> keras_tuner.HyperParameters:
  """The Tuner's best hyperparameters, or the first value of every choice without a Tuner."""
  if fn_args.hyperparameters:
    return keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
  hp = keras_tuner.HyperParameters()
  model_lib.define_search_space(hp, fn_args.custom_config)
  return hp


# Beside Format-Serving in the Model artifact: the Keras weights and the settings they
# belong to, so a later run can warm-start from a blessed model.
KERAS_DIR = "keras"
WEIGHTS_FILE = "model.weights.h5"
SETTINGS_FILE = "settings.json"


def _keras_dir(serving_model_dir: str) -> str:
  return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), KERAS_DIR)


def _settings(hp: keras_tuner.HyperParameters, scale: int) -> dict:
  return {"architecture": hp.get("architecture"), "width": hp.get("width"),
          "depth": hp.get("depth"), "scale": scale}


def save_keras_weights(model, settings: dict, serving_model_dir: str) -> None:
  keras_dir = _keras_dir(serving_model_dir)
  tf.io.gfile.makedirs(keras_dir)
  local = os.path.join(tempfile.mkdtemp(), WEIGHTS_FILE)
  model.save_weights(local)
  tf.io.gfile.copy(local, os.path.join(keras_dir, WEIGHTS_FILE), overwrite=True)
  with tf.io.gfile.GFile(os.path.join(keras_dir, SETTINGS_FILE), "w") as f:
    json.dump(settings, f)


def warm_start(model, base_model_dir, settings: dict) -> str:
  """Loads the base model's weights when it has the same architecture and scale.

  Returns what happened, for the log and the training summary.
  """
  if not base_model_dir:
    return "no blessed model yet: trained from scratch"
  keras_dir = _keras_dir(base_model_dir)
  settings_path = os.path.join(keras_dir, SETTINGS_FILE)
  if not tf.io.gfile.exists(settings_path):
    return f"{base_model_dir} has no Keras weights: trained from scratch"
  with tf.io.gfile.GFile(settings_path) as f:
    base_settings = json.load(f)
  if base_settings != settings:
    return (f"last blessed model is {base_settings}, this one {settings}: "
            "trained from scratch")
  # Keras reads .h5 from local files only: copy it over when it lives in a bucket.
  local = os.path.join(tempfile.mkdtemp(), WEIGHTS_FILE)
  tf.io.gfile.copy(os.path.join(keras_dir, WEIGHTS_FILE), local)
  model.load_weights(local)
  return f"warm-started from {base_model_dir}"


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  config = fn_args.custom_config
  hp = hyperparameters_for(fn_args)
  logging.info("Training with hyperparameters %s", hp.values)
  transform_output = tft.TFTransformOutput(fn_args.transform_output)
  strategy = strategies.make_strategy(config["strategy"])
  # Batches are global: each replica gets batch_size / replicas.
  train = training_data.train_dataset(fn_args.train_files, transform_output,
                                      config["batch_size"], config["patch_size"],
                                      config["scale"])
  val = training_data.eval_dataset(fn_args.eval_files, transform_output,
                                   training_data.EVAL_BATCH_SIZE, config["eval_tiles_per_photo"])
  # From custom_config, the source of train_args too: TFX reads TrainArgs(num_steps=0) as None.
  train_steps = config["train_steps"]
  steps_per_epoch = max(1, min(config["steps_per_epoch"], train_steps))
  epochs = max(1, train_steps // steps_per_epoch)
  with strategy.scope():
    model = model_lib.build_compiled_model(hp, scale=config["scale"], loss=config["loss"],
                                           decay_steps=epochs * steps_per_epoch)
    settings = _settings(hp, config["scale"])
    start = warm_start(model, fn_args.base_model if config.get("warm_start") else None,
                       settings)
  logging.info("Initialisation: %s", start)
  history = {}
  if train_steps > 0:  # zero steps exports the initial network (bicubic, by construction)
    # verbose=0: progress and each epoch's metrics are reported as log records instead.
    history = model.fit(
        train, validation_data=val, steps_per_epoch=steps_per_epoch, epochs=epochs,
        callbacks=[model_lib.early_stopping(config["patience"]),
                   progress_callback.TrainingProgress("Trainer", model_lib.OBJECTIVE)],
        verbose=0).history

  if not strategies.is_chief():
    return  # workers train; only the chief writes the model
  export.export_serving_model(model, config["scale"], fn_args.serving_model_dir,
                              self_ensemble=config["self_ensemble"])
  save_keras_weights(model, settings, fn_args.serving_model_dir)
  tf.io.gfile.makedirs(fn_args.model_run_dir)
  summary = {"hyperparameters": hp.values, "initialisation": start,
             "self_ensemble": config["self_ensemble"],
             "history": history,
             "parameters": int(model.count_params())}
  summary_path = os.path.join(fn_args.model_run_dir, names.TRAINING_SUMMARY_FILE)
  with tf.io.gfile.GFile(summary_path, "w") as f:
    json.dump(summary, f, indent=1, default=float)
