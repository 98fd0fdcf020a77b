"""TF Serving's REST API through KServe's model server.

KServe answers `POST /v1/models/NAME:predict` (its V1 protocol is TF Serving's) with
the model below. The routes TF Serving has and KServe lacks are added to KServe's
FastAPI app: per-version predict, and TF Serving's status and metadata answers.
"""
import asyncio
import logging
from typing import List, Optional

import fastapi
from fastapi.responses import JSONResponse
import kserve
from kserve import errors as kserve_errors
from kserve import model_server as kserve_model_server
from kserve.protocol.rest.server import RESTServer

from serving import messages
from serving import predict
from serving import protocol
from serving.versions import AVAILABLE, NoVersionAvailable, VersionManager, VersionNotFound

logger = logging.getLogger("serving.rest")

GRACEFUL_SHUTDOWN_SECONDS = 5


class SuperResolutionModel(kserve.Model):
  """Serves whichever version the VersionManager holds; ready once one has loaded."""

  def __init__(self, name: str, versions: VersionManager, max_pixels: int):
    super().__init__(name)
    self.versions = versions
    self.max_pixels = max_pixels

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
      outputs = await asyncio.get_running_loop().run_in_executor(
          None, predict.upscale_encoded, served, images, self.max_pixels,
          "inputs" if columnar else "instances")
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
      body["error"] = f"no version of model {name} is available yet"
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
  app.add_api_route("/v1/models/{name}/versions/{version}:predict", version_predict,
                    methods=["POST"])

  async def version_not_found(_, error: VersionNotFound) -> JSONResponse:
    return _not_found(
        f"Servable not found for request: Specific({model.name}, {error.version}): {error}")

  async def no_version(_, error: NoVersionAvailable) -> JSONResponse:
    return JSONResponse(status_code=503, content={"error": str(error)})

  app.add_exception_handler(VersionNotFound, version_not_found)
  app.add_exception_handler(NoVersionAvailable, no_version)


_STATUS = {kserve_errors.InvalidInput: 400, kserve_errors.ModelNotFound: 404,
           kserve_errors.ModelNotReady: 503}


async def _client_error(_, error: Exception) -> JSONResponse:
  # KServe logs a traceback for every refused request; one line says it all.
  status = next(code for kind, code in _STATUS.items() if isinstance(error, kind))
  logger.info("refused a request (%d): %s", status, error)
  return JSONResponse(status_code=status, content={"error": str(error)})


class _RESTServer(RESTServer):

  def _add_exception_handlers(self, app: fastapi.FastAPI):
    super()._add_exception_handlers(app)
    for error in _STATUS:
      app.add_exception_handler(error, _client_error)


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
    self._rest_server = _RESTServer(
        "kserve.model_server:app", self.dataplane, self.model_repository_extension,
        self.http_port, workers=1, grace_period=self.grace_period,
        timeout_keep_alive=self.timeout_keep_alive)
    self._rest_server.config.host = self.host
    self.servers.append(self._rest_server.start())
    asyncio.run(self._serve())
