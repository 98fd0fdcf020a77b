"""What a finished run produced, read back from ML Metadata: per-component outcome,
quarantined files, data anomalies, scores, blessing and the pushed model."""
import dataclasses
import os
from typing import Dict, List, Optional

import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from superres_tfx.core import errors
from superres_tfx.core import names
from superres_tfx.components.image_example_gen.executor import QUARANTINE_FILE
from superres_tfx.pipeline.lineage import read_json


@dataclasses.dataclass
class RunSummary:
  run_id: str
  outcomes: Dict[str, str]  # node id -> complete | cached | failed | ...
  quarantined: List[Dict[str, str]] = dataclasses.field(default_factory=list)
  ingested: Optional[int] = None
  anomalies: List[str] = dataclasses.field(default_factory=list)
  metrics: Optional[Dict] = None
  blessed: Optional[bool] = None
  # The serving check (components/infra_validator): None when it did not record a verdict.
  infra_blessed: Optional[bool] = None
  infra_reason: Optional[str] = None
  pushed_dir: Optional[str] = None
  tuner_results_dir: Optional[str] = None
  report_path: Optional[str] = None
  log_path: Optional[str] = None

  @property
  def cached_count(self) -> int:
    return sum(1 for v in self.outcomes.values() if v == "cached")


_STATES = {
    metadata_store_pb2.Execution.COMPLETE: "complete",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.CANCELED: "canceled",
    metadata_store_pb2.Execution.NEW: "new",
}


def node_id(store, execution) -> str:
  """The pipeline node (component id) an execution belongs to."""
  for context in store.get_contexts_by_execution(execution.id):
    if store.get_context_types_by_id([context.type_id])[0].name == names.NODE_CONTEXT_TYPE:
      return context.name.split(".")[-1]
  return str(execution.id)


def _anomaly_lines(anomalies_uri: str) -> List[str]:
  """Readable anomaly descriptions from ExampleValidator's per-split output."""
  from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=import-outside-toplevel
  lines = []
  for path in sorted(tf.io.gfile.glob(os.path.join(anomalies_uri, "Split-*", "*"))):
    split = os.path.basename(os.path.dirname(path))[len("Split-"):]
    anomalies = anomalies_pb2.Anomalies()
    anomalies.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
    for feature, info in sorted(anomalies.anomaly_info.items()):
      lines.append(f"{split}: feature '{feature}': {info.description or info.short_description}")
    if anomalies.HasField("dataset_anomaly_info"):
      lines.append(f"{split}: dataset: {anomalies.dataset_anomaly_info.description}")
  return lines


def latest_run(connection_config: metadata_store_pb2.ConnectionConfig,
               run_id: Optional[str] = None) -> RunSummary:
  store = metadata_store.MetadataStore(connection_config)
  runs = store.get_contexts_by_type(names.RUN_CONTEXT_TYPE)
  if not runs:
    raise errors.SuperresError("No pipeline run is recorded in ML Metadata yet.")
  run = next((c for c in runs if c.name == run_id), None) if run_id else max(
      runs, key=lambda c: (c.create_time_since_epoch, c.id))
  summary = RunSummary(run_id=run.name, outcomes={})
  executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
  for execution in executions:
    node = node_id(store, execution)
    summary.outcomes[node] = _STATES.get(execution.last_known_state, "unknown")
    output_ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                  if e.type in (metadata_store_pb2.Event.OUTPUT,
                                metadata_store_pb2.Event.DECLARED_OUTPUT)]
    for artifact in store.get_artifacts_by_id(output_ids):
      type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
      _collect(summary, type_name, artifact)
  return summary


def _collect(summary: RunSummary, type_name: str, artifact) -> None:
  props = artifact.custom_properties
  if type_name == "Examples" and tf.io.gfile.exists(os.path.join(artifact.uri, QUARANTINE_FILE)):
    report = read_json(os.path.join(artifact.uri, QUARANTINE_FILE))
    summary.quarantined = report.get("quarantined", [])
    summary.ingested = report.get("ingested")
  elif type_name == "ExampleAnomalies":
    summary.anomalies = _anomaly_lines(artifact.uri)
  elif type_name == "ModelEvaluation":
    summary.metrics = read_json(os.path.join(artifact.uri, names.METRICS_FILE))
  elif type_name == "ModelBlessing" and "blessed" in props:
    summary.blessed = props["blessed"].int_value == 1
  elif type_name == "InfraBlessing" and "blessed" in props:
    summary.infra_blessed = props["blessed"].int_value == 1
    if "reason" in props:
      summary.infra_reason = props["reason"].string_value
  elif type_name == "TunerResults":
    summary.tuner_results_dir = artifact.uri
  elif type_name == "PushedModel" and "pushed" in props:
    if props["pushed"].int_value == 1:
      summary.pushed_dir = props["pushed_destination"].string_value
