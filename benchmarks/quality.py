"""Quality, size and speed of super-resolution models, written to one JSON file.

For each model: scale, PSNR/SSIM of the model and of bicubic on a folder of photos
(superres_tfx.evaluation: Y channel, BT.601, `scale` border pixels cropped) and the gain,
the parameter count (read from the SavedModel's variables), the architecture and its
multiply-adds per output pixel when known, the checkerboard score of the outputs
(superres_tfx.checkerboard.checkerboard_score) and the time to upscale the folder on
this machine's CPU, per output megapixel, after a warm-up call.

Three modes, run from the repository root:

  Score pushed models (version directories or serving directories):
    python -m benchmarks.quality --models ~/.superres/serving other/serving --out q.json
        [--data DIR] [--architecture espcn [--width 64 --depth 1]]

  Train one model per scale with a profile, then score them (long: each scale runs
  `superres run`, into a work directory used as SUPERRES_HOME):
    python -m benchmarks.quality --train-profile default --scales 2 3 4 --out q.json
        [--work-dir DIR] [--train-data DIR]
  With --train-data (e.g. the corpus of `superres data fetch`), each model is also
  scored on that folder's test split (`--test-split-of DIR` for any folder, any mode).

  Compare upsampling layers for checkerboard artifacts: builds fsrcnn (transposed
  convolution), resize_conv (nearest upsampling + convolution) and espcn (sub-pixel
  shuffle), trains each briefly on the bundled training photos (--steps 0: leaves them
  untrained with their zero-initialised last layer randomised) and scores them:
    python -m benchmarks.quality --compare-upsampling --scales 2 3 --steps 200 --out q.json

`--data` defaults to the hold-out photos no model is trained on
(superres_tfx.bundled_data.holdout_photo_paths()).

The architecture of a pushed model is not stored beside it. With `--architecture`
(and optionally `--width`/`--depth`), or else by trying every architecture and size
of the pipeline's profiles, the benchmark rebuilds candidate networks and keeps the
one whose weight shapes equal the SavedModel's; `architecture_source` tells how it
was found. In --train-profile mode the Trainer's training.json names it.
"""
import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from benchmarks import output
from superres_tfx.components import export
from superres_tfx.components import image_listing
from superres_tfx.components import splits
from superres_tfx.imaging import image_ops
from superres_tfx.components import metrics
from superres_tfx.components.models import registry
from superres_tfx.pipeline import configs
from superres_tfx import bundled_data
from superres_tfx import checkerboard
from superres_tfx import evaluation
from superres_tfx.inference import upscaling
from superres_tfx import report

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIABLES_PREFIX = "model/"  # the network's weights inside the exported tf.Module
NOT_WEIGHTS = ("optimizer", "metric", "tracker", "seed_generator")

# Sizes tried when --architecture is given without --width/--depth and the
# profiles' search space has no match.
EXTRA_WIDTHS = (8, 16, 24, 32, 48, 56, 64, 96, 128)
EXTRA_DEPTHS = tuple(range(0, 9))

# --compare-upsampling
UPSAMPLING_ARCHITECTURES = ("fsrcnn", "resize_conv", "espcn")
COMPARE_WIDTH = 32
COMPARE_DEPTH = 1
COMPARE_BATCH = 16
COMPARE_PATCH = 48  # HR pixels, a multiple of 2, 3 and 4
COMPARE_LEARNING_RATE = 1e-3
PERTURB_STDDEV = 0.01


def saved_model_weight_shapes(version_dir: str) -> List[Tuple[int, ...]]:
  """Shapes of the network's weights in a SavedModel, read from its checkpoint.

  Optimizer slots and metric state that a compiled model drags along are left out.
  """
  checkpoint = os.path.join(version_dir, "variables", "variables")
  shapes = []
  for name, shape in tf.train.list_variables(checkpoint):
    if not name.startswith(VARIABLES_PREFIX):
      continue  # the `scale` variable, the object graph
    if any(word in name.lower() for word in NOT_WEIGHTS):
      continue
    shapes.append(tuple(int(d) for d in shape))
  return shapes


