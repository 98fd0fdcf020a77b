"""The server's command line, and how to start it from the pipeline environment.

The server runs in the serving environment (.venv-serving), so `superres serve` execs
`serving_command(args)`. Nothing here imports TensorFlow or KServe.
"""
import argparse
import os
from typing import List

from superres_tfx.core import errors
from superres_tfx.core import home
from superres_tfx.core import names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING_VENV = os.path.join(ROOT, ".venv-serving")
SERVER_MODULE = "superres_tfx.serving"  # python -m SERVER_MODULE starts the server
# Set to a pid, the server ends (SIGTERM) when that process dies: a killed pipeline step
# leaves no server behind. The server sets this up itself: a preexec_fn would make
# subprocess fork instead of vfork, and gRPC's fork handlers can then abort the child
# before exec (grpc/grpc#43055, "epoll_wait error: Bad file descriptor").
EXIT_WITH_PARENT_ENV = "SUPERRES_SERVING_EXIT_WITH_PID"
SETUP_SCRIPT = os.path.join("scripts", "setup_serving_env.sh")

# TF Serving's own default ports.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
DEFAULT_POLL_SECONDS = 1.0  # TF Serving's --file_system_poll_wait_seconds
# Larger images are refused (400 / INVALID_ARGUMENT) before any decoding. 50.3 MP admits
# a 50 MP phone photo (8160 x 6120) whole; clients may still send tiles (client.py does).
DEFAULT_MAX_PIXELS = 8192 * 6144
# A REST body over this is refused (413) before it is read whole, so no request holds more
# memory: base64 (4/3 of the bytes) of a JPEG up to 48 MB fits, and a 50 MP phone JPEG
# is 10-25 MB.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# More images in one request are refused (400 / INVALID_ARGUMENT): one request's images
# run one after another on one slot, so a big batch would hold it for long.
DEFAULT_MAX_BATCH_SIZE = 8
# Working memory one request's upscaling may take, by a conservative estimate
# (superres_tfx.inference.upscaling.Upscaler.bytes_per_pixel): it sets the tile size of each loaded
# model. Four requests at once stay near 1 GB on top of the loaded model.
DEFAULT_MAX_REQUEST_MEMORY = 256 * 1024 * 1024
# Admission control (serving.admission): predictions running at once, and how many more
# may wait for a slot, for how long. Beyond that a request is refused at once (REST 429,
# gRPC RESOURCE_EXHAUSTED) rather than queued without bound.
DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_MAX_QUEUED = 8
DEFAULT_QUEUE_TIMEOUT_SECONDS = 1.0


class ServingEnvironmentMissing(errors.SuperresError):
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


def _non_negative_float(value: str) -> float:
  number = float(value)
  if number < 0:
    raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
  return number


def _positive_float(value: str) -> float:
  number = float(value)
  if number <= 0:
    raise argparse.ArgumentTypeError(f"must be positive, not {value}")
  return number


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
  """The server's options; `superres serve` and `python -m superres_tfx.serving` share them."""
  models = parser.add_argument_group(
      "models", f"at most one of these; with none, every model under {home.SERVING_DIR} "
      "is served, as with --serving-dir")
  source = models.add_mutually_exclusive_group()
  source.add_argument("--serving-dir", metavar="DIR",
                      help="serve every model folder in DIR (the Pusher writes "
                      "DIR/<model name>/<version>/) by its folder's name, each at its highest "
                      "version; folders added later are served without a restart")
  source.add_argument("--model-config-file", metavar="FILE",
                      help="serve the models of TF Serving's model config file (a text "
                      "ModelServerConfig): each config of its model_config_list gives a name, "
                      "a base_path (relative ones are taken from FILE's folder) and a version "
                      "policy (latest, all or specific)")
  source.add_argument("--model-base", metavar="DIR",
                      help="serve one model: its base directory holding numbered versions "
                      f"(<serving-dir>/{names.DEFAULT_MODEL_NAME}), as TF Serving's "
                      "--model_base_path")
  models.add_argument("--model-config-file-poll-seconds", type=_non_negative_float, default=0.0,
                      metavar="SECONDS",
                      help="with --model-config-file: read it again this often and serve the "
                      "models it lists then; 0 (the default) reads it once, as TF Serving's "
                      "--model_config_file_poll_wait_seconds")
  models.add_argument("--name",
                      help="with --model-base: the model's name in the URLs and gRPC model_spec "
                      f"(default: {names.DEFAULT_MODEL_NAME})")
  parser.add_argument("--host", default=DEFAULT_HOST,
                      help="address to bind both ports to (0.0.0.0 for all interfaces)")
  parser.add_argument("--rest-port", type=_port, default=DEFAULT_REST_PORT)
  parser.add_argument("--grpc-port", type=_port, default=DEFAULT_GRPC_PORT)
  parser.add_argument("--poll-seconds", type=_positive_float, default=DEFAULT_POLL_SECONDS,
                      help="how often to look for new versions, and for new model folders in "
                      "the serving directory")
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
  """The serving environment's interpreter: SUPERRES_SERVING_PYTHON if set (a container
  that installs the serving stack elsewhere), else the checkout's .venv-serving."""
  python = os.environ.get("SUPERRES_SERVING_PYTHON") or os.path.join(SERVING_VENV, "bin",
                                                                     "python")
  if not os.access(python, os.X_OK):
    raise ServingEnvironmentMissing(
        f"the serving environment is missing ({python}); create it with "
        f"`{SETUP_SCRIPT}` (or `make serving-env`) and try again")
  return python


def serving_command(args: argparse.Namespace) -> List[str]:
  """argv that starts the server in the serving environment, from parsed add_arguments() options."""
  command = [serving_python(), "-m", SERVER_MODULE]
  for option, attribute in (("--model-base", "model_base"), ("--serving-dir", "serving_dir"),
                            ("--model-config-file", "model_config_file")):
    path = getattr(args, attribute, None)
    if path is not None:
      command += [option, os.path.abspath(os.path.expanduser(path))]
  if getattr(args, "name", None) is not None:
    command += ["--name", args.name]
  command += ["--host", args.host, "--rest-port", str(args.rest_port),
              "--grpc-port", str(args.grpc_port)]
  if getattr(args, "model_config_file_poll_seconds", 0):
    command += ["--model-config-file-poll-seconds", str(args.model_config_file_poll_seconds)]
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

