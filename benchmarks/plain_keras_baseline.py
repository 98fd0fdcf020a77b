"""A deliberately plain Keras 3 super-resolution script: the reference the pipeline must match.

It trains the calibration recipe of the project's training notes with nothing but
Keras and NumPy (no TFX, no Transform, none of the pipeline's model or training
code) on the same photos the pipeline trains on, and scores the result on the same
unseen photos with the same scoring code as `superres evaluate`
(superres_tfx.evaluation.evaluate_image: Y channel, BT.601, `scale` border pixels
cropped, LR made by components.image_ops.degrade). If the pipeline's default profile
gains less over bicubic than this script, the pipeline loses something a short
script keeps.

The recipe: an ESPCN-style net Conv5x5(64, ReLU) -> Conv3x3(32, ReLU) -> Conv3x3(3 s^2)
-> depth_to_space, added to the bicubic upscaling of its input (global residual),
with the last convolution zero-initialised and the input centred (-0.5) so the ReLUs
do not die into a zero residual; random aligned HR 48x48 / LR 48/s crops from the
whole photos with the 8 flips/rotations, nearly flat patches mostly skipped; batch
32, MSE, Adam 1e-3 with cosine decay to 1e-5 over the run.

Training photos: superres_tfx.bundled_data.TRAINING_PHOTOS except the pipeline's eval
split (coins.png, ihc.png). Scored photos: the hold-out photos
(superres_tfx.bundled_data.HOLDOUT_PHOTOS, never trained on by anything) and skimage's
coins.png and ihc.png.

A fixed number of steps rather than a time budget keeps the result independent of
the machine's load. Run from the repository root:

  python -m benchmarks.plain_keras_baseline --steps 4800 [--scale 2] [--seed 0] [--out FILE]

4800 steps are about the notes' 10 minutes at 125 ms per step. It prints one JSON
object: per-image PSNR/SSIM of the model and of bicubic, the mean gain, steps, wall
seconds and the parameter count.
"""
import argparse
import os
import sys
import time
from typing import Iterator, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from benchmarks import output
from superres_tfx.imaging import image_ops
from superres_tfx.pipeline import configs
from superres_tfx import bundled_data
from superres_tfx import evaluation
from superres_tfx.inference import upscaling

# The pipeline's eval split of the bundled photos: scored here, never trained on.
PIPELINE_EVAL_PHOTOS = ("coins.png", "ihc.png")

HR_PATCH = 48  # HR pixels per side, a multiple of every scale in configs.SCALES
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
FINAL_LEARNING_RATE = 1e-5
INPUT_OFFSET = -0.5  # centres the [0, 1] input
# A patch whose HR standard deviation is below this is "flat" and kept only rarely.
FLAT_PATCH_STD = 0.02
FLAT_PATCH_KEEP_PROBABILITY = 0.1

Photo = Tuple[str, np.ndarray]  # file name, float32 RGB [H, W, 3] in [0, 1]


def default_train_paths() -> List[str]:
  return [path for path in bundled_data.training_photo_paths()
          if os.path.basename(path) not in PIPELINE_EVAL_PHOTOS]


def default_eval_paths() -> List[str]:
  pipeline_eval = [path for path in bundled_data.training_photo_paths()
                   if os.path.basename(path) in PIPELINE_EVAL_PHOTOS]
  return bundled_data.holdout_photo_paths() + pipeline_eval


