"""The server's command line, and how to start it from the pipeline environment.

The server runs in the serving environment (.venv-serving), so `superres serve` execs
`serving_command(args)`. Nothing here imports TensorFlow or KServe.
"""
import argparse
import os
from typing import List

from pipeline import configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING_VENV = os.path.join(ROOT, ".venv-serving")
SETUP_SCRIPT = os.path.join("scripts", "setup_serving_env.sh")

# TF Serving's own default ports.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
DEFAULT_POLL_SECONDS = 1.0  # TF Serving's --file_system_poll_wait_seconds
# Larger images are refused (400 / INVALID_ARGUMENT) before any decoding. 50.3 MP admits
# a 50 MP phone photo (8160 x 6120) whole; clients may still send tiles (serving.client does).
DEFAULT_MAX_PIXELS = 8192 * 6144
# A REST body over this is refused (413) before it is read whole, so no request holds more
# memory: base64 (4/3 of the bytes) of a JPEG up to 48 MB fits, and a 50 MP phone JPEG
# is 10-25 MB.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# More images in one request are refused (400 / INVALID_ARGUMENT): one request's images
# run one after another on one slot, so a big batch would hold it for long.
DEFAULT_MAX_BATCH_SIZE = 8
# Working memory one request's upscaling may take, by a conservative estimate
# (superres.inference.Upscaler.bytes_per_pixel): it sets the tile size of each loaded
# model. Four requests at once stay near 1 GB on top of the loaded model.
DEFAULT_MAX_REQUEST_MEMORY = 256 * 1024 * 1024
# Admission control (serving.admission): predictions running at once, and how many more
# may wait for a slot, for how long. Beyond that a request is refused at once (REST 429,
# gRPC RESOURCE_EXHAUSTED) rather than queued without bound.
DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_MAX_QUEUED = 8
DEFAULT_QUEUE_TIMEOUT_SECONDS = 1.0


class ServingEnvironmentMissing(ValueError):
  """The serving environment is not installed."""


def _positive_int(value: str) -> int:
  number = int(value)
  if number < 1:
    raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
  return number


def _non_negative_int(value: str) -> int:
  number = int(value)
  if number < 0:
    raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
  return number


def _port(value: str) -> int:
  number = int(value)
  if not 0 <= number <= 65535:
    raise argparse.ArgumentTypeError(f"a port is 0-65535, not {value}")
  return number


def _positive_float(value: str) -> float:
  number = float(value)
  if number <= 0:
    raise argparse.ArgumentTypeError(f"must be positive, not {value}")
  return number


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
  """The server's options; `superres serve` and `python -m serving` share them."""
  parser.add_argument("--model-base", required=True,
                      help="the model's base directory holding numbered versions "
                      f"(<serving-dir>/{configs.MODEL_NAME}), as TF Serving's --model_base_path")
  parser.add_argument("--name", default=configs.MODEL_NAME,
                      help="model name in the URLs and gRPC model_spec")
  parser.add_argument("--host", default=DEFAULT_HOST,
                      help="address to bind both ports to (0.0.0.0 for all interfaces)")
  parser.add_argument("--rest-port", type=_port, default=DEFAULT_REST_PORT)
  parser.add_argument("--grpc-port", type=_port, default=DEFAULT_GRPC_PORT)
  parser.add_argument("--poll-seconds", type=_positive_float, default=DEFAULT_POLL_SECONDS,
                      help="how often to look for new versions")
  parser.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS,
                      help="largest image (width x height) one request may carry")
  parser.add_argument("--max-body-bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES,
                      help="largest REST request body; larger ones get HTTP 413 before "
                      "they are read")
  parser.add_argument("--max-batch-size", type=_positive_int, default=DEFAULT_MAX_BATCH_SIZE,
                      help="most images one request may carry (REST instances, gRPC batch)")
  parser.add_argument("--max-request-memory", type=_positive_int,
                      default=DEFAULT_MAX_REQUEST_MEMORY,
                      help="bytes of working memory one request's upscaling may take; images "
                      "run in tiles sized to fit it, whatever their size")
  parser.add_argument("--max-in-flight", type=_positive_int, default=DEFAULT_MAX_IN_FLIGHT,
                      help="predictions run at once, REST and gRPC together")
  parser.add_argument("--max-queued", type=_non_negative_int, default=DEFAULT_MAX_QUEUED,
                      help="predictions that may wait for a free slot; more are refused at "
                      "once (HTTP 429, gRPC RESOURCE_EXHAUSTED)")
  parser.add_argument("--queue-timeout-seconds", type=_positive_float,
                      default=DEFAULT_QUEUE_TIMEOUT_SECONDS,
                      help="longest wait for a free slot before a request is refused")
  return parser


def serving_python() -> str:
  python = os.path.join(SERVING_VENV, "bin", "python")
  if not os.access(python, os.X_OK):
    raise ServingEnvironmentMissing(
        f"the serving environment is missing ({SERVING_VENV}); create it with "
        f"`{SETUP_SCRIPT}` (or `make serving-env`) and try again")
  return python


def serving_command(args: argparse.Namespace) -> List[str]:
  """argv that starts the server in the serving environment, from parsed add_arguments() options."""
  command = [serving_python(), "-m", "serving",
             "--model-base", os.path.abspath(os.path.expanduser(args.model_base)),
             "--name", args.name, "--host", args.host,
             "--rest-port", str(args.rest_port), "--grpc-port", str(args.grpc_port)]
  for option, attribute in (("--poll-seconds", "poll_seconds"), ("--max-pixels", "max_pixels"),
                            ("--max-body-bytes", "max_body_bytes"),
                            ("--max-batch-size", "max_batch_size"),
                            ("--max-request-memory", "max_request_memory"),
                            ("--max-in-flight", "max_in_flight"), ("--max-queued", "max_queued"),
                            ("--queue-timeout-seconds", "queue_timeout_seconds")):
    value = getattr(args, attribute, None)
    if value is not None:
      command += [option, str(value)]
  return command

