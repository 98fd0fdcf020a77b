"""python -m superres_tfx.serving [--serving-dir DIR | --model-config-file FILE |
                                  --model-base DIR [--name N]]
                    [--model-config-file-poll-seconds S] [--host 127.0.0.1]
                    [--rest-port 8501] [--grpc-port 8500] [--poll-seconds 1]
                    [--max-pixels N] [--max-body-bytes N] [--max-batch-size 8]
                    [--max-request-memory N] [--max-in-flight 4] [--max-queued 8]
                    [--queue-timeout-seconds 1]

One process serving pushed models over TF Serving's REST API (through KServe's model
server) and TF Serving's gRPC API, each model by its name:
- --serving-dir DIR: every model folder in DIR (superres-x2, superres-x3, ...), each at
  its highest version; folders added later are served without a restart, removed ones
  are unloaded. The default, with $SUPERRES_HOME/serving.
- --model-config-file FILE: the models of TF Serving's model config file, each with its
  version policy (latest N, all, or specific versions); read again every S seconds if
  --model-config-file-poll-seconds is set.
- --model-base DIR: one model, named --name.
New versions are picked up live. Stops on SIGINT or SIGTERM.
"""
import argparse
import ctypes
import functools
import gc
import logging
import os
import signal
import sys
import warnings
from typing import Dict, List, NoReturn, Tuple

# Before TensorFlow loads: keep its C++ start-up chatter out of the log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from superres_tfx.core import home  # pylint: disable=wrong-import-position
from superres_tfx.core import names  # pylint: disable=wrong-import-position
from superres_tfx.serving import launcher  # pylint: disable=wrong-import-position
from superres_tfx.serving import model_config  # pylint: disable=wrong-import-position

logger = logging.getLogger("superres_tfx.serving")


def _fail(message: str) -> NoReturn:
  """A one-line usage error, as argparse's: exit status 2."""
  print(f"serving: error: {message}", file=sys.stderr)
  sys.exit(2)


def _models(args) -> Tuple[List[model_config.ModelConfig], Dict]:
  """The models to serve now, and how the registry finds them again (ModelRegistry's
  source arguments), from the command line."""
  if args.name is not None and args.model_base is None:
    _fail("--name names the model of --model-base; with --serving-dir models are named "
          "after their folders, with --model-config-file by its configs")
  if args.model_config_file_poll_seconds and args.model_config_file is None:
    _fail("--model-config-file-poll-seconds goes with --model-config-file")
  try:
    if args.model_base is not None:
      return [model_config.model_base(args.model_base, args.name or names.DEFAULT_MODEL_NAME)], {}
    if args.model_config_file is not None:
      path = os.path.abspath(os.path.expanduser(args.model_config_file))
      source = {"source_name": f"--model-config-file {path}"}
      if args.model_config_file_poll_seconds:
        source.update(source=functools.partial(model_config.read_config_file, path),
                      source_seconds=args.model_config_file_poll_seconds)
      return model_config.read_config_file(path), source
    path = model_config.serving_dir(args.serving_dir or home.SERVING_DIR)
    return model_config.model_folders(path), {
        "source": functools.partial(model_config.model_folders, path),
        "source_seconds": args.poll_seconds, "source_name": f"the serving directory {path}"}
  except (OSError, model_config.ConfigError) as error:
    hint = "" if (args.model_base or args.model_config_file or args.serving_dir) else (
        " (the default serving directory: push a model with `superres run`, or pass "
        "--serving-dir, --model-config-file or --model-base)")
    _fail(f"{error}{hint}")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _end_with_parent() -> None:
  """SIGTERM when the process named by launcher.EXIT_WITH_PARENT_ENV dies (Linux; elsewhere
  the parent's `finally` that stops the server must run)."""
  pid = os.environ.get(launcher.EXIT_WITH_PARENT_ENV)
  if not pid:
    return
  try:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
  except (OSError, AttributeError):
    return
  if os.getppid() != int(pid):  # the parent died before prctl took effect
    sys.exit("serving: the process that started this server has ended")


def _exit_on_signal(signum, _frame):
  raise SystemExit(128 + signum if signum != signal.SIGTERM else 0)


def main(argv=None) -> None:
  parser = launcher.add_arguments(argparse.ArgumentParser(
      prog="python -m superres_tfx.serving",
      description="Serves pushed models over TF Serving's REST and gRPC APIs."))
  args = parser.parse_args(argv)
  _end_with_parent()
  initial_models, source = _models(args)
  # KServe parses sys.argv when imported; ours are not its options.
  sys.argv = sys.argv[:1]
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  # KServe's own response class; nothing a user of this server can act on.
  warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")

  # pylint: disable=import-outside-toplevel
  from superres_tfx.serving import grpc_service
  from superres_tfx.serving import rest
  from superres_tfx.serving.admission import Admission
  from superres_tfx.serving.models import ModelRegistry

  # TensorFlow, KServe and gRPC leave ~350k long-lived objects that every full garbage
  # collection would walk (~0.5 s with all requests stalled). Freeze them; models loaded
  # from here on stay collectable, so a replaced version is still freed.
  gc.collect()
  gc.freeze()

  # uvicorn handles both signals while it serves and raises them again when it has
  # finished; this handler then turns them into a normal exit, which stops gRPC too.
  signal.signal(signal.SIGTERM, _exit_on_signal)
  models = ModelRegistry(args.poll_seconds, args.max_request_memory, initial_models, **source)
  admission = Admission(args.max_in_flight, args.max_queued, args.queue_timeout_seconds)
  grpc_server = None
  try:
    models.start()
    grpc_server = grpc_service.build_server(models, args.max_pixels, args.host, args.grpc_port,
                                            admission, args.max_batch_size)
    grpc_server.start()
    logger.info("gRPC (TF Serving PredictionService, ModelService) on %s:%d", args.host,
                args.grpc_port)
    logger.info("REST (TF Serving API via KServe) on http://%s:%d/v1/models/<name>, for %s",
                args.host, args.rest_port, ", ".join(models.names()) or "the models to come")
    server = rest.ModelServer(args.host, args.rest_port, args.max_body_bytes)
    logger.info("at most %d predictions at once, %d waiting (up to %g s); more get 429 / "
                "RESOURCE_EXHAUSTED", args.max_in_flight, args.max_queued,
                args.queue_timeout_seconds)
    logger.info("at most %d images of %d pixels per request, %d bytes per REST body",
                args.max_batch_size, args.max_pixels, args.max_body_bytes)
    server.start(rest.Predictor(models, args.max_pixels, args.max_batch_size, admission))
  except RuntimeError as error:  # a port already taken
    sys.exit(f"serving: error: {error}")
  except KeyboardInterrupt:
    pass
  finally:
    models.stop()
    if grpc_server is not None:
      grpc_server.stop(grace=2).wait()
    admission.shutdown()
    logger.info("stopped")


if __name__ == "__main__":
  main()
