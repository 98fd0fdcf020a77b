"""SuperResolutionEvaluator: scores the trained model and blesses it (or not).

Why not TFX's Evaluator/TFMA: the blessing compares the model against bicubic
upscaling, a method rather than a model artifact, and TFMA's model diff compares one
candidate with one baseline model; SSIM also needs each image in 2-D while TFMA's
metric inputs are flat per-example arrays. This component keeps TFX's contract
instead: a ModelEvaluation plus a ModelBlessing carrying `blessed`, `current_model`
and `current_model_id`, so the standard Pusher and LatestBlessedModelStrategy work
unchanged.

It scores the test split, which neither the Tuner nor the Trainer's early stopping ever
saw, so the number that decides a push was not used to choose the model. A folder too
small to give test photos is scored on the eval split instead (or, with no eval photo
either, on the train split), and the verdict says so.
"""
import json
import os

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx.components.evaluator import constants
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, ModelEvaluation
from tfx.types.standard_artifacts import TransformGraph
from tfx.utils import path_utils

from superres_tfx import pretrained
from superres_tfx.components import splits
from superres_tfx.components import training_data
from superres_tfx.components.evaluator import gate
from superres_tfx.components.evaluator import scoring
from superres_tfx.core import names

Input = tfx.dsl.components.InputArtifact
Output = tfx.dsl.components.OutputArtifact
Param = tfx.dsl.components.Parameter


def _load(model_artifact):
  return scoring.load_upscaler(path_utils.serving_model_path(model_artifact.uri))


def _score(upscale, examples, transform_output, scale: int, split: str,
           tiles_per_photo: int) -> gate.Scores:
  pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
  pairs = training_data.eval_dataset(pattern, transform_output, training_data.EVAL_BATCH_SIZE,
                                     tiles_per_photo)
  return scoring.score(upscale, pairs.as_numpy_iterator(), scale)


def scored_split(examples) -> str:
  """The test split, or when a folder too small gave no test photo, eval, else train."""
  return splits.first_with_examples(examples, (splits.TEST, splits.EVAL, splits.TRAIN)) or (
      splits.TEST)


@tfx.dsl.components.component
def SuperResolutionEvaluator(  # pylint: disable=invalid-name
    examples: Input[Examples],
    transform_graph: Input[TransformGraph],
    model: Input[Model],
    evaluation: Output[ModelEvaluation],
    blessing: Output[ModelBlessing],
    scale: Param[int],
    min_gain_db: Param[float],
    max_regression_db: Param[float],
    eval_tiles_per_photo: Param[int],
    shipped_baseline: Param[int] = 0,  # 1: no last blessed model? the shipped one is it
    baseline_model: Input[Model] = None,  # the last blessed model, if any
) -> None:
  transform_output = tft.TFTransformOutput(transform_graph.uri)
  split = scored_split(examples)
  score = lambda upscale: _score(upscale, examples, transform_output, scale, split,
                                 eval_tiles_per_photo)
  candidate = score(_load(model))
  # A profile may ask for a smaller tolerance than the project's, never a larger one.
  max_regression_db = min(max_regression_db, gate.MAX_REGRESSION_DB)
  baseline = None
  if baseline_model is not None and baseline_model.uri == model.uri:
    baseline = candidate  # a re-run re-evaluating the blessed model itself
  elif baseline_model is not None:
    upscale = _load(baseline_model)
    baseline_scale = scoring.upscaling_factor(upscale)
    if baseline_scale == scale:
      baseline = score(upscale)
    else:
      # Each model name is its own pipeline, so its last blessed model has its scale;
      # a pipeline whose scale was changed at run time (a Kubeflow run parameter) may
      # still resolve one of another scale, which cannot be compared.
      logging.warning("Baseline %s upscales x%d, not x%d: not compared.", baseline_model.uri,
                      baseline_scale, scale)
  baseline_name = gate.LAST_BLESSED
  if baseline_model is None and shipped_baseline and pretrained.version_dir(scale):
    # The first model of a name must be no worse than the one the user already has.
    baseline = score(scoring.load_upscaler(pretrained.version_dir(scale)))
    baseline_name = gate.SHIPPED
  blessed, reason = gate.blessing_verdict(candidate, baseline, min_gain_db,
                                          max_regression_db, baseline_name)
  if split != splits.TEST:
    used = "also chose the model" if split == splits.EVAL else "it was trained on"
    reason = (f"{reason}; scored on the {split} split, which {used}: the folder is too "
              f"small to give {splits.TEST} photos")
  logging.info("Blessing: %s (%s)", blessed, reason)

  result = {"scale": scale, "split": split, "images": candidate.images,
            "psnr_model": candidate.psnr_model, "ssim_model": candidate.ssim_model,
            "psnr_bicubic": candidate.psnr_bicubic, "ssim_bicubic": candidate.ssim_bicubic,
            "gain_db": candidate.gain_db, "blessed": blessed, "reason": reason,
            "baseline_psnr_model": None if baseline is None else baseline.psnr_model,
            "baseline": None if baseline is None else baseline_name}
  with tf.io.gfile.GFile(os.path.join(evaluation.uri, names.METRICS_FILE), "w") as f:
    json.dump(result, f, indent=1)
  for key in ("psnr_model", "ssim_model", "psnr_bicubic", "ssim_bicubic", "gain_db"):
    evaluation.set_float_custom_property(key, result[key])
    blessing.set_float_custom_property(key, result[key])
  for artifact in (evaluation, blessing):
    artifact.set_string_custom_property("reason", reason)
    artifact.set_string_custom_property("split", split)

  # The contract of TFX's own Evaluator, read by the Pusher (model_utils.is_model_blessed)
  # and by LatestBlessedModelStrategy.
  verdict_file = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
  with tf.io.gfile.GFile(os.path.join(blessing.uri, verdict_file), "w") as f:
    f.write(reason)
  blessing.set_int_custom_property(
      constants.ARTIFACT_PROPERTY_BLESSED_KEY,
      constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE)
  blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                      model.uri)
  blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY,
                                   model.id)
