"""python -m serving --model-base DIR [--name superres] [--host 127.0.0.1]
                    [--rest-port 8501] [--grpc-port 8500] [--poll-seconds 1] [--max-pixels N]
                    [--max-body-bytes N] [--max-batch-size 8] [--max-request-memory N]
                    [--max-in-flight 4] [--max-queued 8] [--queue-timeout-seconds 1]

One process serving a pushed model over TF Serving's REST API (through KServe's model
server) and TF Serving's gRPC API. Stops on SIGINT or SIGTERM.
"""
import argparse
import gc
import logging
import os
import signal
import sys
import warnings

# Before TensorFlow loads: keep its C++ start-up chatter out of the log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import configs  # pylint: disable=wrong-import-position
from serving import launcher  # pylint: disable=wrong-import-position

logger = logging.getLogger("serving")


def _resolve_base(model_base: str, name: str) -> str:
  """The folder holding numbered versions; the serving root above it is accepted too."""
  base = os.path.abspath(os.path.expanduser(model_base))
  if not os.path.isdir(base):
    sys.exit(f"serving: error: --model-base {base} is not a directory; pass the folder the "
             f"Pusher writes numbered versions to (<serving-dir>/{configs.MODEL_NAME})")
  has_versions = any(entry.isdigit() for entry in os.listdir(base))
  nested = os.path.join(base, name)
  if not has_versions and os.path.isdir(nested):
    return nested
  return base


def _exit_on_signal(signum, _frame):
  raise SystemExit(128 + signum if signum != signal.SIGTERM else 0)


def main(argv=None) -> None:
  parser = launcher.add_arguments(argparse.ArgumentParser(
      prog="python -m serving",
      description="Serves a pushed model over TF Serving's REST and gRPC APIs."))
  args = parser.parse_args(argv)
  base = _resolve_base(args.model_base, args.name)
  # KServe parses sys.argv when imported; ours are not its options.
  sys.argv = sys.argv[:1]
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  # KServe's own response class; nothing a user of this server can act on.
  warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")

  # pylint: disable=import-outside-toplevel
  from serving import grpc_service
  from serving import rest
  from serving.admission import Admission
  from serving.versions import VersionManager

  # TensorFlow, KServe and gRPC leave ~350k long-lived objects that every full garbage
  # collection would walk (~0.5 s with all requests stalled). Freeze them; models loaded
  # from here on stay collectable, so a replaced version is still freed.
  gc.collect()
  gc.freeze()

  # uvicorn handles both signals while it serves and raises them again when it has
  # finished; this handler then turns them into a normal exit, which stops gRPC too.
  signal.signal(signal.SIGTERM, _exit_on_signal)
  versions = VersionManager(base, args.poll_seconds, args.max_request_memory)
  admission = Admission(args.max_in_flight, args.max_queued, args.queue_timeout_seconds)
  grpc_server = None
  try:
    logger.info("model '%s' from %s", args.name, base)
    versions.start()
    grpc_server = grpc_service.build_server(args.name, versions, args.max_pixels, args.host,
                                            args.grpc_port, admission, args.max_batch_size)
    grpc_server.start()
    logger.info("gRPC (TF Serving PredictionService, ModelService) on %s:%d", args.host,
                args.grpc_port)
    logger.info("REST (TF Serving API via KServe) on http://%s:%d/v1/models/%s", args.host,
                args.rest_port, args.name)
    server = rest.ModelServer(args.host, args.rest_port, args.max_body_bytes)
    logger.info("at most %d predictions at once, %d waiting (up to %g s); more get 429 / "
                "RESOURCE_EXHAUSTED", args.max_in_flight, args.max_queued,
                args.queue_timeout_seconds)
    logger.info("at most %d images of %d pixels per request, %d bytes per REST body",
                args.max_batch_size, args.max_pixels, args.max_body_bytes)
    server.start([rest.SuperResolutionModel(args.name, versions, args.max_pixels,
                                            args.max_batch_size, admission)])
  except RuntimeError as error:  # a port already taken
    sys.exit(f"serving: error: {error}")
  except KeyboardInterrupt:
    pass
  finally:
    versions.stop()
    if grpc_server is not None:
      grpc_server.stop(grace=2).wait()
    admission.shutdown()
    logger.info("stopped")


if __name__ == "__main__":
  main()
