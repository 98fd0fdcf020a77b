"""Run history and model lineage, read back from ML Metadata through its API.

list_runs: one row per pipeline run (data, scale, scores, blessing, pushed version).
lineage: from a pushed version back through the artifacts it was made from (model,
hyperparameters, Transform graph, data checks, schema, examples, image folder), each
with its URI and the run that produced it. A cached step points to the run that
really computed it.
"""
import dataclasses
import datetime
import json
import os
from typing import Dict, Iterable, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from superres_tfx.core import errors
from superres_tfx.core import names

# The Evaluator's input holding the previous blessed model: the lineage of a model
# does not continue into the models it was compared with.
BASELINE_INPUT_KEY = "baseline_model"
# Outputs shown next to the artifacts they sit beside, not only ancestors.
SIBLING_TYPES = ("ModelEvaluation", "ModelRun")  # outputs beside the one walked through
FOLDER_TYPE = "(image folder)"

_INPUTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
_OUTPUTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


class LineageError(errors.SuperresError):
  """No such pushed version, or no metadata: the message says what to do."""


@dataclasses.dataclass
class RunRow:
  run_id: str
  started: str  # local time the run began
  status: str  # complete | data anomalies | failed (<node>) | running
  model: Optional[str] = None  # the pipeline's name: the model it trains
  data_root: Optional[str] = None
  scale: Optional[int] = None
  psnr_model: Optional[float] = None
  psnr_bicubic: Optional[float] = None
  blessed: Optional[bool] = None
  pushed_version: Optional[str] = None
  # Why the model was or was not pushed: the Evaluator's reason, or the serving check's
  # when that one refused it.
  reason: Optional[str] = None


@dataclasses.dataclass
class LineageEntry:
  role: str  # <producing node>.<output key>, e.g. Trainer.model
  type_name: str  # MLMD artifact type, e.g. Model
  artifact_id: Optional[int]
  uri: str
  run_id: str  # the run whose execution produced the artifact
  details: str = ""


def metadata_path(pipeline_root: str) -> str:
  return os.path.join(pipeline_root, names.METADATA_FILE)


def read_only_config(pipeline_root: str) -> metadata_store_pb2.ConnectionConfig:
  """The local run's store, opened for reading only (nothing is created or migrated)."""
  path = metadata_path(pipeline_root)
  if not os.path.isfile(path):
    raise LineageError(f"No ML Metadata at {path}: run `superres run` first, or pass the "
                       "--pipeline-root it used.")
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return config


def _property(item, name: str):
  """A (custom) property of an artifact or execution as a Python value, or None."""
  for props in (item.custom_properties, item.properties):
    if name in props:
      value = props[name]
      return getattr(value, value.WhichOneof("value"))
  return None


class _Store:
  """MetadataStore with the few lookups this module needs."""

  def __init__(self, connection_config: metadata_store_pb2.ConnectionConfig):
    self.store = metadata_store.MetadataStore(connection_config)
    self._artifact_types = {t.id: t.name for t in self.store.get_artifact_types()}

  def artifact_type(self, artifact) -> str:
    return self._artifact_types[artifact.type_id]

  def node_and_run(self, execution_id: int):
    node, run, _ = self.contexts(execution_id)
    return node, run

  def contexts(self, execution_id: int):
    """(node, run, pipeline) names of an execution."""
    found = {names.NODE_CONTEXT_TYPE: "?", names.RUN_CONTEXT_TYPE: "?",
             names.PIPELINE_CONTEXT_TYPE: None}
    for context in self.store.get_contexts_by_execution(execution_id):
      type_name = self.store.get_context_types_by_id([context.type_id])[0].name
      if type_name in found:
        found[type_name] = context.name
    node = found[names.NODE_CONTEXT_TYPE].split(".")[-1]
    return node, found[names.RUN_CONTEXT_TYPE], found[names.PIPELINE_CONTEXT_TYPE]

  def events_of_executions(self, ids: Iterable[int]):
    ids = list(ids)
    return self.store.get_events_by_execution_ids(ids) if ids else []

  def outputs(self, execution_id: int) -> Dict[str, object]:
    """Output key -> artifact of one execution."""
    events = [e for e in self.events_of_executions([execution_id]) if e.type in _OUTPUTS]
    artifacts = {a.id: a for a in self.store.get_artifacts_by_id([e.artifact_id for e in events])}
    return {_key(e): artifacts[e.artifact_id] for e in events}

  def producer(self, artifact_id: int):
    """The execution that computed an artifact (not the cached runs that reused it),
    and the output key it produced it under."""
    events = [e for e in self.store.get_events_by_artifact_ids([artifact_id])
              if e.type in _OUTPUTS]
    if not events:
      return None, None
    executions = {x.id: x for x in self.store.get_executions_by_id(
        [e.execution_id for e in events])}
    computed = [e for e in events
                if executions[e.execution_id].last_known_state
                != metadata_store_pb2.Execution.CACHED] or events
    event = min(computed, key=lambda e: e.execution_id)
    return executions[event.execution_id], _key(event)


