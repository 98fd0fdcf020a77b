"""The run parameters of the compiled pipeline: their types, checks, and what they change.

data_root is ImageExampleGen's input_base itself. The others (pipeline.RUN_PARAMETERS)
are extra execution properties of the components they configure; `apply` turns them
into the values those components' executors read, exactly as a local run built with
the same plain values would have them.
"""
import json
import posixpath
from typing import Any, Dict, Mapping

from superres_tfx.core import errors
from superres_tfx.pipeline import configs
from superres_tfx.pipeline import pipeline as pipeline_lib

DATA_ROOT = "data_root"
PROFILE = "profile"
SCALE = "scale"
TRAIN_STEPS = "train_steps"
SERVING_DIR = "serving_dir"
TYPES = {DATA_ROOT: str, PROFILE: str, SCALE: int, TRAIN_STEPS: int, SERVING_DIR: str}
assert set(TYPES) == set(pipeline_lib.RUN_PARAMETERS) | {DATA_ROOT}

# Execution properties `apply` rewrites (TFX's names, and the Evaluator's).
CUSTOM_CONFIG = "custom_config"
TRAIN_ARGS = "train_args"
PUSH_DESTINATION = "push_destination"
# The Evaluator's parameters a profile sets (named as the profile's fields).
EVALUATOR_SETTINGS = ("min_gain_db", "max_regression_db", "eval_tiles_per_photo",
                      "shipped_baseline")
# Knobs of custom_config that come from the command line, not from the profile.
RUN_KNOBS = ("strategy", "tuner", "seed", "warm_start", "init")


class RunParameterError(errors.SuperresError):
  """A run parameter's value the pipeline cannot take."""


def check(values: Mapping[str, Any]) -> Dict[str, Any]:
  """Values of run parameters, converted to their types; RunParameterError names a bad one."""
  result = {}
  for name, value in values.items():
    if name not in TYPES:
      raise RunParameterError(
          f"Unknown run parameter '{name}': the pipeline takes {sorted(TYPES)}.")
    try:
      result[name] = TYPES[name](value)
    except (TypeError, ValueError):
      raise RunParameterError(f"Run parameter {name} must be {TYPES[name].__name__}, "
                              f"not {value!r}.") from None
    if TYPES[name] is int and result[name] != float(value):
      raise RunParameterError(f"Run parameter {name} must be a whole number, not {value!r}.")
  if PROFILE in result and result[PROFILE] not in configs.PROFILES:
    raise RunParameterError(f"Run parameter {PROFILE} must be one of "
                            f"{sorted(configs.PROFILES)}, not '{result[PROFILE]}'.")
  if SCALE in result and result[SCALE] not in configs.SCALES:
    raise RunParameterError(f"Run parameter {SCALE} must be one of {configs.SCALES}, "
                            f"not {result[SCALE]}.")
  if TRAIN_STEPS in result and result[TRAIN_STEPS] < 0:
    raise RunParameterError(
        f"Run parameter {TRAIN_STEPS} must be 0 or more, not {result[TRAIN_STEPS]}.")
  for name in (DATA_ROOT, SERVING_DIR):
    if name in result and not result[name].strip():
      raise RunParameterError(f"Run parameter {name} must not be empty.")
  return result


def _custom_config(compiled: str, profile: str, scale: int, train_steps) -> str:
  config = json.loads(compiled)
  full = pipeline_lib.custom_config_for(
      configs.PROFILES[profile or config["name"]], scale or config["scale"],
      **{knob: config[knob] for knob in RUN_KNOBS if knob in config})
  if train_steps is not None:
    full["train_steps"] = train_steps
  # Transform's is a subset: it keeps its keys, and so its cache.
  return json.dumps({key: full.get(key, value) for key, value in config.items()}, sort_keys=True)


def apply(properties: Mapping[str, Any]) -> Dict[str, Any]:
  """One task's execution properties with the run parameters among them applied.

  The parameters stay in the result (executors ignore properties they do not know).
  """
  result = dict(properties)
  parameters = check({name: properties[name] for name in pipeline_lib.RUN_PARAMETERS
                      if name in properties})
  profile, scale = parameters.get(PROFILE), parameters.get(SCALE)
  train_steps = parameters.get(TRAIN_STEPS)
  # The Pusher's custom_config is TFX's own (null): only the module functions' is ours.
  if (CUSTOM_CONFIG in result and (profile or scale or train_steps is not None)
      and isinstance(json.loads(result[CUSTOM_CONFIG] or "null"), dict)):
    result[CUSTOM_CONFIG] = _custom_config(result[CUSTOM_CONFIG], profile, scale, train_steps)
  if profile and all(name in result for name in EVALUATOR_SETTINGS):
    for name in EVALUATOR_SETTINGS:
      # Of the compiled value's type: Kubeflow passes ints and floats apart.
      result[name] = type(result[name])(getattr(configs.PROFILES[profile], name))
  if train_steps is not None and TRAIN_ARGS in result:
    train_args = json.loads(result[TRAIN_ARGS])
    train_args["num_steps"] = train_steps
    result[TRAIN_ARGS] = json.dumps(train_args, sort_keys=True)
  if SERVING_DIR in parameters and PUSH_DESTINATION in result:
    # The serving name follows the model a run trains: a run of the superres-x2
    # pipeline with scale 3 pushes to <serving_dir>/superres-x3.
    destination = json.loads(result[PUSH_DESTINATION])
    compiled = posixpath.basename(destination.get("filesystem", {}).get("base_directory", ""))
    name = (configs.model_name_for(parameters[SCALE], parameters[PROFILE])
            if SCALE in parameters and PROFILE in parameters else compiled)
    destination.setdefault("filesystem", {})["base_directory"] = posixpath.join(
        parameters[SERVING_DIR], name)
    result[PUSH_DESTINATION] = json.dumps(destination, sort_keys=True)
  return result
