"""TFX Tuner module: Keras Tuner search over learning rate, architecture, width, depth, dropout."""
import keras_tuner
import tensorflow_transform as tft
from tfx import v1 as tfx

from components import model as model_lib
from components import training_data

TUNER_CLASSES = {
    "bayesian": keras_tuner.BayesianOptimization,
    "random": keras_tuner.RandomSearch,
    "grid": keras_tuner.GridSearch,
}


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
  config = fn_args.custom_config
  hp = keras_tuner.HyperParameters()
  model_lib.define_search_space(hp, config)
  steps_per_epoch = min(config["steps_per_epoch"], config["tuner_steps"])
  epochs = max(1, config["tuner_steps"] // steps_per_epoch)

  def build(trial_hp):
    return model_lib.build_compiled_model(
        trial_hp, scale=config["scale"], loss=config["loss"],
        decay_steps=epochs * steps_per_epoch)

  tuner_class = TUNER_CLASSES[config["tuner"]]
  tuner = tuner_class(
      build, objective=keras_tuner.Objective(model_lib.OBJECTIVE, direction="max"),
      max_trials=config["tuner_trials"], hyperparameters=hp,
      directory=fn_args.working_dir, project_name="superres_tuning",
      seed=config.get("seed", 0), overwrite=True)

  transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  train = training_data.train_dataset(
      fn_args.train_files, transform_output, config["batch_size"], config["patch_size"],
      config["scale"])
  val = training_data.eval_dataset(fn_args.eval_files, transform_output,
                                   config["eval_batch_size"])
  return tfx.components.TunerFnResult(
      tuner=tuner,
      fit_kwargs={
          "x": train,
          "validation_data": val,
          "steps_per_epoch": steps_per_epoch,
          "epochs": epochs,
          "callbacks": [model_lib.early_stopping(config["patience"])],
          "verbose": 2,
      })
