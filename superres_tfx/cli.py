"""`superres`: run the pipeline, upscale images, evaluate models.

Argument errors print one line and exit with status 2; TensorFlow is imported only
once the arguments are known to be good.
"""
import argparse
import json
import os
import sys
import warnings
from typing import Optional

# Google client libraries warn about Python 3.10 support on import: noise for users.
warnings.filterwarnings("ignore", category=FutureWarning)
# Before TensorFlow loads: keep its C++ start-up chatter (CUDA plug-in registration
# on CPU machines) out of the terminal; Python errors are unaffected.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# gRPC's C core notes forks and thread use on stderr (the InfraValidator's clients).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from superres_tfx.core import errors  # pylint: disable=wrong-import-position
from superres_tfx.core import home  # pylint: disable=wrong-import-position
from superres_tfx.core import names  # pylint: disable=wrong-import-position
from superres_tfx.kubeflow import compile_options  # pylint: disable=wrong-import-position
from superres_tfx.pipeline import configs  # pylint: disable=wrong-import-position
from superres_tfx.serving import launcher  # pylint: disable=wrong-import-position  (imports no TensorFlow)

USAGE_ERROR = 2
FAILURE = 1
DATASETS = ("corpus", "div2k")  # what `superres data fetch` stages; the first is the default