def parameter_count(shapes: Sequence[Tuple[int, ...]]) -> int:
  return int(sum(np.prod(shape, dtype=np.int64) for shape in shapes))


def _shape_signature(shapes) -> Tuple:
  return tuple(sorted(tuple(int(d) for d in shape) for shape in shapes))


def _profile_sizes(architecture: Optional[str]) -> List[Tuple[str, int, int]]:
  """(architecture, width, depth) the pipeline's profiles can train, in profile order."""
  sizes = []
  for profile in configs.PROFILES.values():
    for name in profile.architectures:
      if architecture not in (None, name):
        continue
      for width in profile.widths:
        for depth in profile.depths:
          if (name, width, depth) not in sizes:
            sizes.append((name, width, depth))
  return sizes


def identify_architecture(shapes, scale: int, architecture: Optional[str] = None,
                          width: Optional[int] = None,
                          depth: Optional[int] = None) -> Dict:
  """The registered architecture and size whose weights have exactly these shapes.

  Returns {"architecture", "width", "depth", "architecture_source",
  "multiply_adds_per_output_pixel"}; the first four are None when nothing matches.

  Raises:
    ValueError: an explicitly given architecture/size does not match the weights.
  """
  target = _shape_signature(shapes)
  unknown = {"architecture": None, "width": None, "depth": None,
             "architecture_source": None, "multiply_adds_per_output_pixel": None}
  if architecture is not None and width is not None and depth is not None:
    candidates, source = [(architecture, width, depth)], "given"
  elif architecture is not None:
    candidates = _profile_sizes(architecture) + [
        (architecture, w, d) for w in (EXTRA_WIDTHS if width is None else (width,))
        for d in (EXTRA_DEPTHS if depth is None else (depth,))]
    source = "given; size matched to the weights"
  else:
    candidates, source = _profile_sizes(None), "matched to the weights"
  seen = set()
  for name, w, d in candidates:
    if (name, w, d) in seen:
      continue
    seen.add((name, w, d))
    model = registry.build_model(name, scale, width=w, depth=d)
    if _shape_signature(tuple(v.shape) for v in model.weights) == target:
      return {"architecture": name, "width": w, "depth": d, "architecture_source": source,
              "multiply_adds_per_output_pixel":
                  float(registry.multiply_adds_per_output_pixel(model, scale))}
  if architecture is not None:
    size = (f"width {width}, depth {depth}" if width is not None and depth is not None
            else "any size tried")
    raise ValueError(
        f"architecture {architecture!r} ({size}) at x{scale} does not have the model's "
        f"{parameter_count(shapes):,} parameters in {len(shapes)} weights; pass the "
        f"architecture, --width and --depth the model was trained with, or omit them")
  return unknown


def _low_resolution_images(data_dir: str, files: Sequence[str], scale: int) -> List[np.ndarray]:
  """The evaluated files degraded as superres_tfx.evaluation degrades them."""
  images = []
  for name in files:
    hr = upscaling.read_image(os.path.join(data_dir, name))
    hr = image_ops.crop_to_multiple(tf.convert_to_tensor(hr, tf.float32), scale)
    images.append(image_ops.degrade_8bit(hr, scale).numpy())
  return images