class DepthToSpace(keras.layers.Layer):
  """Sub-pixel shuffle: [N, H, W, 3 s^2] -> [N, sH, sW, 3]."""

  def __init__(self, scale: int, **kwargs):
    super().__init__(**kwargs)
    self.scale = scale

  def call(self, inputs):
    return tf.nn.depth_to_space(inputs, self.scale)

  def compute_output_shape(self, input_shape):
    n, h, w, c = input_shape
    s = self.scale
    return (n, None if h is None else h * s, None if w is None else w * s, c // (s * s))


class BicubicUpscale(keras.layers.Layer):
  """The bicubic baseline (components.image_ops.upscale_bicubic) as a layer."""

  def __init__(self, scale: int, **kwargs):
    super().__init__(**kwargs)
    self.scale = scale

  def call(self, inputs):
    return image_ops.upscale_bicubic(inputs, self.scale)

  def compute_output_shape(self, input_shape):
    n, h, w, c = input_shape
    s = self.scale
    return (n, None if h is None else h * s, None if w is None else w * s, c)


def build_model(scale: int) -> keras.Model:
  """The calibration net: LR [N, H, W, 3] in [0, 1] -> SR [N, sH, sW, 3] (not clipped)."""
  lr = keras.Input(shape=(None, None, 3), name="lr")
  x = keras.layers.Rescaling(1.0, offset=INPUT_OFFSET)(lr)
  x = keras.layers.Conv2D(64, 5, padding="same", activation="relu")(x)
  x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
  # Zero-initialised: training starts from exactly bicubic instead of a random residual.
  x = keras.layers.Conv2D(3 * scale * scale, 3, padding="same", kernel_initializer="zeros")(x)
  residual = DepthToSpace(scale)(x)
  sr = keras.layers.Add()([residual, BicubicUpscale(scale)(lr)])
  return keras.Model(lr, sr, name="plain_espcn")


def load_photos(paths: Sequence[str], scale: int, max_side: Optional[int] = None) -> List[Photo]:
  """Photos read as superres_tfx.evaluation reads them, optionally centre-cropped to
  max_side pixels per side, then cropped to a multiple of `scale`."""
  photos = []
  for path in paths:
    hr = upscaling.read_image(path)
    if max_side is not None:
      top = max(0, (hr.shape[0] - max_side) // 2)
      left = max(0, (hr.shape[1] - max_side) // 2)
      hr = hr[top:top + max_side, left:left + max_side]
    hr = image_ops.crop_to_multiple(tf.convert_to_tensor(hr, tf.float32), scale).numpy()
    photos.append((os.path.basename(path), hr))
  return photos


def training_pairs(photos: Sequence[Photo], scale: int) -> List[Tuple[np.ndarray, np.ndarray]]:
  """(lr, hr) of every training photo, each degraded whole (as evaluation degrades it)."""
  pairs = []
  for name, hr in photos:
    if min(hr.shape[:2]) < HR_PATCH:
      raise ValueError(
          f"training photo {name} is {hr.shape[1]}x{hr.shape[0]} pixels: each side needs "
          f"at least {HR_PATCH} for the HR patches; use a larger photo or max_side")
    pairs.append((image_ops.degrade_8bit(tf.convert_to_tensor(hr), scale).numpy(), hr))
  return pairs


def patch_batches(pairs: Sequence[Tuple[np.ndarray, np.ndarray]], scale: int, batch_size: int,
                  rng: np.random.Generator) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
  """Endless (lr, hr) batches of random aligned crops with the 8 flips/rotations.

  A crop takes HR_PATCH/s LR pixels and the HR pixels they came from; photos are
  drawn uniformly, nearly flat crops are mostly skipped.
  """
  lr_patch = HR_PATCH // scale
  while True:
    lr_batch = np.empty([batch_size, lr_patch, lr_patch, 3], np.float32)
    hr_batch = np.empty([batch_size, HR_PATCH, HR_PATCH, 3], np.float32)
    filled = 0
    while filled < batch_size:
      lr, hr = pairs[rng.integers(len(pairs))]
      top = rng.integers(lr.shape[0] - lr_patch + 1)
      left = rng.integers(lr.shape[1] - lr_patch + 1)
      hr_crop = hr[top * scale:(top + lr_patch) * scale, left * scale:(left + lr_patch) * scale]
      if hr_crop.std() <= FLAT_PATCH_STD and rng.random() >= FLAT_PATCH_KEEP_PROBABILITY:
        continue
      lr_crop = lr[top:top + lr_patch, left:left + lr_patch]
      k, flip = rng.integers(4), rng.random() < 0.5
      lr_crop, hr_crop = np.rot90(lr_crop, k), np.rot90(hr_crop, k)
      if flip:
        lr_crop, hr_crop = lr_crop[:, ::-1], hr_crop[:, ::-1]
      lr_batch[filled], hr_batch[filled] = lr_crop, hr_crop
      filled += 1
    yield lr_batch, hr_batch


class KerasUpscaler:
  """The trained network behind the interface superres_tfx.evaluation scores
  (`scale`, `upscale(lr)` -> float [sH, sW, 3] clipped to [0, 1])."""

  def __init__(self, model: keras.Model, scale: int):
    self.model = model
    self.scale = scale

  def upscale(self, lr) -> np.ndarray:
    lr = tf.convert_to_tensor(lr, tf.float32)[tf.newaxis]
    return tf.clip_by_value(self.model(lr, training=False), 0.0, 1.0)[0].numpy()


def score(upscaler: KerasUpscaler, photos: Sequence[Photo]) -> dict:
  """Per-image and mean PSNR/SSIM of the model and of bicubic, as `superres evaluate` reports."""
  min_side = evaluation.min_image_side(upscaler.scale)
  per_image = []
  for name, hr in photos:
    if min(hr.shape[:2]) < min_side:
      raise ValueError(
          f"scored photo {name} is {hr.shape[1]}x{hr.shape[0]} pixels: at scale "
          f"{upscaler.scale} each side needs at least {min_side}")
    scores = evaluation.evaluate_image(upscaler, hr)
    per_image.append({"file": name, **scores,
                      "gain_db": scores["psnr_model"] - scores["psnr_bicubic"]})
  summary = {key: float(np.mean([item[key] for item in per_image]))
             for key in ("psnr_model", "psnr_bicubic", "ssim_model", "ssim_bicubic")}
  summary["gain_db"] = summary["psnr_model"] - summary["psnr_bicubic"]
  summary["per_image"] = per_image
  return summary


def run_benchmark(steps: int, scale: int = configs.DEFAULT_SCALE, seed: int = 0,
                  train_paths: Optional[Sequence[str]] = None,
                  eval_paths: Optional[Sequence[str]] = None,
                  max_side: Optional[int] = None, batch_size: int = BATCH_SIZE) -> dict:
  """Trains the recipe for `steps` batches and scores it; returns the JSON-ready result."""
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if scale not in configs.SCALES:
    raise ValueError(f"scale must be one of {configs.SCALES}, got {scale}")
  start = time.perf_counter()
  train_photos = load_photos(train_paths or default_train_paths(), scale, max_side)
  eval_photos = load_photos(eval_paths or default_eval_paths(), scale, max_side)

  keras.utils.set_random_seed(seed)
  model = build_model(scale)
  schedule = keras.optimizers.schedules.CosineDecay(
      LEARNING_RATE, decay_steps=steps, alpha=FINAL_LEARNING_RATE / LEARNING_RATE)
  model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
  batches = patch_batches(training_pairs(train_photos, scale), scale, batch_size,
                          np.random.default_rng(seed))

  train_start = time.perf_counter()
  history = model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
  train_seconds = time.perf_counter() - train_start

  result = {
      "scale": scale, "steps": steps, "seed": seed, "batch_size": batch_size,
      "hr_patch": HR_PATCH, "parameters": int(model.count_params()),
      "final_train_loss": float(history.history["loss"][-1]),
      "train_photos": [name for name, _ in train_photos],
      "eval_photos": [name for name, _ in eval_photos],
      "max_side": max_side,
  }
  result.update(score(KerasUpscaler(model, scale), eval_photos))
  result.update(
      train_seconds=train_seconds, ms_per_step=1000.0 * train_seconds / steps,
      wall_seconds=time.perf_counter() - start,
      versions={"tensorflow": tf.__version__, "keras": keras.__version__})
  return result


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.plain_keras_baseline",
      description="Train the plain Keras calibration recipe and score it like `superres evaluate`.")
  parser.add_argument("--steps", type=int, required=True, help="training steps (batches)")
  parser.add_argument("--scale", type=int, default=configs.DEFAULT_SCALE, choices=configs.SCALES)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", help="also write the JSON to this file")
  parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
  parser.add_argument("--train-photos", nargs="+", metavar="FILE",
                      help="photos to train on (default: the bundled training photos "
                           "except coins.png and ihc.png)")
  parser.add_argument("--eval-photos", nargs="+", metavar="FILE",
                      help="photos to score on (default: the hold-out photos, coins.png, ihc.png)")
  parser.add_argument("--max-side", type=int,
                      help="centre-crop every photo to at most this many pixels per side")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
  args = parse_args(argv)
  try:
    result = run_benchmark(args.steps, args.scale, args.seed, args.train_photos,
                           args.eval_photos, args.max_side, args.batch_size)
  except ValueError as error:  # also unreadable photos (upscaling.ImageReadError)
    sys.exit(f"plain_keras_baseline: {error}")
  output.emit(result, args.out)
  return result


if __name__ == "__main__":
  main()
