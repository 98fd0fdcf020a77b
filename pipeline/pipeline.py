"""The super-resolution DAG, from an image folder to a pushed SavedModel.

create_pipeline is a pure function of its arguments: every runner (local, Beam,
Kubeflow) and every test builds the same DAG from here.
"""
import os
from typing import Dict, List, Mapping, Optional

from tfx import v1 as tfx
from ml_metadata.proto import metadata_store_pb2

from superres_tfx import pretrained
from superres_tfx.core import errors
from superres_tfx.core import names
from superres_tfx.components import preprocessing
from superres_tfx.components import tuner as tuner_module
from superres_tfx.components.evaluator.component import SuperResolutionEvaluator
from superres_tfx.components.example_validation.component import ExampleValidator
from superres_tfx.components.image_example_gen.component import ImageExampleGen
from superres_tfx.components.infra_validator.component import InfraValidator
from superres_tfx.components.pusher.component import Pusher
from superres_tfx.pipeline import configs


# What Transform and the Tuner read of custom_config. Each gets only its keys, so a
# knob it does not read (train_steps, self_ensemble, warm_start, ...) leaves its
# execution properties, and so its cache, unchanged.
TRANSFORM_KEYS = preprocessing.CONFIG_KEYS
TUNER_KEYS = tuner_module.CONFIG_KEYS


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    schema_path: str,
    serving_model_dir: str,
    custom_config: Dict,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_tuning: bool = True,
    run_parameters: Optional[Mapping[str, tfx.dsl.experimental.RuntimeParameter]] = None,
) -> tfx.dsl.Pipeline:
  """custom_config: the profile's knobs plus scale, strategy and tuner (see configs).

  data_root may be a RuntimeParameter. run_parameters (Kubeflow only): RuntimeParameters
  named as in RUN_PARAMETERS, each overriding at run time the plain values it names there.
  """
  example_gen = ImageExampleGen(input_base=data_root)
  schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
  # With the schema, statistics know `image` for an image (image_domain): without it the
  # photos' bytes would be counted as categorical strings, a sketch holding up to a
  # thousand whole photos in memory.
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                schema=schema_gen.outputs["schema"])
  example_validator = ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                       schema=schema_gen.outputs["schema"])
  components = [example_gen, schema_gen, statistics_gen, example_validator]

  anomalies = example_validator.outputs["anomalies"].future()[0]
  # Data with anomalies never reaches training.
  with tfx.dsl.Cond(anomalies.custom_property(names.ANOMALIES_FOUND) == 0):
    # No statistics of Transform's own: StatisticsGen already has the raw data's, and
    # those of the PNG tiles it writes would sketch their bytes as strings.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=configs.PREPROCESSING_FN,
        custom_config=_subset(custom_config, TRANSFORM_KEYS), disable_statistics=True)
    components.append(transform)
    train_args = tfx.proto.TrainArgs(num_steps=custom_config["train_steps"])

    hyperparameters = None
    if enable_tuning:
      tuner = tfx.components.Tuner(
          tuner_fn=configs.TUNER_FN, examples=transform.outputs["transformed_examples"],
          transform_graph=transform.outputs["transform_graph"],
          train_args=tfx.proto.TrainArgs(num_steps=custom_config["tuner_steps"]),
          custom_config=_subset(custom_config, TUNER_KEYS))
      components.append(tuner)
      hyperparameters = tuner.outputs["best_hyperparameters"]

    # The last blessed model: the Evaluator's baseline, and the Trainer's starting
    # point when warm_start is set.
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")

    trainer = tfx.components.Trainer(
        run_fn=configs.RUN_FN, examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        # No eval_args: validation always covers the whole eval split (eval_tiles_per_photo
        # tiles of each photo).
        hyperparameters=hyperparameters, train_args=train_args,
        base_model=model_resolver.outputs["model"] if custom_config.get("warm_start") else None,
        custom_config=custom_config)

    evaluator = SuperResolutionEvaluator(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        model=trainer.outputs["model"], baseline_model=model_resolver.outputs["model"],
        scale=custom_config["scale"], min_gain_db=custom_config["min_gain_db"],
        max_regression_db=custom_config["max_regression_db"],
        eval_tiles_per_photo=custom_config["eval_tiles_per_photo"],
        shipped_baseline=int(custom_config["shipped_baseline"]))

    # The blessed model must load and answer in the serving runtime before it is pushed.
    infra_validator = InfraValidator(
        model=trainer.outputs["model"], examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        model_blessing=evaluator.outputs["blessing"], model_name=pipeline_name)

    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra_validator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=serving_model_dir)))
    components += [model_resolver, trainer, evaluator, infra_validator, pusher]

  if run_parameters:
    # Tuning does not read train_steps: a run changing only that reuses the cached Tuner.
    configured = [transform] + ([tuner] if enable_tuning else []) + [trainer, evaluator]
    # The Pusher's folder is named after the model, which the profile and scale name.
    _attach_run_parameters(run_parameters, {"profile": configured + [pusher],
                                            "scale": configured + [pusher],
                                            "train_steps": [trainer], "serving_dir": [pusher]})

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=True,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args or [],
  )


