"""TFX Tuner module: Keras Tuner search over learning rate, architecture, width, depth, dropout."""
import contextlib
import io
import time

import keras_tuner
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx

from superres_tfx.components import keras_weights
from superres_tfx.components import model as model_lib
from superres_tfx.components import progress_callback
from superres_tfx.components import training_data

TUNER_CLASSES = {
    "bayesian": keras_tuner.BayesianOptimization,
    "random": keras_tuner.RandomSearch,
    "grid": keras_tuner.GridSearch,
}
# What tuner_fn reads of custom_config: the pipeline passes the Tuner these only.
CONFIG_KEYS = ("scale", "loss", "tuner", "seed", "tuner_trials", "tuner_steps",
               "steps_per_epoch", "patience", "batch_size", "patch_size",
               "eval_tiles_per_photo", "init") + model_lib.SEARCH_SPACE_KEYS


def _log_printed(method, *args) -> None:
  """Runs a Keras Tuner method that prints, and logs its text instead."""
  text = io.StringIO()
  with contextlib.redirect_stdout(text):
    method(*args)
  logging.info("%s", text.getvalue().rstrip())


class _Reporting:
  """Keras Tuner's console output as log records: the search space, each trial's
  hyperparameters and score, the results summary; trials also as progress records."""

  def search_space_summary(self, extended=False):
    _log_printed(super().search_space_summary, extended)

  def results_summary(self, num_trials=10):
    _log_printed(super().results_summary, num_trials)

  def on_search_begin(self):
    super().on_search_begin()
    self._trials_done = 0
    self._search_started = time.monotonic()
    progress_callback.report("Tuner", "begin", "at most %s trials", self.oracle.max_trials,
                             unit="trials", done=0, total=self.oracle.max_trials)

  def on_trial_begin(self, trial):
    super().on_trial_begin(trial)
    self._trial_started = time.monotonic()
    progress_callback.report(
        "Tuner", "trial_begin", "trial %d/%s: %s", self._trials_done + 1,
        self.oracle.max_trials, trial.hyperparameters.values, unit="trials",
        done=self._trials_done, total=self.oracle.max_trials)

  def on_trial_end(self, trial):
    super().on_trial_end(trial)  # the oracle scores the trial here
    self._trials_done += 1
    best_trials = self.oracle.get_best_trials(1)
    best = best_trials[0].score if best_trials else None
    outcome = (f"{model_lib.OBJECTIVE} {trial.score:.2f}" if trial.score is not None
               else str(trial.status).lower())
    took = progress_callback.duration(time.monotonic() - self._trial_started)
    progress_callback.report(
        "Tuner", "trial", "trial %d/%s done in %s: %s%s", self._trials_done,
        self.oracle.max_trials, took, outcome,
        f" (best {best:.2f})" if best is not None else "", unit="trials",
        done=self._trials_done, total=self.oracle.max_trials, score=trial.score, best=best)

  def on_search_end(self):
    super().on_search_end()
    progress_callback.report(
        "Tuner", "end", "%d trial(s) in %s", self._trials_done,
        progress_callback.duration(time.monotonic() - self._search_started), unit="trials",
        done=self._trials_done, total=self.oracle.max_trials)


# The same searches, printing nothing to the console.
_REPORTING_CLASSES = {name: type(cls.__name__, (_Reporting, cls), {})
                      for name, cls in TUNER_CLASSES.items()}


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
  config = fn_args.custom_config
  hp = keras_tuner.HyperParameters()
  model_lib.define_search_space(hp, config)
  steps_per_epoch = min(config["steps_per_epoch"], config["tuner_steps"])
  epochs = max(1, config["tuner_steps"] // steps_per_epoch)

  def build(trial_hp):
    model = model_lib.build_compiled_model(
        trial_hp, scale=config["scale"], loss=config["loss"],
        decay_steps=epochs * steps_per_epoch)
    # Each trial starts where the Trainer will (no last blessed model here: a warm
    # start's trials, like a fresh run's, start from scratch).
    keras_weights.initialise(model, keras_weights.settings_of(trial_hp, config["scale"]),
                             {"init": config["init"]})
    return model

  tuner_class = _REPORTING_CLASSES[config["tuner"]]
  tuner = tuner_class(
      build, objective=keras_tuner.Objective(model_lib.OBJECTIVE, direction="max"),
      max_trials=config["tuner_trials"], hyperparameters=hp,
      directory=fn_args.working_dir, project_name="superres_tuning",
      seed=config.get("seed", 0), overwrite=True)

  transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  train = training_data.train_dataset(
      fn_args.train_files, transform_output, config["batch_size"], config["patch_size"],
      config["scale"])
  val_files = training_data.validation_files(fn_args.train_files, fn_args.eval_files)
  val = training_data.eval_dataset(val_files, transform_output, training_data.EVAL_BATCH_SIZE,
                                   config["eval_tiles_per_photo"])
  return tfx.components.TunerFnResult(
      tuner=tuner,
      fit_kwargs={
          "x": train,
          "validation_data": val,
          "steps_per_epoch": steps_per_epoch,
          "epochs": epochs,
          "callbacks": [model_lib.early_stopping(config["patience"]),
                        progress_callback.TrainingProgress(
                            "Tuner", model_lib.OBJECTIVE, nested=True)],
          # Keras' epoch lines and Keras Tuner's trial tables: reported as log records.
          "verbose": 0,
      })