def _key(event) -> str:
  return event.path.steps[0].key if event.path.steps else ""


def _started(context) -> str:
  stamp = datetime.datetime.fromtimestamp(context.create_time_since_epoch / 1000.0)
  return stamp.strftime("%Y-%m-%d %H:%M:%S")


def list_runs(connection_config: metadata_store_pb2.ConnectionConfig,
              model: Optional[str] = None) -> List[RunRow]:
  """Every recorded pipeline run (of `model` only, if given), oldest first."""
  db = _Store(connection_config)
  rows = []
  runs = sorted(db.store.get_contexts_by_type(names.RUN_CONTEXT_TYPE),
                key=lambda c: (c.create_time_since_epoch, c.id))
  for run in runs:
    row = RunRow(run_id=run.name, started=_started(run), status="complete")
    executions = sorted(db.store.get_executions_by_context(run.id), key=lambda e: e.id)
    for execution in executions:
      node, _, row.model = db.contexts(execution.id)
      if execution.last_known_state == metadata_store_pb2.Execution.FAILED:
        row.status = f"failed ({node})"
      elif execution.last_known_state not in _DONE and row.status == "complete":
        row.status = "running"
      _fill_row(row, db, execution)
    if model is None or row.model == model:
      rows.append(row)
  return rows


def _fill_row(row: RunRow, db: _Store, execution) -> None:
  input_base = _property(execution, "input_base")
  if input_base is not None:
    row.data_root = input_base
  if execution.last_known_state not in _DONE:
    return
  for artifact in db.outputs(execution.id).values():
    type_name = db.artifact_type(artifact)
    if type_name == "ExampleAnomalies" and _property(artifact, names.ANOMALIES_FOUND):
      row.status = "data anomalies"
    elif type_name == "ModelEvaluation":
      row.psnr_model = _property(artifact, "psnr_model")
      row.psnr_bicubic = _property(artifact, "psnr_bicubic")
    elif type_name == "ModelBlessing" and _property(artifact, "blessed") is not None:
      row.blessed = _property(artifact, "blessed") == 1
      row.reason = row.reason or _property(artifact, "reason")
    elif type_name == "InfraBlessing" and row.blessed and not _infra_blessed(artifact):
      row.reason = f"refused by the serving check: {_property(artifact, 'reason')}"
    elif type_name == "PushedModel" and _property(artifact, "pushed") == 1:
      row.pushed_version = _property(artifact, "pushed_version")
  scale = _property(execution, "scale")  # the Evaluator's parameter
  if scale is not None:
    row.scale = int(scale)


def _infra_blessed(artifact) -> bool:
  # TFX's InfraValidator contract (tfx.utils.model_utils.is_infra_validated).
  return _property(artifact, "blessed") == 1


def _pushes(db: _Store, model: Optional[str]):
  """(model name, PushedModel artifact) of every push, of `model` only if given."""
  result = []
  for artifact in db.store.get_artifacts_by_type("PushedModel"):
    if _property(artifact, "pushed") != 1:
      continue
    execution, _ = db.producer(artifact.id)
    name = db.contexts(execution.id)[2] if execution else None
    if model is None or name == model:
      result.append((name, artifact))
  return result


def pushed_versions(connection_config: metadata_store_pb2.ConnectionConfig,
                    model: Optional[str] = None) -> List[str]:
  """'<model>/<version>' of every push."""
  pushes = _pushes(_Store(connection_config), model)
  return sorted({f"{name}/{_property(a, 'pushed_version')}" for name, a in pushes})


