"""TF Serving's REST API on KServe's model server.

KServe's FastAPI app and uvicorn server carry TF Serving's routes only, for every model
the registry serves (serving.models): predict (the newest served version or a given
one), status and metadata, plus KServe's Prometheus endpoint, GET /metrics. KServe's own
routes (its V2 / Open Inference Protocol, and the model repository's load and unload)
are left out, so nothing reachable over the network loads or unloads a model.

A request body over --max-body-bytes gets 413 before it is held whole. Predictions go
through admission control (429 with Retry-After when full), which also runs their JSON
and base64 decoding: the event loop only moves bytes, so status calls are answered at
once however large the predictions running. Admission counts are on GET /metrics.
"""
import asyncio
import logging
from typing import Callable, Dict, List, Optional, Tuple

import fastapi
from fastapi.responses import JSONResponse, Response
import kserve
from kserve import errors as kserve_errors
from kserve import model_server as kserve_model_server
from kserve.protocol.rest.server import RESTServer, metrics_handler
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from superres_tfx.serving import admission as admission_control
from superres_tfx.serving import messages
from superres_tfx.serving import predict
from superres_tfx.serving import protocol
from superres_tfx.serving import streaming
from superres_tfx.serving.models import ModelNotFound, ModelRegistry
from superres_tfx.serving.versions import (AVAILABLE, NoVersionAvailable, ServedVersion,
                                           VersionNotFound)

logger = logging.getLogger("superres_tfx.serving.rest")

GRACEFUL_SHUTDOWN_SECONDS = 5
PREDICT_SUFFIX = ":predict"  # TF Serving's predict URLs: /v1/models/NAME[/versions/N]:predict


class Predictor:
  """Predictions of every served model, through admission control."""

  def __init__(self, models: ModelRegistry, max_pixels: int, max_batch_size: int,
               admission: admission_control.Admission):
    self.models = models
    self.max_pixels = max_pixels
    self.max_batch_size = max_batch_size
    self.admission = admission

  async def predict(self, request: fastapi.Request, name: str,
                    version: Optional[int]) -> Response:
    """Answers a predict request; its body is parsed with the model work, once admitted,
    and the answer is sent as each row of tiles is upscaled."""
    served = self.models.served(name, version)  # 404 or 503 before the body is read
    chunks = [chunk async for chunk in request.stream()]  # at most --max-body-bytes
    pipe = streaming.AnswerPipe(asyncio.get_running_loop())
    try:
      # Bad input is found before the first piece, so it still gets a 400.
      first = await pipe.first(self.admission.submit(self._predict, served, chunks, pipe))
    except protocol.BadRequest as error:
      pipe.close()
      raise kserve_errors.InvalidInput(str(error)) from None
    except BaseException:  # refused, failed, or cancelled with the connection
      pipe.close()
      raise
    return streaming.PipedResponse(pipe, first)

  def _predict(self, served: ServedVersion, chunks: List[bytes],
               pipe: streaming.AnswerPipe) -> None:
    """Makes the JSON answer to a request body and sends it down `pipe`; on an admission
    thread, as all of it is proportional to the body or to the images."""
    images, columnar = self._parse(chunks)
    streams = predict.png_streams(served, images, self.max_pixels,
                                  "inputs" if columnar else "instances")
    try:
      pipe.send_all(protocol.predict_response_pieces(streams, columnar))
    except streaming.ClientGone:
      logger.info("a client stopped reading its answer; its prediction was stopped")

  def _parse(self, chunks: List[bytes]) -> Tuple[List[bytes], bool]:
    body = b"".join(chunks)
    chunks.clear()  # the body is held once, and only until it is parsed
    return protocol.parse_predict_request(body, self.max_batch_size)


def _not_found(message: str) -> JSONResponse:
  return JSONResponse(status_code=404, content={"error": message})


def add_routes(app: fastapi.FastAPI, predictor: Predictor) -> None:
  """TF Serving's REST API: status, metadata and predict, for the newest version or a given one."""
  models = predictor.models

  def status(name: str, version: Optional[int]) -> JSONResponse:
    versions = models.get(name, version)
    statuses = versions.statuses()
    if version is not None:
      statuses = [s for s in statuses if s.version == version]
      if not statuses:
        return _not_found(f"Could not find version {version} of model {name}")
    body = messages.to_json(messages.model_status(statuses))
    available = any(s.state == AVAILABLE for s in statuses)
    if not available:  # not ready: a readiness probe must see a failure
      try:
        versions.served()
        body["error"] = f"version {version} of model {name} is not available"
      except NoVersionAvailable as reason:
        body["error"] = str(reason)
    return JSONResponse(status_code=200 if available else 503, content=body)

  async def model_status(name: str) -> JSONResponse:
    return status(name, None)

  async def version_status(name: str, version: int) -> JSONResponse:
    return status(name, version)

  def metadata(name: str, version: Optional[int]) -> JSONResponse:
    return JSONResponse(messages.metadata_json(name, models.served(name, version)))

  async def model_metadata(name: str) -> JSONResponse:
    return metadata(name, None)

  async def version_metadata(name: str, version: int) -> JSONResponse:
    return metadata(name, version)

  async def model_predict(name: str, request: fastapi.Request) -> Response:
    return await predictor.predict(request, name, None)

  async def version_predict(name: str, version: int, request: fastapi.Request) -> Response:
    return await predictor.predict(request, name, version)

  app.add_api_route("/v1/models/{name}", model_status, methods=["GET"])
  app.add_api_route("/v1/models/{name}/versions/{version}", version_status, methods=["GET"])
  app.add_api_route("/v1/models/{name}/metadata", model_metadata, methods=["GET"])
  app.add_api_route("/v1/models/{name}/versions/{version}/metadata", version_metadata,
                    methods=["GET"])
  app.add_api_route("/v1/models/{name}" + PREDICT_SUFFIX, model_predict, methods=["POST"])
  app.add_api_route("/v1/models/{name}/versions/{version}" + PREDICT_SUFFIX, version_predict,
                    methods=["POST"])