class UsageError(Exception):
  """A problem with what the user asked for: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):

  def error(self, message):
    raise UsageError(message)


def _steps(value: str) -> int:
  if not value.isdigit():
    raise argparse.ArgumentTypeError(f"steps must be a whole number >= 0, not {value!r}")
  return int(value)


def _scale(value: str) -> int:
  try:
    scale = int(value)
  except ValueError:
    scale = None
  if scale not in configs.SCALES:
    raise argparse.ArgumentTypeError(
        f"scale must be one of {', '.join(map(str, configs.SCALES))}, not {value!r}")
  return scale


def _model_name(value: str) -> str:
  try:
    return names.check_model_name(value)
  except ValueError as error:
    raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="superres", description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

  run = commands.add_parser("run", help="run the TFX pipeline end to end")
  run.add_argument("--profile", default=configs.DEFAULT_PROFILE, choices=sorted(configs.PROFILES))
  run.add_argument("--data", help="folder (or bucket path) of high-resolution images; "
                   "default: the photos bundled with scikit-image")
  run.add_argument("--scale", type=_scale, default=configs.DEFAULT_SCALE)
  run.add_argument("--model-name", type=_model_name,
                   help="the model's name: its pipeline, its lineage, its serving folder "
                   "(default: superres-x<scale>, plus -smoke for the smoke profile)")
  run.add_argument("--pipeline-root", default=home.PIPELINE_ROOT)
  run.add_argument("--serving-dir", default=home.SERVING_DIR)
  run.add_argument("--strategy", default=configs.DEFAULT_STRATEGY, choices=configs.STRATEGIES)
  run.add_argument("--tuner", default=configs.DEFAULT_TUNER, choices=configs.TUNERS)
  run.add_argument("--runner", default="local", choices=("local", "beam"))
  start = run.add_mutually_exclusive_group()
  start.add_argument("--warm-start", action="store_true",
                     help="start training from the last blessed model of the same "
                     "architecture and scale")
  start.add_argument("--init", choices=configs.INITS, default=configs.INITS[0],
                     help="pretrained: fine-tune the model shipped for the scale (its "
                     "network; the Tuner searches only the learning rate); default: "
                     "%(default)s")
  run.add_argument("--train-steps", type=_steps, metavar="N",
                   help="training steps, overriding the profile's (0 exports the untrained "
                   "network: a way to see the regression gate refuse a worse model)")
  run.add_argument("--self-ensemble", action=argparse.BooleanOptionalAction,
                   help="export a model that averages its output over the 8 flips/rotations "
                   "of the input: 8x slower inference, sharper results (default: the "
                   "profile's choice)")
  run.add_argument("--beam-arg", action="append", default=[], dest="beam_args",
                   help="extra Beam pipeline option, repeatable "
                   "(e.g. --beam-arg=--direct_running_mode=multi_processing)")

  upscale = commands.add_parser("upscale", help="upscale one image with a pushed model")
  upscale.add_argument("input")
  upscale.add_argument("output")
  source = upscale.add_mutually_exclusive_group()
  source.add_argument("--model", help="a pushed SavedModel version, a model's serving folder, "
                      "or a serving directory (default: the newest superres-x<scale> pushed "
                      "to the default serving directory, else the one shipped with "
                      "superres-tfx)")
  source.add_argument("--server", help="a model server's REST URL, e.g. http://127.0.0.1:8501")
  source.add_argument("--grpc", help="a model server's gRPC address, e.g. 127.0.0.1:8500")
  upscale.add_argument("--name", type=_model_name,
                       help="model name on the server (with --server/--grpc; default: "
                       "superres-x<scale>)")
  upscale.add_argument("--scale", type=_scale)
  upscale.add_argument("--self-ensemble", action="store_true",
                       help="average the model's output over the 8 flips/rotations of the "
                       "photo (a model exported without it): 8x slower, a little sharper")

  models = commands.add_parser("models", help="the models shipped with superres-tfx")
  models_commands = models.add_subparsers(dest="models_command", required=True,
                                          metavar="{list,install,build}", parser_class=_Parser)
  models_commands.add_parser("list", help="each shipped model: scale, network, scores")
  install = models_commands.add_parser(
      "install", help="copy the shipped models into a serving directory as version 1 of "
      "each model that has no version there yet, so `superres serve` answers at once")
  install.add_argument("--serving-dir", default=home.SERVING_DIR)
  build = models_commands.add_parser(
      "build", help="train the shipped models again with this pipeline and write them, "
      "with their model cards, into the checkout's pretrained/ folder")
  build.add_argument("--data", required=True,
                     help="the photos to train on (e.g. ~/.superres/data/corpus)")
  build.add_argument("--scales", type=_scale, nargs="+", default=list(configs.SCALES))
  build.add_argument("--profile", default=configs.SHIPPED_PROFILE, choices=sorted(configs.PROFILES))
  build.add_argument("--train-steps", type=_steps, metavar="N",
                     help="training steps per model (default: the profile's)")
  build.add_argument("--work", default=os.path.join(home.HOME, "model-zoo"),
                     help="where the training runs keep their pipeline root (default: "
                     "%(default)s)")

  serve = commands.add_parser(
      "serve", help="serve pushed models over TF Serving's REST and gRPC APIs")
  launcher.add_arguments(serve)

  evaluate = commands.add_parser("evaluate", help="PSNR/SSIM of a model and of bicubic")
  evaluate.add_argument("--model", required=True)
  evaluate.add_argument("--data", required=True, help="folder of high-resolution images")
  evaluate.add_argument("--scale", type=_scale)
  evaluate.add_argument("--json", action="store_true", help="print one JSON object")

  report = commands.add_parser("report", help="HTML report with side-by-side crops")
  report.add_argument("--model", required=True)
  report.add_argument("--data", required=True, help="folder of high-resolution images")
  report.add_argument("--out", required=True, help="folder for index.html and its figures")
  report.add_argument("--scale", type=_scale)

  compile_ = commands.add_parser(
      "compile", help="compile the pipeline for Kubeflow Pipelines / Vertex AI Pipelines")
  compile_.add_argument("--kubeflow", required=True, metavar="OUT.json",
                        help="where to write the PipelineJob spec (Kubeflow V2 JSON)")
  compile_options.add_arguments(compile_, scale_type=_scale, steps_type=_steps)

  runs = commands.add_parser(
      "runs", help="past pipeline runs of every model: data, scores, verdict, pushed version")
  runs.add_argument("--pipeline-root", default=home.PIPELINE_ROOT)
  runs.add_argument("--model", type=_model_name, help="only this model's runs (e.g. superres-x3)")

  lineage = commands.add_parser(
      "lineage", help="what a pushed model version was made from, back to the images")
  lineage.add_argument("version", help="a pushed version (see `superres runs`)")
  lineage.add_argument("--pipeline-root", default=home.PIPELINE_ROOT)
  lineage.add_argument("--model", type=_model_name,
                       help="the model the version belongs to, when several have that version")

  data = commands.add_parser("data", help="more training photos: from Debian packages, or DIV2K")
  data_commands = data.add_subparsers(dest="data_command", required=True, metavar="{fetch}",
                                      parser_class=_Parser)
  fetch = data_commands.add_parser(
      "fetch", help="download more photos and stage them with a manifest and their licences")
  fetch.add_argument(
      "dataset", nargs="?", default=DATASETS[0], choices=DATASETS,
      help="corpus (default): about 110 photos from Debian wallpaper and game-background "
      "packages, downloaded with apt-get (about 640 MB); div2k: DIV2K's 900 training and "
      "validation photos from data.vision.ee.ethz.ch (about 4 GB; for academic research "
      "only; the environment variable SUPERRES_DIV2K_URL replaces its base URL, e.g. with "
      "a mirror's)")
  fetch.add_argument("--out", metavar="DIR", help="folder for the photos (default: "
                     f"{_data_dir('<dataset>').replace('%', '%%')}); pass it to "
                     "`superres run --data`")
  return parser


def _data_dir(dataset: str, out: Optional[str] = None) -> str:
  """Where `superres data fetch` stages a dataset: `out`, or under $SUPERRES_HOME."""
  return out or os.path.join(home.DATA_DIR, dataset)


def _check_path_exists(path: str, what: str) -> None:
  if "://" not in path and not os.path.exists(path):
    raise UsageError(f"{what} {path} does not exist")


def _run(args) -> int:
  # The InfraValidator serves the candidate in the serving environment: say so now,
  # not after training.
  launcher.serving_python()
  from superres_tfx import bundled_data  # pylint: disable=import-outside-toplevel
  if args.data is None:
    args.data = bundled_data.stage_training_photos(
        os.path.join(home.DATA_DIR, "bundled"))
    print(f"Data: {len(bundled_data.TRAINING_PHOTOS)} photos bundled with scikit-image, "
          f"staged in {args.data}")
  from superres_tfx.components.image_example_gen import executor  # pylint: disable=import-outside-toplevel
  try:
    images = executor.list_image_files(args.data)
  except executor.NoImagesError as error:
    raise UsageError(str(error)) from error
  print(f"Found {len(images)} image files in {args.data}; profile '{args.profile}', "
        f"scale x{args.scale}", flush=True)

  from superres_tfx.pipeline import local_runner  # pylint: disable=import-outside-toplevel
  from superres_tfx import report  # pylint: disable=import-outside-toplevel
  options = local_runner.RunOptions(
      data_root=args.data, pipeline_root=os.path.abspath(args.pipeline_root),
      serving_dir=os.path.abspath(args.serving_dir), profile=args.profile, scale=args.scale,
      strategy=args.strategy, tuner=args.tuner, runner=args.runner,
      warm_start=args.warm_start, init=args.init, beam_args=args.beam_args,
      train_steps=args.train_steps,
      self_ensemble=args.self_ensemble, model_name=args.model_name)
  print(f"Model: {options.model_name}, pushed to {options.serving_model_dir}", flush=True)
  summary = local_runner.run(options)
  if summary.pushed_dir:
    summary.report_path = _write_run_report(summary, options)
  print(report.format_summary(summary))
  if summary.anomalies:
    return FAILURE
  return 0


def _write_run_report(summary, options) -> Optional[str]:
  """Pictures and tables of the pushed model on photos it never trained on; None (with
  a warning) when the packages that ship those photos are missing: the run is done."""
  from superres_tfx import bundled_data  # pylint: disable=import-outside-toplevel
  from superres_tfx import visual_report  # pylint: disable=import-outside-toplevel
  try:
    holdout = bundled_data.holdout_photo_paths()
  except bundled_data.MissingPhotosError as error:
    print(f"warning: no report: {error}", file=sys.stderr)
    return None
  trials = (visual_report.load_tuner_trials(summary.tuner_results_dir)
            if summary.tuner_results_dir else None)
  out_dir = os.path.join(options.pipeline_root, "reports", os.path.basename(summary.pushed_dir))
  return visual_report.write_report(
      out_dir, summary.pushed_dir, holdout, scale=options.scale,
      tuner_trials=trials,
      run_info={"profile": options.profile, "data": options.data_root, "scale": options.scale,
                "model": summary.pushed_dir,
                f"{(summary.metrics or {}).get('split', 'eval')} split": summary.metrics})


def _upscale(args) -> int:
  if args.model is not None:
    _check_path_exists(args.model, "model")
  _check_input_image(args.input)
  if args.server or args.grpc:
    return _upscale_remotely(args)
  from superres_tfx.inference import upscaling  # pylint: disable=import-outside-toplevel
  if args.model is None:
    version_dir, description = _default_model(args.scale)
  else:
    version_dir = description = upscaling.resolve_model_dir(args.model, args.scale)
  upscaler = upscaling.Upscaler(version_dir, args.self_ensemble)
  height, width = upscaling.upscale_file(args.input, args.output, upscaler, scale=args.scale)
  print(f"Wrote {_shown(args.output)} ({width}x{height}) with {description}")
  return 0


def _default_model(scale: Optional[int]):
  """(version dir, how to name it): the newest pushed model of the scale, else the
  shipped one."""
  from superres_tfx import pretrained  # pylint: disable=import-outside-toplevel
  from superres_tfx.inference import upscaling  # pylint: disable=import-outside-toplevel
  try:
    version_dir = upscaling.resolve_model_dir(home.SERVING_DIR, scale)
    return version_dir, version_dir
  except upscaling.ModelNotFoundError:
    shipped = pretrained.version_dir(scale or names.DEFAULT_SCALE)
    if shipped is None:
      raise
    return shipped, (f"the shipped {names.model_name(scale or names.DEFAULT_SCALE)} "
                     f"(nothing pushed to {home.SERVING_DIR} yet; `superres run` trains "
                     "your own)")


def _check_input_image(path: str) -> None:
  """Reads and decodes the input as inference will, but before TensorFlow loads:
  a file that is not a usable image stops the command at once, in one line."""
  from superres_tfx.imaging import image_decoding  # pylint: disable=import-outside-toplevel
  try:
    image_decoding.load_image(image_decoding.read_file(path)).close()
  except image_decoding.UnusableImageError as error:
    raise UsageError(f"input image {image_decoding.display_path(path)}: {error}") from None


def _shown(path: str) -> str:
  """A path printable on any terminal (names need not be UTF-8)."""
  from superres_tfx.imaging import file_paths  # pylint: disable=import-outside-toplevel
  return file_paths.display_path(path)


def _upscale_remotely(args) -> int:
  from superres_tfx.serving import client  # pylint: disable=import-outside-toplevel
  name = args.name or configs.model_name_for(args.scale or configs.DEFAULT_SCALE)
  remote = (client.RestClient(args.server, name) if args.server
            else client.GrpcClient(args.grpc, name))
  with remote:
    height, width = client.upscale_file(args.input, args.output, remote, scale=args.scale)
  print(f"Wrote {_shown(args.output)} ({width}x{height}) with {name} via "
        f"{args.server or args.grpc}")
  return 0


def _serve(args) -> int:
  command = launcher.serving_command(args)  # ServingEnvironmentMissing is a SuperresError
  serving_dir = args.serving_dir or (None if args.model_base or args.model_config_file
                                     else home.SERVING_DIR)
  if serving_dir and not _has_models(serving_dir):
    print(f"superres: no model in {serving_dir} yet (it serves models as they are pushed); "
          "`superres models install` copies the shipped ones there", file=sys.stderr)
  os.execv(command[0], command)


def _has_models(serving_dir: str) -> bool:
  return os.path.isdir(serving_dir) and any(
      names.newest_version(os.path.join(serving_dir, name))
      for name in os.listdir(serving_dir) if os.path.isdir(os.path.join(serving_dir, name)))


def _evaluate(args) -> int:
  from superres_tfx import evaluation  # pylint: disable=import-outside-toplevel
  _check_path_exists(args.model, "model")
  _check_path_exists(args.data, "data folder")
  result = evaluation.evaluate_folder(args.model, args.data, scale=args.scale)
  if args.json:
    print(json.dumps(result))
  else:
    from superres_tfx import report  # pylint: disable=import-outside-toplevel
    print(report.format_evaluation(result))
  return 0


def _report(args) -> int:
  from superres_tfx import visual_report  # pylint: disable=import-outside-toplevel
  _check_path_exists(args.model, "model")
  _check_path_exists(args.data, "data folder")
  path = visual_report.write_report(args.out, args.model, [args.data], scale=args.scale)
  print(f"Report: {path}")
  return 0


def _compile(args) -> int:
  import time  # pylint: disable=import-outside-toplevel
  from superres_tfx.kubeflow import kubeflow_v2_runner  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  out = kubeflow_v2_runner.compile_pipeline(
      args.kubeflow, profile=args.profile, scale=args.scale, image=args.image,
      pipeline_root=args.pipeline_root, data_root=args.data_root,
      serving_dir=args.serving_dir, train_steps=args.train_steps, beam_args=args.beam_args)
  seconds = time.perf_counter() - start
  defaults = kubeflow_v2_runner.parameter_defaults(args.profile, args.scale, args.train_steps,
                                                   args.data_root, args.serving_dir)
  print(f"Wrote {out} in {seconds:.1f} s: image {args.image}, "
        f"pipeline root {args.pipeline_root}\n"
        "  run parameters (a submission may set each; these are the defaults):\n" +
        "".join(f"    {name} = {value}\n" for name, value in defaults.items()) +
        f"  pushes to <serving_dir>/{configs.model_name_for(args.scale, args.profile)}"
        "/<version>/\n"
        "Submit it with the KFP client or Vertex AI: kubeflow/README.md")
  return 0


def _number(value, fmt: str = ".2f") -> str:
  return "-" if value is None else format(value, fmt)


def _runs(args) -> int:
  from superres_tfx.pipeline import lineage  # pylint: disable=import-outside-toplevel
  from superres_tfx import report  # pylint: disable=import-outside-toplevel
  rows = lineage.list_runs(lineage.read_only_config(args.pipeline_root), args.model)
  if not rows:
    print(f"No pipeline run{' of ' + args.model if args.model else ''} is recorded in "
          f"{args.pipeline_root} yet.")
    return 0
  table = [[r.run_id, r.model or "-", r.started, r.status, r.data_root or "-",
            _number(r.scale, "d"), _number(r.psnr_model), _number(r.psnr_bicubic),
            "-" if r.psnr_model is None else f"{r.psnr_model - r.psnr_bicubic:+.2f}",
            {True: "yes", False: "no", None: "-"}[r.blessed], r.pushed_version or "-"]
           for r in rows]
  print(report.table(table, ["run", "model", "started", "status", "data", "scale", "PSNR dB",
                             "bicubic dB", "gain", "blessed", "pushed"]))
  # The verdicts below the table: they are sentences, too long for a column.
  verdicts = [f"  {r.run_id} ({r.model}): {r.reason}" for r in rows if r.reason]
  if verdicts:
    print("Why each model was or was not pushed:\n" + "\n".join(verdicts))
  return 0


def _lineage(args) -> int:
  from superres_tfx.pipeline import lineage  # pylint: disable=import-outside-toplevel
  from superres_tfx import report  # pylint: disable=import-outside-toplevel
  entries = lineage.lineage(lineage.read_only_config(args.pipeline_root), args.version,
                            args.model)
  print(f"Version {args.version}, back to the images it was trained on:")
  print(report.table(
      [[e.role, e.type_name, "-" if e.artifact_id is None else e.artifact_id, e.run_id,
        e.details, e.uri] for e in entries],
      ["artifact", "type", "id", "produced in run", "details", "uri"]))
  return 0


def _data(args) -> int:
  from superres_tfx import corpus  # pylint: disable=import-outside-toplevel
  out = _data_dir(args.dataset, args.out)
  if args.dataset == "div2k":
    return _fetch_div2k(out)
  try:
    result = corpus.fetch(out)
  except corpus.MissingToolError as error:
    raise UsageError(str(error)) from None
  print(f"Staged {corpus.count_of(len(result.photos))} ({result.megapixels:.0f} MP, "
        f"{result.megabytes:.0f} MB) in {out}, listed with their sources and "
        f"licences in {corpus.MANIFEST}; train on them with `superres run --data {out}`")
  if result.failed:
    print(f"superres: error: {len(result.failed)} package(s) could not be fetched: "
          f"{', '.join(result.failed)}; what was staged stays, and a second call resumes. "
          "--data accepts any folder of photos instead, e.g. DIV2K", file=sys.stderr)
    return FAILURE
  return 0


def _fetch_div2k(out: str) -> int:
  from superres_tfx import corpus  # pylint: disable=import-outside-toplevel
  from superres_tfx import div2k  # pylint: disable=import-outside-toplevel
  result = div2k.fetch(out, base_url=os.environ.get("SUPERRES_DIV2K_URL") or div2k.BASE_URL)
  print(f"Staged {corpus.count_of(len(result.photos))} ({result.megapixels:.0f} MP, "
        f"{result.megabytes:.0f} MB) in {out}, listed with their archives in "
        f"{corpus.MANIFEST}; DIV2K is for academic research only ({div2k.LICENCE_FILE}); "
        f"train on them with `superres run --data {out}`")
  if result.failed:
    print("superres: error: " + "; ".join(f"{name}: {why}" for name, why in result.failed.items())
          + "; what was staged stays, and a second call resumes", file=sys.stderr)
    return FAILURE
  return 0


def _models(args) -> int:
  from superres_tfx import model_zoo  # pylint: disable=import-outside-toplevel
  if args.models_command == "list":
    print(model_zoo.describe())
  elif args.models_command == "install":
    for line in model_zoo.install(args.serving_dir):
      print(line)
  else:
    for line in model_zoo.build(args.data, args.scales, args.profile, args.work,
                                args.train_steps):
      print(line, flush=True)
  return 0


COMMANDS = {"run": _run, "upscale": _upscale, "evaluate": _evaluate, "report": _report,
            "serve": _serve, "compile": _compile, "runs": _runs, "lineage": _lineage,
            "data": _data, "models": _models}


def main(argv=None) -> int:
  try:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)
  except UsageError as error:
    print(f"superres: error: {error}", file=sys.stderr)
    return USAGE_ERROR
  except errors.SuperresError as error:
    # A message meant for the user (naming the file and what to do); any other
    # exception is a bug and keeps its traceback.
    print(f"superres: error: {error}", file=sys.stderr)
    return FAILURE
  except OSError as error:
    from superres_tfx.pipeline import storage  # pylint: disable=import-outside-toplevel
    if error.errno not in storage.STORAGE_ERRNOS:
      raise
    # A full disk or a read-only folder mid-run: say where, not a TensorFlow traceback.
    print(f"superres: error: {storage.describe(error)}", file=sys.stderr)
    return FAILURE
  except KeyboardInterrupt:
    print("superres: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