def time_and_checkerboard(upscaler: upscaling.Upscaler, data_dir: str,
                          files: Sequence[str]) -> Dict:
  """Upscaling time per output megapixel (wall clock and process CPU) and checkerboard measures.

  Checkerboard scores (dB) and pattern sizes (grey levels of Y) are means over the
  images large enough to measure, None if there is none.

  The first image is upscaled once untimed (tracing, memory allocation); every
  image is then timed on its own, scoring outside the timed span.
  """
  s = upscaler.scale
  images = _low_resolution_images(data_dir, files, s)
  upscaler.upscale(images[0])  # warm-up
  wall = cpu = 0.0
  pixels = 0
  model_scores, pattern_sizes, bicubic_scores = [], [], []
  for lr in images:
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    sr = upscaler.upscale(lr)
    wall += time.perf_counter() - wall_start
    cpu += time.process_time() - cpu_start
    pixels += sr.shape[0] * sr.shape[1]
    if min(sr.shape[:2]) >= checkerboard.min_checkerboard_side(s):
      model_y = metrics.rgb_to_y(sr).numpy()
      bicubic_y = metrics.rgb_to_y(image_ops.upscale_bicubic(lr, s)).numpy()
      model_scores.append(checkerboard.checkerboard_score(model_y, s))
      pattern_sizes.append(checkerboard.periodic_pattern_rms(model_y, s))
      bicubic_scores.append(checkerboard.checkerboard_score(bicubic_y, s))
  megapixels = pixels / 1e6
  mean = lambda scores: float(np.mean(scores)) if scores else None  # all images too small
  return {"output_megapixels": megapixels,
          "ms_per_output_megapixel": 1000.0 * wall / megapixels,
          "cpu_ms_per_output_megapixel": 1000.0 * cpu / megapixels,
          "checkerboard_model": mean(model_scores),
          "pattern_rms_model": mean(pattern_sizes),
          "checkerboard_bicubic": mean(bicubic_scores)}


def score_model(model_path: str, data_dir: str, architecture: Optional[str] = None,
                width: Optional[int] = None, depth: Optional[int] = None,
                identify: bool = True, add_self_ensemble: bool = False) -> Dict:
  """Everything the benchmark records about one model on one folder of HR photos.

  Keys: model, scale, images, psnr_model, psnr_bicubic, ssim_model, ssim_bicubic,
  gain_db, ssim_gain, parameters, architecture, width, depth, architecture_source,
  multiply_adds_per_output_pixel, output_megapixels, ms_per_output_megapixel,
  cpu_ms_per_output_megapixel, checkerboard_model, pattern_rms_model,
  checkerboard_bicubic, self_ensemble, per_image, skipped. With identify=False and no
  architecture given, the architecture is not searched for (its keys are None).
  add_self_ensemble scores a model exported without self-ensemble as if it had it.
  """
  data_dir = os.path.abspath(os.path.expanduser(data_dir))
  upscaler = upscaling.load_model(model_path, add_self_ensemble)
  scores = evaluation.evaluate_folder(upscaler, data_dir)
  shapes = saved_model_weight_shapes(upscaler.version_dir)
  result = {"model": upscaler.version_dir, "scale": upscaler.scale, "images": scores["images"]}
  for key in ("psnr_model", "psnr_bicubic", "ssim_model", "ssim_bicubic", "gain_db"):
    result[key] = scores[key]
  result["ssim_gain"] = scores["ssim_model"] - scores["ssim_bicubic"]
  result["parameters"] = parameter_count(shapes)
  if identify or architecture is not None:
    result.update(identify_architecture(shapes, upscaler.scale, architecture, width, depth))
  else:
    result.update(architecture=None, width=None, depth=None, architecture_source=None,
                  multiply_adds_per_output_pixel=None)
  result["self_ensemble"] = upscaler.self_ensemble
  if upscaler.self_ensemble and result["multiply_adds_per_output_pixel"] is not None:
    result["multiply_adds_per_output_pixel"] *= image_ops.SELF_ENSEMBLE_PASSES
  files = [item["file"] for item in scores["per_image"]]
  result.update(time_and_checkerboard(upscaler, data_dir, files))
  result["per_image"] = scores["per_image"]
  result["skipped"] = scores["skipped"]
  return result


