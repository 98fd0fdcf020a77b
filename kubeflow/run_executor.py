"""The container entrypoint of every task of the compiled pipeline.

TFX's Kubeflow V2 entrypoint, run after the task's run parameters are applied to its
executor input (kubeflow/run_parameters.py): a task of a run with `scale` 3 starts its
executor with the custom_config a local run at scale 3 would have. Tasks without run
parameters reach TFX's entrypoint unchanged.

  python -m superres_tfx.kubeflow.run_executor --executor_class_path CLASS \
      --json_serialized_invocation_args '{{$}}' [BEAM ARGS]
"""
import runpy
import sys
from typing import List, Optional

from kfp.pipeline_spec import pipeline_spec_pb2
from google.protobuf import json_format
from google.protobuf import struct_pb2

from superres_tfx.kubeflow import run_parameters
from superres_tfx.pipeline import pipeline as pipeline_lib

TFX_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
COMMAND = ["python", "-m", "superres_tfx.kubeflow.run_executor"]
INVOCATION_FLAG = "--json_serialized_invocation_args"


def _read(value):
  kind = value.WhichOneof("kind" if isinstance(value, struct_pb2.Value) else "value")
  return getattr(value, kind) if kind else None


def _write(value, new) -> None:
  if isinstance(new, str):
    value.string_value = new
  elif isinstance(value, struct_pb2.Value):  # numbers are doubles there
    value.number_value = new
  elif isinstance(new, int):
    value.int_value = new
  else:
    value.double_value = new


def apply_to_executor_input(invocation: str) -> str:
  """The ExecutorInput JSON with the run parameters among its inputs applied.

  Parameters arrive in `parameterValues` (pipeline spec 2.1), in the older `parameters`
  (spec 2.0, which TFX's entrypoint reads then), or in both: both are rewritten.
  """
  executor_input = pipeline_spec_pb2.ExecutorInput()
  json_format.Parse(invocation, executor_input, ignore_unknown_fields=True)
  fields = (executor_input.inputs.parameters, executor_input.inputs.parameter_values)
  if not any(name in field for field in fields for name in pipeline_lib.RUN_PARAMETERS):
    return invocation
  for field in fields:
    properties = {name: _read(value) for name, value in field.items()}
    for name, value in run_parameters.apply(properties).items():
      if value != properties[name]:
        _write(field[name], value)
  return json_format.MessageToJson(executor_input)


def main(argv: Optional[List[str]] = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  for i, arg in enumerate(argv):
    if arg == INVOCATION_FLAG and i + 1 < len(argv):
      argv[i + 1] = apply_to_executor_input(argv[i + 1])
    elif arg.startswith(INVOCATION_FLAG + "="):
      argv[i] = INVOCATION_FLAG + "=" + apply_to_executor_input(arg.split("=", 1)[1])
  sys.argv = argv
  pipeline_lib.bound_input_batches()
  runpy.run_module(TFX_ENTRYPOINT, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