def exception_handlers(models: ModelRegistry) -> Dict[type, Callable]:
  """Answers for the errors of serving and admission, in TF Serving's {"error": ...} form."""

  async def not_served(_, error) -> JSONResponse:  # VersionNotFound, ModelNotFound
    return _not_found(messages.not_found_text(error.name, error.version, error))

  async def no_version(_, error: NoVersionAvailable) -> JSONResponse:
    return JSONResponse(status_code=503, content={"error": str(error)})

  async def overloaded(_, error: admission_control.Overloaded) -> JSONResponse:
    return overloaded_response(error)

  async def client_gone(request: fastapi.Request, _) -> Response:
    # The client closed the connection while sending its body; nobody reads an answer.
    logger.info("a client disconnected while sending %s %s", request.method, request.url.path)
    return Response(status_code=499)  # nginx's "client closed request", for the access log

  async def no_route(request: fastapi.Request, error: HTTPException) -> JSONResponse:
    # 404 and 405 for paths outside the API, in TF Serving's {"error": ...} form.
    return JSONResponse(status_code=error.status_code, headers=error.headers, content={
        "error": f"{request.method} {request.url.path}: {error.detail}; this server answers "
                 f"TF Serving's REST API: GET /v1/models/NAME[/versions/N][/metadata], "
                 f"POST /v1/models/NAME[/versions/N]{PREDICT_SUFFIX}, and GET /metrics; "
                 f"NAME is one of: {', '.join(models.names()) or '(no model yet)'}"})

  return {VersionNotFound: not_served, ModelNotFound: not_served, NoVersionAvailable: no_version,
          admission_control.Overloaded: overloaded,
          ClientDisconnect: client_gone, HTTPException: no_route}


def overloaded_response(error: admission_control.Overloaded) -> JSONResponse:
  # No log line of ours: under a flood it would be one per refused request.
  return JSONResponse(status_code=429, content={"error": str(error)},
                      headers={"Retry-After": str(admission_control.RETRY_AFTER_SECONDS)})


class AdmissionGate:
  """ASGI middleware: refuses predictions while admission control is full, before the
  body is read or parsed, so that a refusal costs the server next to nothing.

  Uvicorn discards the unread body and keeps the connection open.
  """

  def __init__(self, app, admission: admission_control.Admission):
    self.app = app
    self.admission = admission

  async def __call__(self, scope, receive, send):
    if (scope["type"] == "http" and scope["method"] == "POST"
        and scope["path"].endswith(PREDICT_SUFFIX)):
      try:
        self.admission.check()
      except admission_control.Overloaded as error:
        await overloaded_response(error)(scope, receive, send)
        return
    await self.app(scope, receive, send)


class BodyTooLarge(Exception):
  """A request body without a Content-Length passed the limit while it was being read."""


class BodyLimit:
  """ASGI middleware: answers 413 to a request body over `max_bytes`, never holding more.

  A Content-Length over the limit is refused before any of the body is read; a body
  without one (chunked) is counted as the route reads it and refused as soon as it
  passes the limit. Uvicorn discards the rest of the body and keeps the connection open,
  so the client reads the answer once it has sent its body.
  """

  def __init__(self, app, max_bytes: int):
    self.app = app
    self.max_bytes = max_bytes

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      await self.app(scope, receive, send)
      return
    declared = _content_length(scope)
    if declared is not None and declared > self.max_bytes:
      await self._refuse(scope, receive, send, f" ({declared} bytes)")
      return
    received = 0
    started = False

    async def counting_receive():
      nonlocal received
      message = await receive()
      received += len(message.get("body", b""))
      if received > self.max_bytes:
        raise BodyTooLarge()
      return message

    async def watching_send(message):
      nonlocal started
      started = started or message["type"] == "http.response.start"
      await send(message)

    try:
      await self.app(scope, counting_receive, watching_send)
    except BodyTooLarge:
      if started:  # cannot happen on our routes: they read the whole body first
        raise
      await self._refuse(scope, receive, send, "")

  async def _refuse(self, scope, receive, send, size: str) -> None:
    message = (f"the request body{size} is over this server's limit of {self.max_bytes} bytes "
               "(--max-body-bytes); send fewer or smaller images per request (`superres upscale "
               "--server` sends large images in tiles) or raise the limit")
    logger.info("refused a request (413): %s", message)
    await JSONResponse(status_code=413, content={"error": message})(scope, receive, send)


