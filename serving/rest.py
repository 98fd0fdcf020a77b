"""TF Serving's REST API through KServe's model server.

KServe answers `POST /v1/models/NAME:predict` (its V1 protocol is TF Serving's) with
the model below. The routes TF Serving has and KServe lacks are added to KServe's
FastAPI app: per-version predict, and TF Serving's status and metadata answers.
Predictions go through admission control (429 with Retry-After when full); its counts
are on KServe's Prometheus endpoint, GET /metrics.
"""
import asyncio
import logging
from typing import Callable, Dict, List, Optional

import fastapi
from fastapi.responses import JSONResponse, Response
import kserve
from kserve import errors as kserve_errors
from kserve import model_server as kserve_model_server
from kserve.protocol.rest.server import RESTServer
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.requests import ClientDisconnect

from serving import admission as admission_control
from serving import messages
from serving import predict
from serving import protocol
from serving.versions import AVAILABLE, NoVersionAvailable, VersionManager, VersionNotFound

logger = logging.getLogger("serving.rest")

GRACEFUL_SHUTDOWN_SECONDS = 5
PREDICT_SUFFIX = ":predict"  # TF Serving's predict URLs: /v1/models/NAME[/versions/N]:predict


class SuperResolutionModel(kserve.Model):
  """Serves whichever version the VersionManager holds; ready once one has loaded."""

  def __init__(self, name: str, versions: VersionManager, max_pixels: int,
               admission: admission_control.Admission):
    super().__init__(name)
    self.versions = versions
    self.max_pixels = max_pixels
    self.admission = admission

  async def healthy(self) -> bool:
    return self._has_served()

  def _has_served(self) -> bool:
    try:
      self.versions.served()
    except NoVersionAvailable:
      return False
    return True

  def load(self) -> bool:
    # Loading is the VersionManager's job; KServe calls this for a model that is not ready.
    return self._has_served()

  async def predict(self, payload, headers=None, response_headers=None):
    return await self.predict_version(payload, None)

  async def predict_version(self, payload, version: Optional[int]) -> dict:
    try:
      served = self.versions.served(version)
      images, columnar = protocol.parse_predict_request(payload)
      # A disconnected client does not cancel this coroutine; the work finishes and its
      # future frees the slot either way.
      outputs = await asyncio.wrap_future(self.admission.submit(
          predict.upscale_encoded, served, images, self.max_pixels,
          "inputs" if columnar else "instances"))
    except protocol.BadRequest as error:
      raise kserve_errors.InvalidInput(str(error)) from None
    return protocol.predict_response(outputs, columnar)


def _not_found(message: str) -> JSONResponse:
  return JSONResponse(status_code=404, content={"error": message})


def add_routes(app: fastapi.FastAPI, model: SuperResolutionModel) -> None:
  """TF Serving routes KServe does not have; registered before KServe's, so they take precedence."""
  versions = model.versions

  def check_name(name: str) -> None:
    if name != model.name:
      raise kserve_errors.ModelNotFound(name)

  def status(name: str, version: Optional[int]) -> JSONResponse:
    check_name(name)
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
    check_name(name)
    return JSONResponse(messages.metadata_json(name, versions.served(version)))

  async def model_metadata(name: str) -> JSONResponse:
    return metadata(name, None)

  async def version_metadata(name: str, version: int) -> JSONResponse:
    return metadata(name, version)

  async def version_predict(name: str, version: int, request: fastapi.Request) -> JSONResponse:
    check_name(name)
    return JSONResponse(await model.predict_version(await request.body(), version))

  app.add_api_route("/v1/models/{name}", model_status, methods=["GET"])
  app.add_api_route("/v1/models/{name}/versions/{version}", version_status, methods=["GET"])
  app.add_api_route("/v1/models/{name}/metadata", model_metadata, methods=["GET"])
  app.add_api_route("/v1/models/{name}/versions/{version}/metadata", version_metadata,
                    methods=["GET"])
  app.add_api_route("/v1/models/{name}/versions/{version}" + PREDICT_SUFFIX, version_predict,
                    methods=["POST"])