def _subset(custom_config: Dict, keys) -> Dict:
  return {key: custom_config[key] for key in keys}


# Kubeflow run parameters besides data_root: what each one overrides, and where. TFX's
# Transform and Tuner serialize custom_config when constructed, and the Kubeflow V2
# compiler substitutes a parameter only for a whole execution property, so each becomes
# an execution property of its own and the container entrypoint derives the values
# below from it before the executor starts (kubeflow/run_executor.py).
RUN_PARAMETERS = {
    "profile": "custom_config of Transform, Tuner and Trainer; the Evaluator's thresholds",
    "scale": "custom_config of Transform, Tuner and Trainer; the Evaluator's scale",
    "train_steps": "the Trainer's train_args and custom_config train_steps",
    "serving_dir": "the Pusher's base directory: <serving_dir>/<model name>",
}


def _attach_run_parameters(run_parameters, consumers) -> None:
  unknown = set(run_parameters) - set(RUN_PARAMETERS)
  if unknown:
    raise ValueError(f"Unknown run parameters {sorted(unknown)}: the pipeline takes "
                     f"{sorted(RUN_PARAMETERS)}.")
  for name, parameter in run_parameters.items():
    for component in consumers[name]:
      # After construction: no constructor would accept a parameter there.
      component.exec_properties[name] = parameter


def custom_config_for(profile: configs.Profile, scale: int, strategy: str = "mirrored",
                      tuner: str = "bayesian", seed: int = 0, warm_start: bool = False,
                      init: str = "scratch") -> Dict:
  """The plain-value configuration every module function receives.

  With init "pretrained" the network is the shipped model's of `scale` (the Trainer
  starts from its weights) and only the fine-tuning learning rates are searched.
  """
  if scale not in configs.SCALES:
    raise ValueError(f"scale must be one of {configs.SCALES}, not {scale}.")
  if init not in configs.INITS:
    raise ValueError(f"init must be one of {configs.INITS}, not {init!r}.")
  config = {key: (list(value) if isinstance(value, tuple) else value)
            for key, value in profile.__dict__.items()}
  config.update(scale=scale, strategy=strategy, tuner=tuner, seed=seed, warm_start=warm_start,
                init=init)
  if init == "pretrained":
    shipped = pretrained.settings(scale)
    if shipped is None:
      raise NoShippedModelError(
          f"no model is shipped for x{scale} (pretrained/ holds x"
          f"{', x'.join(map(str, pretrained.scales())) or ' none'}): train from scratch, "
          "without --init pretrained")
    config.update(architectures=[shipped["architecture"]], widths=[shipped["width"]],
                  depths=[shipped["depth"]], dropouts=[0.0],
                  learning_rates=list(configs.FINE_TUNE_LEARNING_RATES))
  return config


class NoShippedModelError(errors.SuperresError):
  """`--init pretrained` at a scale no model is shipped for."""


def bound_input_batches() -> None:
  """Batches of about 20 MiB of examples where TFX's components read them through TFXIO
  (StatisticsGen, Transform), instead of up to 1000 examples: 1000 phone photos are 8 GB.

  A process-wide setting of tfx_bsl; each orchestrator's entry point calls it before
  the components run.
  """
  # pylint: disable=import-outside-toplevel,unused-import
  from absl import flags
  from tfx_bsl.coders import batch_util  # noqa: F401  (defines the flag)
  flags.FLAGS.set_default("tfxio_use_byte_size_batching", True)


def metadata_config(pipeline_root: str) -> metadata_store_pb2.ConnectionConfig:
  return tfx.orchestration.metadata.sqlite_metadata_connection_config(
      os.path.join(pipeline_root, names.METADATA_FILE))