def lineage(connection_config: metadata_store_pb2.ConnectionConfig,
            version: str, model: Optional[str] = None) -> List[LineageEntry]:
  """The artifacts a pushed version (of `model`, if given) was made from, newest first,
  ending at the folder."""
  db = _Store(connection_config)
  matches = [(name, a) for name, a in _pushes(db, model)
             if _property(a, "pushed_version") == str(version)]
  if not matches:
    known = ", ".join(pushed_versions(connection_config, model)) or "none yet"
    raise LineageError(f"No model was pushed as version {version!r}; pushed versions: {known}.")
  if len({name for name, _ in matches}) > 1:
    raise LineageError(f"Version {version} was pushed for several models "
                       f"({', '.join(sorted({n for n, _ in matches}))}): pass --model.")
  pushes = [a for _, a in matches]
  # A re-run that re-blesses the same model records the push again: the first one made it.
  pushed = min(pushes, key=lambda a: a.id)

  found = {}  # artifact id -> (artifact, producing execution, output key)
  queue = [pushed]
  while queue:
    artifact = queue.pop(0)
    if artifact.id in found:
      continue
    execution, key = db.producer(artifact.id)
    found[artifact.id] = (artifact, execution, key)
    if execution is None:
      continue
    for event in db.events_of_executions([execution.id]):
      if event.type in _INPUTS and _key(event) != BASELINE_INPUT_KEY:
        queue.extend(db.store.get_artifacts_by_id([event.artifact_id]))

  executions = {x.id: x for _, x, _ in found.values() if x is not None}
  for execution in executions.values():
    for key, artifact in db.outputs(execution.id).items():
      if db.artifact_type(artifact) in SIBLING_TYPES and artifact.id not in found:
        found[artifact.id] = (artifact, execution, key)

  entries = []
  # Producers run after what they consume: newest execution first walks back the DAG
  # (outputs of one execution by name).
  for artifact, execution, key in sorted(
      found.values(), key=lambda item: (-(item[1].id if item[1] else 0), item[2] or "")):
    node, run = db.node_and_run(execution.id) if execution else ("?", "?")
    entries.append(LineageEntry(
        role=f"{node}.{key}", type_name=db.artifact_type(artifact), artifact_id=artifact.id,
        uri=artifact.uri, run_id=run, details=_details(db, artifact, execution)))
    input_base = execution is not None and _property(execution, "input_base")
    if input_base:
      entries.append(LineageEntry(
          role="data", type_name=FOLDER_TYPE, artifact_id=None, uri=input_base, run_id=run,
          details=_fingerprint(_property(execution, "input_fingerprint"))))
  return entries


def _fingerprint(value: Optional[str]) -> str:
  """'files:15,bytes:199255,sha256:<64 hex>' -> '15 files, 199255 bytes, sha256 504bca4085c2'."""
  fields = dict(part.split(":", 1) for part in (value or "").split(",") if ":" in part)
  if not {"files", "bytes", "sha256"} <= set(fields):
    return value or ""
  return f"{fields['files']} files, {fields['bytes']} bytes, sha256 {fields['sha256'][:12]}"


def _details(db: _Store, artifact, execution) -> str:
  """A short human summary of an artifact."""
  type_name = db.artifact_type(artifact)

  def p(name):
    return _property(artifact, name)

  if type_name == "PushedModel":
    return f"version {p('pushed_version')} at {p('pushed_destination')}"
  if type_name in ("ModelBlessing", "InfraBlessing"):
    return f"{'blessed' if p('blessed') == 1 else 'not blessed'}: {p('reason')}"
  if type_name == "ModelEvaluation" and p("psnr_model") is not None:
    return (f"PSNR {p('psnr_model'):.2f} dB vs bicubic {p('psnr_bicubic'):.2f} dB "
            f"({p('psnr_model') - p('psnr_bicubic'):+.2f}); SSIM {p('ssim_model'):.4f}")
  if type_name == "Model" and execution is not None:
    return _training_summary(db, execution)
  if type_name == "TransformGraph" and execution is not None:
    config = json.loads(_property(execution, "custom_config") or "{}")
    return ", ".join(f"{k} {v}" for k, v in sorted(config.items()))
  if type_name == "ExampleAnomalies":
    return "anomalies found" if p(names.ANOMALIES_FOUND) else "no anomalies"
  if type_name == "Schema" and execution is not None and _property(execution, "schema_file"):
    return f"from {_property(execution, 'schema_file')}"
  if type_name == "Examples" and p("ingested") is not None:
    return f"{p('ingested')} images, {int(p('quarantined') or 0)} quarantined"
  splits = _property(artifact, "split_names")
  return f"splits {', '.join(json.loads(splits))}" if splits else ""


def read_json(path: str):
  """None when absent. Local files without TensorFlow (a slow import); URLs with it."""
  if "://" not in path:
    if not os.path.isfile(path):
      return None
    with open(path) as f:
      return json.load(f)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _training_summary(db: _Store, trainer_execution) -> str:
  """Hyperparameters and size, from the Trainer's training.json beside the model."""
  for artifact in db.outputs(trainer_execution.id).values():
    if db.artifact_type(artifact) != "ModelRun":
      continue
    summary = read_json(os.path.join(artifact.uri, names.TRAINING_SUMMARY_FILE))
    if summary is None:
      continue
    hp = summary.get("hyperparameters", {})
    parts = [f"{hp.get('architecture', '?')} width {hp.get('width')} depth {hp.get('depth')}",
             f"lr {hp.get('learning_rate')}"]
    if "parameters" in summary:
      parts.append(f"{summary['parameters']:,} parameters")
    return ", ".join(parts)
  return ""
