"""The options of compiling the pipeline for Kubeflow, shared by `superres compile
--kubeflow OUT.json` and `python -m superres_tfx.kubeflow.kubeflow_v2_runner OUT.json`.

Imports no TFX: the CLI builds its parser from here before anything heavy loads.
"""
import argparse
from typing import Callable

from superres_tfx.pipeline import configs


def add_arguments(parser: argparse.ArgumentParser, scale_type: Callable = int,
                  steps_type: Callable = int) -> argparse.ArgumentParser:
  """The compile options; the output path is the caller's (a flag or a positional)."""
  parser.add_argument("--image", default=configs.KUBEFLOW_IMAGE,
                      help="container image of every step (kubeflow/Dockerfile)")
  parser.add_argument("--pipeline-root", default=configs.KUBEFLOW_PIPELINE_ROOT,
                      help="bucket path for the pipeline's artifacts")
  # The run parameters of the compiled pipeline: these set their defaults.
  parser.add_argument("--data-root", default=configs.KUBEFLOW_DATA_ROOT,
                      help="default of the data_root run parameter (image folder)")
  parser.add_argument("--serving-dir", default=configs.KUBEFLOW_SERVING_DIR,
                      help="default of serving_dir: the Pusher writes "
                      "<serving-dir>/<model name>/<version>/")
  parser.add_argument("--profile", default=configs.DEFAULT_PROFILE,
                      choices=sorted(configs.PROFILES), help="default of profile")
  parser.add_argument("--scale", type=scale_type, default=configs.DEFAULT_SCALE,
                      help="default of scale")
  parser.add_argument("--train-steps", type=steps_type, metavar="N",
                      help="default of train_steps (default: the profile's)")
  parser.add_argument("--beam-arg", action="append", default=[], dest="beam_args",
                      help="a Beam pipeline option of ExampleGen, StatisticsGen and Transform, "
                      "repeatable, e.g. --beam-arg=--runner=DataflowRunner (see the README's "
                      "'Data that outgrow one machine')")
  return parser