def score_test_split(model_path: str, folder: str, add_self_ensemble: bool = False) -> Dict:
  """PSNR/SSIM of the model and of bicubic on the photos of `folder` that ImageExampleGen
  puts in the test split (never trained on, never used to choose the model)."""
  folder = os.path.abspath(os.path.expanduser(folder))
  files = [name for name in image_listing.list_image_files(folder)
           if splits.split_of(name) == splits.TEST]
  if not files:
    return {"folder": folder, "error": "no photo of the folder is in the test split"}
  upscaler = upscaling.load_model(model_path, add_self_ensemble)
  scores = evaluation.evaluate_folder(upscaler, folder, files=files)
  return {"folder": folder, **{key: scores[key] for key in (
      "images", "psnr_model", "psnr_bicubic", "ssim_model", "ssim_bicubic", "gain_db")},
          "per_image": scores["per_image"]}


def _host() -> Dict:
  return {"machine": platform.machine(), "cpu_count": os.cpu_count(),
          "python": platform.python_version(), "tensorflow": tf.__version__,
          "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}


def _training_hyperparameters(pipeline_root: str) -> Optional[Dict]:
  """Hyperparameters in the newest training.json the Trainer wrote under pipeline_root."""
  found = glob.glob(os.path.join(pipeline_root, "**", "training.json"), recursive=True)
  if not found:
    return None
  with open(max(found, key=os.path.getmtime)) as f:
    return json.load(f).get("hyperparameters")


def _model_of_run(serving_dir: str, pipeline_root: str, scale: int) -> Tuple[str, bool]:
  """(model, pushed): what a run pushed or, when a gate refused it, the Trainer's own
  export, so that a refused model is measured too."""
  try:
    return upscaling.resolve_model_dir(serving_dir, scale), True
  except upscaling.ModelNotFoundError:
    found = glob.glob(os.path.join(pipeline_root, "Trainer", "model", "*", "Format-Serving"))
    if not found:
      raise ValueError(f"the run exported no model under {pipeline_root}") from None
    return max(found, key=lambda path: int(path.split(os.sep)[-2])), False


def train_and_score(profile: str, scales: Sequence[int], data_dir: str, work_dir: str,
                    train_data: Optional[str] = None,
                    test_split_of: Optional[str] = None,
                    run_args: Sequence[str] = ()) -> List[Dict]:
  """Runs `superres run --profile P --scale S` per scale into work_dir, scores each pushed
  model on data_dir (and on the test split of `test_split_of`)."""
  results = []
  env = dict(os.environ, SUPERRES_HOME=work_dir)
  for scale in scales:
    pipeline_root = os.path.join(work_dir, f"pipeline_x{scale}")
    serving_dir = os.path.join(work_dir, f"serving_x{scale}")
    log_path = os.path.join(work_dir, f"run_x{scale}.log")
    command = [sys.executable, "-m", "superres_tfx.cli", "run", "--profile", profile,
               "--scale", str(scale), "--pipeline-root", pipeline_root,
               "--serving-dir", serving_dir, *run_args]
    if train_data:
      command += ["--data", train_data]
    print(f"x{scale}: {' '.join(command)} (log: {log_path})", flush=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
      returncode = subprocess.call(command, cwd=REPO_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    entry = {"scale": scale, "profile": profile, "run_seconds": time.perf_counter() - start,
             "run_log": log_path}
    if returncode != 0:
      results.append({**entry, "error": f"superres run exited with status {returncode}; "
                                        f"see {log_path}"})
      continue
    hps = _training_hyperparameters(pipeline_root) or {}
    try:
      model, entry["pushed"] = _model_of_run(serving_dir, pipeline_root, scale)
      scored = score_model(model, data_dir, hps.get("architecture"), hps.get("width"),
                           hps.get("depth"))
    except ValueError as error:  # nothing trained, or unreadable data
      results.append({**entry, "error": str(error)})
      continue
    if hps:
      scored["architecture_source"] = "training.json"
      scored["hyperparameters"] = hps
    if test_split_of:
      scored["test_split"] = score_test_split(model, test_split_of)
    results.append({**entry, **scored})
  return results


def _training_pairs(scale: int, seed: int):
  """Endless batches of aligned (LR, HR) random crops of the bundled training photos."""
  rng = np.random.default_rng(seed)
  photos = [upscaling.read_image(path) for path in bundled_data.training_photo_paths()]
  photos = [p for p in photos if min(p.shape[:2]) >= COMPARE_PATCH]
  while True:
    crops = []
    for index in rng.integers(len(photos), size=COMPARE_BATCH):
      photo = photos[index]
      top = rng.integers(photo.shape[0] - COMPARE_PATCH + 1)
      left = rng.integers(photo.shape[1] - COMPARE_PATCH + 1)
      crops.append(photo[top:top + COMPARE_PATCH, left:left + COMPARE_PATCH])
    hr = tf.constant(np.stack(crops))
    yield image_ops.degrade_8bit(hr, scale), hr


def _perturb_zero_layers(model, seed: int) -> None:
  """Random weights where the architecture starts at zero, so an untrained net is not bicubic."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    for weight in layer.weights:
      value = weight.numpy()
      if value.ndim > 1 and not value.any():
        weight.assign(rng.normal(0.0, PERTURB_STDDEV, value.shape).astype(value.dtype))


def compare_upsampling(scales: Sequence[int], data_dir: str, work_dir: str, steps: int,
                       seed: int = 0) -> List[Dict]:
  """Scores fsrcnn / resize_conv / espcn after `steps` training steps (0: perturbed, untrained)."""
  results = []
  for scale in scales:
    for name in UPSAMPLING_ARCHITECTURES:
      keras.utils.set_random_seed(seed)
      model = registry.build_model(name, scale, width=COMPARE_WIDTH, depth=COMPARE_DEPTH)
      start = time.perf_counter()
      if steps > 0:
        model.compile(optimizer=keras.optimizers.Adam(COMPARE_LEARNING_RATE),
                      loss="mean_absolute_error")
        model.fit(_training_pairs(scale, seed), steps_per_epoch=steps, epochs=1, verbose=0)
      else:
        _perturb_zero_layers(model, seed)
      train_seconds = time.perf_counter() - start
      export_dir = os.path.join(work_dir, f"{name}_x{scale}")
      export.export_serving_model(model, scale, export_dir)
      scored = score_model(export_dir, data_dir, name, COMPARE_WIDTH, COMPARE_DEPTH)
      results.append({**scored, "train_steps": steps, "train_seconds": train_seconds})
      print(f"x{scale} {name}: checkerboard {scored['checkerboard_model']:+.1f} dB, "
            f"gain {scored['gain_db']:+.2f} dB", flush=True)
  return results


def _summary_table(models: List[Dict]) -> str:
  rows = []
  for m in models:
    if "error" in m:
      rows.append([f"x{m.get('scale', '?')}", m.get("model", "-"), "error: " + m["error"]])
      continue
    macs = m["multiply_adds_per_output_pixel"]
    rows.append([f"x{m['scale']}", m["architecture"] or "?", f"{m['gain_db']:+.2f}",
                 f"{m['psnr_model']:.2f}", f"{m['parameters']:,}",
                 "-" if macs is None else f"{macs:,.0f}",
                 f"{m['ms_per_output_megapixel']:.0f}",
                 "-" if m["checkerboard_model"] is None else
                 f"{m['checkerboard_model']:+.1f} ({m['pattern_rms_model']:.2f})"])
  return report.table(rows, ["scale", "architecture", "gain dB", "PSNR", "params",
                             "MACs/px", "ms/MP", "checkerboard dB (grey levels)"])


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.quality", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  mode = parser.add_mutually_exclusive_group(required=True)
  mode.add_argument("--models", nargs="+", metavar="DIR",
                    help="pushed SavedModel versions or serving directories to score")
  mode.add_argument("--train-profile", choices=sorted(configs.PROFILES),
                    help="train a model per --scales with this profile, then score it")
  mode.add_argument("--compare-upsampling", action="store_true",
                    help="checkerboard artifacts of fsrcnn vs resize_conv vs espcn")
  parser.add_argument("--out", required=True, metavar="FILE.json")
  parser.add_argument("--data", metavar="DIR",
                      help="high-resolution photos to score on; default: the hold-out photos")
  parser.add_argument("--architecture", choices=registry.architecture_names(),
                      help="architecture of the --models (default: matched to their weights)")
  parser.add_argument("--width", type=int, help="width of --architecture")
  parser.add_argument("--depth", type=int, help="depth of --architecture")
  parser.add_argument("--self-ensemble", action="store_true",
                      help="score the --models with the 8-fold flip/rotation self-ensemble "
                      "when they were exported without it")
  parser.add_argument("--scales", type=int, nargs="+", default=[configs.DEFAULT_SCALE],
                      choices=configs.SCALES)
  parser.add_argument("--work-dir", help="where --train-profile / --compare-upsampling put "
                      "their runs and models (kept); default: a new temporary folder")
  parser.add_argument("--train-data", metavar="DIR",
                      help="training photos for --train-profile; default: the bundled ones")
  parser.add_argument("--run-arg", action="append", default=[], dest="run_args",
                      help="with --train-profile: an option for `superres run`, repeatable "
                      "(e.g. --run-arg=--init=pretrained --run-arg=--train-steps=3000)")
  parser.add_argument("--test-split-of", metavar="DIR",
                      help="also score every model on the photos of DIR in the test split "
                      "(default with --train-data: that folder)")
  parser.add_argument("--steps", type=int, default=200,
                      help="training steps per network for --compare-upsampling (0: untrained, "
                      "last layer randomised)")
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  if (args.width is not None or args.depth is not None) and args.architecture is None:
    raise SystemExit("--width/--depth describe an --architecture; give it too")
  with tempfile.TemporaryDirectory(prefix="superres_holdout_") as holdout_dir:
    if args.data:
      data_dir, data_name = os.path.abspath(args.data), os.path.abspath(args.data)
      if not os.path.isdir(data_dir):
        raise SystemExit(f"--data {data_dir} is not a folder")
    else:
      data_dir = bundled_data.stage_holdout_photos(holdout_dir)
      data_name = "hold-out photos: " + ", ".join(bundled_data.HOLDOUT_PHOTOS)
    result = {"benchmark": "quality", "data": data_name, "host": _host(),
              "metric": "PSNR/SSIM on Y (BT.601), scale border pixels cropped"}
    if args.models:
      result["mode"] = "models"
      result["models"] = [score_model(path, data_dir, args.architecture, args.width,
                                      args.depth, add_self_ensemble=args.self_ensemble)
                          for path in args.models]
      if args.test_split_of:
        for path, model in zip(args.models, result["models"]):
          model["test_split"] = score_test_split(path, args.test_split_of, args.self_ensemble)
    else:
      work_dir = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix="superres_bench_"))
      os.makedirs(work_dir, exist_ok=True)
      if args.train_profile:
        result.update(mode="train_profile", profile=args.train_profile, work_dir=work_dir)
        result["models"] = train_and_score(args.train_profile, args.scales, data_dir, work_dir,
                                           args.train_data,
                                           args.test_split_of or args.train_data,
                                           args.run_args)
      else:
        result.update(mode="compare_upsampling", steps=args.steps, work_dir=work_dir)
        result["models"] = compare_upsampling(args.scales, data_dir, work_dir, args.steps)
  output.write_text(json.dumps(result, indent=1, default=str), args.out)
  print(_summary_table(result["models"]))
  print(f"Wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
