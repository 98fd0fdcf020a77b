"""ExampleValidator whose verdict the DAG can branch on.

TFX's ExampleValidator records `blessed` as a JSON dict per split, which a
`tfx.dsl.Cond` predicate cannot index. This executor adds one integer custom property,
`anomalies_found` (0 or 1, over all splits), and otherwise is TFX's own.
"""
from tfx.components.example_validator import component as example_validator_component
from tfx.components.example_validator import executor as example_validator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import standard_component_specs

from superres_tfx.core import names


class Executor(example_validator_executor.Executor):

  def Do(self, input_dict, output_dict, exec_properties):
    result = super().Do(input_dict, output_dict, exec_properties)
    anomalies = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.ANOMALIES_KEY])
    per_split = anomalies.get_json_value_custom_property(
        example_validator_executor.ARTIFACT_PROPERTY_BLESSED_KEY) or {}
    found = any(value != example_validator_executor.BLESSED_VALUE
                for value in dict(per_split).values())
    anomalies.set_int_custom_property(names.ANOMALIES_FOUND, int(found))
    # The base executor returns its ExecutorOutput holding the artifact as it was;
    # refresh it so the new property reaches ML Metadata.
    if result is not None:
      for artifact_list in result.output_artifacts.values():
        for mlmd_artifact in artifact_list.artifacts:
          mlmd_artifact.CopyFrom(anomalies.mlmd_artifact)
    return result


class ExampleValidator(example_validator_component.ExampleValidator):
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
