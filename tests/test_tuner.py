"""The Tuner's module function: a real Keras Tuner search over the architectures, on a
real Transform output of small photos."""
import json

import keras_tuner
import pytest
import skimage.data
from tfx.components.trainer import fn_args_utils

from superres_tfx.components import model as model_lib
from superres_tfx.components import tuner
from superres_tfx.pipeline import configs
from superres_tfx.pipeline import pipeline as pipeline_lib
from tests import transformed_data

SCALE = 2


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
  photos = [skimage.data.astronaut()[:96, :96], skimage.data.coffee()[:96, :96],
            skimage.data.chelsea()[:96, :96]]
  return transformed_data.write(str(tmp_path_factory.mktemp("transform")), photos,
                                transformed_data.smoke_config(SCALE))


def _fn_args(transformed, working_dir, search_type, **space):
  graph_dir, examples = transformed
  profile = configs.PROFILES["smoke"]
  config = pipeline_lib.custom_config_for(profile, SCALE, tuner=search_type)
  config.update({"tuner_steps": 4, "steps_per_epoch": 2, "tuner_trials": 4, **space})
  # Only the keys the pipeline gives the Tuner.
  config = {key: config[key] for key in pipeline_lib.TUNER_KEYS}
  return fn_args_utils.FnArgs(
      working_dir=working_dir, train_files=[examples], eval_files=[examples],
      transform_graph_path=graph_dir, custom_config=config)


def test_the_tuner_tries_every_architecture_and_keeps_the_best(transformed, tmp_path):
  fn_args = _fn_args(transformed, str(tmp_path), "grid",
                     architectures=["espcn", "fsrcnn", "resize_conv"], learning_rates=[1e-3])
  result = tuner.tuner_fn(fn_args)
  result.tuner.search(**result.fit_kwargs)

  trials = result.tuner.oracle.get_best_trials(num_trials=10)
  tried = {trial.hyperparameters.get("architecture") for trial in trials}
  assert tried == {"espcn", "fsrcnn", "resize_conv"}
  scores = {trial.hyperparameters.get("architecture"): trial.score for trial in trials}
  best = result.tuner.get_best_hyperparameters()[0]
  assert scores[best.get("architecture")] == max(scores.values())


@pytest.mark.parametrize("search_type", sorted(tuner.TUNER_CLASSES))
def test_every_search_type_searches_the_declared_space(transformed, tmp_path, search_type):
  fn_args = _fn_args(transformed, str(tmp_path), search_type, tuner_trials=1)
  result = tuner.tuner_fn(fn_args)
  assert isinstance(result.tuner, tuner.TUNER_CLASSES[search_type])
  names = [hp.name for hp in result.tuner.oracle.hyperparameters.space]
  assert names[0] == "learning_rate"  # explored first: it matters most
  assert set(names) == {"learning_rate", "architecture", "width", "depth", "dropout"}
  assert result.fit_kwargs["callbacks"][0].monitor == model_lib.OBJECTIVE


def test_search_objective_is_validation_psnr(transformed, tmp_path):
  result = tuner.tuner_fn(_fn_args(transformed, str(tmp_path), "random"))
  assert result.tuner.oracle.objective == keras_tuner.Objective(model_lib.OBJECTIVE, "max")


def _exec_custom_configs(tmp_path, **options):
  from superres_tfx.pipeline import local_runner  # pylint: disable=import-outside-toplevel
  pipeline = local_runner.build(local_runner.RunOptions(
      data_root=str(tmp_path / "images"), pipeline_root=str(tmp_path / "root"), **options))
  return {component.id: json.loads(component.exec_properties["custom_config"])
          for component in pipeline.components if component.id in ("Transform", "Tuner",
                                                                    "Trainer")}


@pytest.mark.parametrize("option", [
    {"train_steps": 123}, {"self_ensemble": False}, {"warm_start": True},
    {"strategy": "multi_worker_mirrored"}])
def test_knobs_tuning_does_not_read_leave_its_config_and_so_its_cache(tmp_path, option):
  plain = _exec_custom_configs(tmp_path)
  changed = _exec_custom_configs(tmp_path, **option)
  assert set(plain["Tuner"]) == set(pipeline_lib.TUNER_KEYS)
  assert changed["Tuner"] == plain["Tuner"] and changed["Transform"] == plain["Transform"]
  assert changed["Trainer"] != plain["Trainer"]  # the option does reach the Trainer


def test_search_knobs_change_the_tuner_config(tmp_path):
  plain = _exec_custom_configs(tmp_path)
  for option in ({"tuner": "random"}, {"scale": 3}, {"profile": "quality"}):
    assert _exec_custom_configs(tmp_path, **option)["Tuner"] != plain["Tuner"], option
