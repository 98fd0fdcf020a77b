"""Every knob of the pipeline, in one place.

Profiles trade time for quality; each is a frozen dataclass so a profile can be
printed, compared and passed to the DAG as plain values.
"""
import dataclasses
import os
from typing import Tuple

from superres_tfx.components.evaluator.gate import MAX_REGRESSION_DB
from superres_tfx.core import names
from superres_tfx.core.names import DEFAULT_SCALE, SCALES  # noqa: F401  (the scales runs take)


def model_name_for(scale: int, profile_name: str = "default") -> str:
  """superres-x<scale>, plus the profile's suffix (core/names.py)."""
  return names.model_name(scale, PROFILES[profile_name].name_suffix)


SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "schemas")

# Dotted paths of the user functions (TFX imports them by name, as the templates do).
PREPROCESSING_FN = "superres_tfx.components.preprocessing.preprocessing_fn"
TUNER_FN = "superres_tfx.components.tuner.tuner_fn"
RUN_FN = "superres_tfx.components.trainer.run_fn"

TUNERS = ("bayesian", "random", "grid")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored")


@dataclasses.dataclass(frozen=True)
class Profile:
  """How long and how hard to train. Sizes are in high-resolution pixels."""
  name: str
  # Transform keeps hr_size x hr_size tiles of each photo (hr_size a multiple of 12), the
  # most detailed first: tiles_per_megapixel of them per megapixel, at least min_tiles
  # and at most max_tiles (imaging/tile_selection.py).
  hr_size: int
  patch_size: int  # random HR crops fed to the network (a multiple of 12)
  batch_size: int
  train_steps: int
  tuner_trials: int
  tuner_steps: int  # training steps per tuner trial
  steps_per_epoch: int  # how often validation (and early stopping) looks
  patience: int  # epochs without validation PSNR gain before stopping
  architectures: Tuple[str, ...]
  widths: Tuple[int, ...]
  depths: Tuple[int, ...]
  learning_rates: Tuple[float, ...]
  dropouts: Tuple[float, ...]
  tiles_per_megapixel: float = 8.0
  min_tiles: int = 4
  max_tiles: int = 64
  # Tiles are chosen from the photo and its halvings, this many levels in all: a big
  # photo soft at the pixel level gives its halved, sharper detail.
  pyramid_levels: int = 3
  # Validation (Tuner, Trainer) and the Evaluator score this many tiles of each photo,
  # its most detailed: their cost is bounded by the number of photos, not their size.
  eval_tiles_per_photo: int = 8
  loss: str = "mae"
  # Blessing: gain over bicubic (dB, Y channel) a model must reach, and how much
  # worse than the last blessed model it may be.
  min_gain_db: float = 0.0
  max_regression_db: float = MAX_REGRESSION_DB
  # The exported model averages its output over the 8 flips/rotations of the input:
  # 8x the inference time for +0.14 to +0.18 dB on unseen photos (EDSR+).
  self_ensemble: bool = False
  # Appended to the model's name: a profile that only checks an install pushes under
  # its own name, never over a production model.
  name_suffix: str = ""
  # With no blessed model of its name yet, a model is blessed only if it is no worse
  # than the one shipped for its scale (pretrained/): the model a user already has.
  shipped_baseline: bool = True

  def __post_init__(self):
    # A profile may demand more than the project's gate, never less.
    if self.max_regression_db > MAX_REGRESSION_DB:
      raise ValueError(f"profile {self.name!r}: max_regression_db {self.max_regression_db} "
                       f"is above the project's limit of {MAX_REGRESSION_DB} dB")


PROFILES = {
    # Seconds: proves every component runs. Not a useful model.
    "smoke": Profile(
        name="smoke", hr_size=48, max_tiles=4, eval_tiles_per_photo=2, patch_size=24,
        batch_size=4, train_steps=6,
        tuner_trials=1, tuner_steps=2, steps_per_epoch=3, patience=2,
        architectures=("espcn",), widths=(8,), depths=(1,),
        learning_rates=(1e-3,), dropouts=(0.0,), min_gain_db=-100.0, name_suffix="-smoke",
        shipped_baseline=False),
    # About 10-15 minutes on 2 CPU cores, tuning included.
    "default": Profile(
        name="default", hr_size=240, patch_size=48, batch_size=32,
        train_steps=10000,
        tuner_trials=4, tuner_steps=150, steps_per_epoch=1000,
        # resize_conv convolves at high resolution (~3x slower per step here): it is
        # searched by the quality profile, whose budget has room for it.
        patience=4, architectures=("espcn", "fsrcnn"),
        widths=(64,), depths=(1, 2), learning_rates=(1e-3, 3e-4),
        dropouts=(0.0,), loss="mse", min_gain_db=0.5, self_ensemble=True),
    # About an hour: the residual network and a longer schedule (~0.15 s a step here).
    # Only EDSR is searched: short tuner trials rank the small nets, which learn fast,
    # above EDSR, which ends better (+0.19 dB on the hold-out photos after 10000 steps).
    "quality": Profile(
        name="quality", hr_size=240, patch_size=60, batch_size=16,
        train_steps=20000,
        tuner_trials=2, tuner_steps=300, steps_per_epoch=1000,
        patience=5, architectures=("edsr",), widths=(64,), depths=(4,),
        learning_rates=(1e-3, 5e-4), dropouts=(0.0,), min_gain_db=1.0, self_ensemble=True),
}
DEFAULT_PROFILE = "default"
SHIPPED_PROFILE = "quality"  # what `superres models build` trains the shipped models with

# Where training starts: from scratch, or (`--init pretrained`) from the model shipped
# for the run's scale, whose network is then fixed: the Tuner searches only these
# learning rates, and early stopping on the eval split sets how long to fine-tune.
INITS = ("scratch", "pretrained")
FINE_TUNE_LEARNING_RATES = (1e-4, 3e-5)
MODEL_NAME = model_name_for(DEFAULT_SCALE, DEFAULT_PROFILE)  # what a bare `superres run` pushes

DEFAULT_STRATEGY = "mirrored"
DEFAULT_TUNER = "bayesian"
# In-process Beam; `--beam-arg` adds or overrides options (e.g. multi_processing).
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")

# Kubeflow Pipelines (KubeflowV2DagRunner). The container holds this repository at
# CONTAINER_SOURCE_DIR, installed into the official TFX image of the pinned version.
KUBEFLOW_IMAGE = os.environ.get("SUPERRES_IMAGE", "superres-tfx:latest")
CONTAINER_SOURCE_DIR = "/superres-tfx"
KUBEFLOW_PIPELINE_ROOT = os.environ.get("SUPERRES_KFP_ROOT", "gs://YOUR-BUCKET/superres/pipeline")
KUBEFLOW_DATA_ROOT = os.environ.get("SUPERRES_KFP_DATA", "gs://YOUR-BUCKET/superres/images")
KUBEFLOW_SERVING_DIR = os.environ.get("SUPERRES_KFP_SERVING",
                                      "gs://YOUR-BUCKET/superres/serving")
