"""The search space and the compiled Keras 3 model, shared by the Tuner and the Trainer.

keras-tuner 1.4.7 only accepts Keras 3 models, so both components build the network
here, through the architecture registry, and train it the same way.
"""
import keras
import keras_tuner

from superres_tfx.components import metrics
from superres_tfx.components.models import registry

# Cosine decay ends at this fraction of the peak learning rate.
LR_DECAY_FLOOR = 0.01
# Linear warm-up: the nets start exactly at bicubic (zero-initialised tail), where
# Adam's first full-size steps overshoot; a short ramp avoids that.
WARMUP_FRACTION = 0.05
MAX_WARMUP_STEPS = 200
LOSSES = {"mae": "mean_absolute_error", "mse": "mean_squared_error"}
OBJECTIVE = "val_psnr"  # what the Tuner maximises and early stopping watches


# What define_search_space reads of custom_config.
SEARCH_SPACE_KEYS = ("learning_rates", "architectures", "widths", "depths", "dropouts")


def define_search_space(hp: keras_tuner.HyperParameters, space: dict) -> None:
  """Declares the hyperparameters; the learning rate first, as it matters most."""
  hp.Choice("learning_rate", list(space["learning_rates"]))
  hp.Choice("architecture", list(space["architectures"]))
  hp.Choice("width", list(space["widths"]))
  hp.Choice("depth", list(space["depths"]))
  hp.Choice("dropout", list(space["dropouts"]))


def build_compiled_model(hp: keras_tuner.HyperParameters, scale: int, loss: str,
                         decay_steps: int) -> keras.Model:
  model = registry.build_model(
      hp.get("architecture"), scale=scale, width=hp.get("width"),
      depth=hp.get("depth"), dropout=hp.get("dropout"))
  peak = hp.get("learning_rate")
  warmup_steps = min(MAX_WARMUP_STEPS, int(decay_steps * WARMUP_FRACTION))
  schedule = keras.optimizers.schedules.CosineDecay(
      peak * 0.1 if warmup_steps else peak, decay_steps=max(1, decay_steps - warmup_steps),
      alpha=LR_DECAY_FLOOR, warmup_target=peak if warmup_steps else None,
      warmup_steps=warmup_steps)
  if loss not in LOSSES:
    raise ValueError(f"Unknown loss {loss!r}; choose one of {sorted(LOSSES)}.")
  model.compile(optimizer=keras.optimizers.Adam(schedule), loss=LOSSES[loss],
                metrics=[metrics.psnr_metric])
  return model


def early_stopping(patience: int) -> keras.callbacks.EarlyStopping:
  return keras.callbacks.EarlyStopping(monitor=OBJECTIVE, mode="max", patience=patience,
                                       restore_best_weights=True)