def exception_handlers(model: SuperResolutionModel) -> Dict[type, Callable]:
  """Answers for the errors of serving and admission, in TF Serving's {"error": ...} form."""

  async def version_not_found(_, error: VersionNotFound) -> JSONResponse:
    return _not_found(
        f"Servable not found for request: Specific({model.name}, {error.version}): {error}")

  async def no_version(_, error: NoVersionAvailable) -> JSONResponse:
    return JSONResponse(status_code=503, content={"error": str(error)})

  async def not_ready(_, error: kserve_errors.ModelNotReady) -> JSONResponse:
    # KServe's own predict route checks readiness first; say why, as our routes do.
    try:
      model.versions.served()
      message = str(error)
    except NoVersionAvailable as reason:
      message = str(reason)
    logger.info("refused a request (503): %s", message)
    return JSONResponse(status_code=503, content={"error": message})

  async def overloaded(_, error: admission_control.Overloaded) -> JSONResponse:
    return overloaded_response(error)

  async def client_gone(request: fastapi.Request, _) -> Response:
    # The client closed the connection while sending its body; nobody reads an answer.
    logger.info("a client disconnected while sending %s %s", request.method, request.url.path)
    return Response(status_code=499)  # nginx's "client closed request", for the access log

  return {VersionNotFound: version_not_found, NoVersionAvailable: no_version,
          kserve_errors.ModelNotReady: not_ready, admission_control.Overloaded: overloaded,
          ClientDisconnect: client_gone}


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


class AdmissionMetrics:
  """Admission counts for Prometheus (KServe's GET /metrics), read when scraped."""

  def __init__(self, name: str, admission: admission_control.Admission):
    self.name = name
    self.admission = admission

  def collect(self):
    stats = self.admission.stats()
    labels = ["model_name"]
    for metric, help_text, value in (
        ("predict_in_flight", "predictions running", stats.in_flight),
        ("predict_queued", "predictions waiting for a slot", stats.queued),
        ("predict_capacity", "predictions that may run or wait at once",
         self.admission.capacity)):
      gauge = GaugeMetricFamily(metric, help_text, labels=labels)
      gauge.add_metric([self.name], value)
      yield gauge
    rejected = CounterMetricFamily("predict_rejected", "predictions refused (HTTP 429, gRPC "
                                   "RESOURCE_EXHAUSTED)", labels=labels + ["reason"])
    rejected.add_metric([self.name, "full"], stats.rejected_full)
    rejected.add_metric([self.name, "queue_timeout"], stats.rejected_timeout)
    yield rejected
    completed = CounterMetricFamily("predict_completed", "predictions run", labels=labels)
    completed.add_metric([self.name], stats.completed)
    yield completed


_STATUS = {kserve_errors.InvalidInput: 400, kserve_errors.ModelNotFound: 404}


async def _client_error(_, error: Exception) -> JSONResponse:
  # KServe logs a traceback for every refused request; one line says it all.
  status = next(code for kind, code in _STATUS.items() if isinstance(error, kind))
  logger.info("refused a request (%d): %s", status, error)
  return JSONResponse(status_code=status, content={"error": str(error)})


class _RESTServer(RESTServer):

  def __init__(self, *args, handlers: Dict[type, Callable],
               admission: admission_control.Admission, **kwargs):
    super().__init__(*args, **kwargs)
    self._handlers = handlers
    self._admission = admission

  def _add_middlewares(self, app: fastapi.FastAPI):
    super()._add_middlewares(app)
    app.add_middleware(AdmissionGate, admission=self._admission)  # the outermost

  def _add_exception_handlers(self, app: fastapi.FastAPI):
    super()._add_exception_handlers(app)
    for error in _STATUS:
      app.add_exception_handler(error, _client_error)
    for error, handler in self._handlers.items():
      app.add_exception_handler(error, handler)


class ModelServer(kserve.ModelServer):
  """KServe's model server bound to one address (KServe itself binds all interfaces)."""

  def __init__(self, host: str, rest_port: int):
    super().__init__(http_port=rest_port, enable_grpc=False, workers=1,
                     enable_docs_url=False, enable_latency_logging=False,
                     grace_period=GRACEFUL_SHUTDOWN_SECONDS)
    self.host = host
    # KServe's timing middleware logs two lines per request; the access log has one.
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)

  def start(self, models: List[kserve.Model]) -> None:
    """Serves until SIGINT/SIGTERM. Unlike KServe's start, no model has to be ready yet:
    the status route reports 503 until a version loads, as a readiness probe expects."""
    for model in models:
      self.register_model(model)
    add_routes(kserve_model_server.app, models[0])
    REGISTRY.register(AdmissionMetrics(models[0].name, models[0].admission))
    self._rest_server = _RESTServer(
        "kserve.model_server:app", self.dataplane, self.model_repository_extension,
        self.http_port, workers=1, grace_period=self.grace_period,
        timeout_keep_alive=self.timeout_keep_alive, handlers=exception_handlers(models[0]),
        admission=models[0].admission)
    self._rest_server.config.host = self.host
    self.servers.append(self._rest_server.start())
    asyncio.run(self._serve())
