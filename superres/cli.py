"""`superres`: run the pipeline, upscale images, evaluate models.

Argument errors print one line and exit with status 2; TensorFlow is imported only
once the arguments are known to be good.
"""
import argparse
import json
import os
import sys
import warnings

# Google client libraries warn about Python 3.10 support on import: noise for users.
warnings.filterwarnings("ignore", category=FutureWarning)
# Before TensorFlow loads: keep its C++ start-up chatter out of the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import configs  # pylint: disable=wrong-import-position

USAGE_ERROR = 2
FAILURE = 1


class UsageError(Exception):
  """A problem with what the user asked for: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):

  def error(self, message):
    raise UsageError(message)


def _scale(value: str) -> int:
  try:
    scale = int(value)
  except ValueError:
    scale = None
  if scale not in configs.SCALES:
    raise argparse.ArgumentTypeError(
        f"scale must be one of {', '.join(map(str, configs.SCALES))}, not {value!r}")
  return scale


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="superres", description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

  run = commands.add_parser("run", help="run the TFX pipeline end to end")
  run.add_argument("--profile", default=configs.DEFAULT_PROFILE, choices=sorted(configs.PROFILES))
  run.add_argument("--data", help="folder (or bucket path) of high-resolution images; "
                   "default: the photos bundled with scikit-image")
  run.add_argument("--scale", type=_scale, default=configs.DEFAULT_SCALE)
  run.add_argument("--pipeline-root", default=configs.DEFAULT_PIPELINE_ROOT)
  run.add_argument("--serving-dir", default=configs.DEFAULT_SERVING_DIR)
  run.add_argument("--strategy", default=configs.DEFAULT_STRATEGY, choices=configs.STRATEGIES)
  run.add_argument("--tuner", default=configs.DEFAULT_TUNER, choices=configs.TUNERS)
  run.add_argument("--runner", default="local", choices=("local", "beam"))
  run.add_argument("--beam-arg", action="append", default=[], dest="beam_args",
                   help="extra Beam pipeline option, repeatable "
                   "(e.g. --beam-arg=--direct_running_mode=multi_processing)")

  upscale = commands.add_parser("upscale", help="upscale one image with a pushed model")
  upscale.add_argument("input")
  upscale.add_argument("output")
  upscale.add_argument("--model", required=True,
                       help="a pushed SavedModel version, or a serving base directory")
  upscale.add_argument("--scale", type=_scale)

  evaluate = commands.add_parser("evaluate", help="PSNR/SSIM of a model and of bicubic")
  evaluate.add_argument("--model", required=True)
  evaluate.add_argument("--data", required=True, help="folder of high-resolution images")
  evaluate.add_argument("--scale", type=_scale)
  evaluate.add_argument("--json", action="store_true", help="print one JSON object")
  return parser


def _check_path_exists(path: str, what: str) -> None:
  if "://" not in path and not os.path.exists(path):
    raise UsageError(f"{what} {path} does not exist")


def _run(args) -> int:
  from superres import bundled_data  # pylint: disable=import-outside-toplevel
  if args.data is None:
    args.data = bundled_data.stage_training_photos(
        os.path.join(configs.HOME, "data", "bundled"))
    print(f"Data: {len(bundled_data.TRAINING_PHOTOS)} photos bundled with scikit-image, "
          f"staged in {args.data}")
  from components.image_example_gen import executor  # pylint: disable=import-outside-toplevel
  try:
    images = executor.list_image_files(args.data)
  except executor.NoImagesError as error:
    raise UsageError(str(error)) from error
  print(f"Found {len(images)} image files in {args.data}; profile '{args.profile}', "
        f"scale x{args.scale}", flush=True)

  from pipeline import local_runner  # pylint: disable=import-outside-toplevel
  from superres import report  # pylint: disable=import-outside-toplevel
  options = local_runner.RunOptions(
      data_root=args.data, pipeline_root=os.path.abspath(args.pipeline_root),
      serving_dir=os.path.abspath(args.serving_dir), profile=args.profile, scale=args.scale,
      strategy=args.strategy, tuner=args.tuner, runner=args.runner,
      beam_args=args.beam_args)
  summary = local_runner.run(options)
  print(report.format_summary(summary))
  if summary.anomalies:
    return FAILURE
  return 0


def _upscale(args) -> int:
  from superres import inference  # pylint: disable=import-outside-toplevel
  _check_path_exists(args.input, "input image")
  _check_path_exists(args.model, "model")
  height, width = inference.upscale_file(args.input, args.output, args.model, scale=args.scale)
  print(f"Wrote {args.output} ({width}x{height})")
  return 0


def _evaluate(args) -> int:
  from superres import evaluation  # pylint: disable=import-outside-toplevel
  _check_path_exists(args.model, "model")
  _check_path_exists(args.data, "data folder")
  result = evaluation.evaluate_folder(args.model, args.data, scale=args.scale)
  if args.json:
    print(json.dumps(result))
  else:
    from superres import report  # pylint: disable=import-outside-toplevel
    print(report.format_evaluation(result))
  return 0


COMMANDS = {"run": _run, "upscale": _upscale, "evaluate": _evaluate}


def main(argv=None) -> int:
  try:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)
  except UsageError as error:
    print(f"superres: error: {error}", file=sys.stderr)
    return USAGE_ERROR
  except ValueError as error:  # clear, user-facing errors raised by our own modules
    print(f"superres: error: {error}", file=sys.stderr)
    return FAILURE
  except KeyboardInterrupt:
    print("superres: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
