"""TFX Trainer module: trains the tuned network under a tf.distribute strategy and
exports the serving SavedModel."""
import json
import os

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx

from superres_tfx.components import export
from superres_tfx.components import keras_weights
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
  val_files = training_data.validation_files(fn_args.train_files, fn_args.eval_files)
  val = training_data.eval_dataset(val_files, transform_output, training_data.EVAL_BATCH_SIZE,
                                   config["eval_tiles_per_photo"])
  # From custom_config, the source of train_args too: TFX reads TrainArgs(num_steps=0) as None.
  train_steps = config["train_steps"]
  steps_per_epoch = max(1, min(config["steps_per_epoch"], train_steps))
  epochs = max(1, train_steps // steps_per_epoch)
  with strategy.scope():
    model = model_lib.build_compiled_model(hp, scale=config["scale"], loss=config["loss"],
                                           decay_steps=epochs * steps_per_epoch)
    settings = keras_weights.settings_of(hp, config["scale"])
    start = keras_weights.initialise(model, settings, config, fn_args.base_model)
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
  keras_weights.save(model, settings, fn_args.serving_model_dir)
  tf.io.gfile.makedirs(fn_args.model_run_dir)
  summary = {"hyperparameters": hp.values, "initialisation": start,
             "self_ensemble": config["self_ensemble"],
             "history": history,
             "parameters": int(model.count_params())}
  summary_path = os.path.join(fn_args.model_run_dir, names.TRAINING_SUMMARY_FILE)
  with tf.io.gfile.GFile(summary_path, "w") as f:
    json.dump(summary, f, indent=1, default=float)