def _content_length(scope) -> Optional[int]:
  for name, value in scope["headers"]:
    if name == b"content-length":
      try:
        return int(value)
      except ValueError:
        return None  # uvicorn refuses a malformed one before we see it
  return None


class AdmissionMetrics:
  """Admission counts for Prometheus (KServe's GET /metrics), read when scraped. They are
  the server's, all models together, as admission control is."""

  def __init__(self, admission: admission_control.Admission):
    self.admission = admission

  def collect(self):
    stats = self.admission.stats()
    for metric, help_text, value in (
        ("predict_in_flight", "predictions running", stats.in_flight),
        ("predict_queued", "predictions waiting for a slot", stats.queued),
        ("predict_capacity", "predictions that may run or wait at once",
         self.admission.capacity)):
      yield GaugeMetricFamily(metric, help_text, value=value)
    rejected = CounterMetricFamily("predict_rejected", "predictions refused (HTTP 429, gRPC "
                                   "RESOURCE_EXHAUSTED)", labels=["reason"])
    rejected.add_metric(["full"], stats.rejected_full)
    rejected.add_metric(["queue_timeout"], stats.rejected_timeout)
    yield rejected
    yield CounterMetricFamily("predict_completed", "predictions run", value=stats.completed)


async def _invalid_input(_, error: kserve_errors.InvalidInput) -> JSONResponse:
  # KServe logs a traceback for every refused request; one line says it all.
  logger.info("refused a request (400): %s", error)
  return JSONResponse(status_code=400, content={"error": str(error)})


class _RESTServer(RESTServer):

  def __init__(self, *args, handlers: Dict[type, Callable],
               admission: admission_control.Admission, max_body_bytes: int, **kwargs):
    super().__init__(*args, **kwargs)
    self._handlers = handlers
    self._admission = admission
    self._max_body_bytes = max_body_bytes

  def _add_middlewares(self, app: fastapi.FastAPI):
    super()._add_middlewares(app)
    app.add_middleware(AdmissionGate, admission=self._admission)
    # The outermost: a body that can never be served is refused (413) before a full
    # server's 429 would ask for a retry.
    app.add_middleware(BodyLimit, max_bytes=self._max_body_bytes)

  def _register_endpoints(self, app: fastapi.FastAPI):
    # Instead of KServe's routes: add_routes() has put TF Serving's on the app already.
    app.add_api_route("/metrics", metrics_handler, methods=["GET"])
    # FastAPI's own OpenAPI schema route is not part of the API either.
    app.router.routes[:] = [route for route in app.router.routes
                            if getattr(route, "path", None) != app.openapi_url]

  def _add_exception_handlers(self, app: fastapi.FastAPI):
    super()._add_exception_handlers(app)
    app.add_exception_handler(kserve_errors.InvalidInput, _invalid_input)
    for error, handler in self._handlers.items():
      app.add_exception_handler(error, handler)


class ModelServer(kserve.ModelServer):
  """KServe's model server bound to one address (KServe itself binds all interfaces)."""

  def __init__(self, host: str, rest_port: int, max_body_bytes: int):
    super().__init__(http_port=rest_port, enable_grpc=False, workers=1,
                     enable_docs_url=False, enable_latency_logging=False,
                     grace_period=GRACEFUL_SHUTDOWN_SECONDS)
    self.host = host
    self.max_body_bytes = max_body_bytes
    # KServe's timing middleware logs two lines per request; the access log has one.
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)

  def start(self, predictor: Predictor) -> None:  # pylint: disable=arguments-renamed
    """Serves until SIGINT/SIGTERM. Unlike KServe's start, no model has to be ready yet:
    a model's status route reports 503 until a version loads, as a readiness probe
    expects. KServe's own model registry stays empty: its routes are not served."""
    add_routes(kserve_model_server.app, predictor)
    REGISTRY.register(AdmissionMetrics(predictor.admission))
    self._rest_server = _RESTServer(
        "kserve.model_server:app", self.dataplane, self.model_repository_extension,
        self.http_port, workers=1, grace_period=self.grace_period,
        timeout_keep_alive=self.timeout_keep_alive, handlers=exception_handlers(predictor.models),
        admission=predictor.admission, max_body_bytes=self.max_body_bytes)
    self._rest_server.config.host = self.host
    self.servers.append(self._rest_server.start())
    asyncio.run(self._serve())
