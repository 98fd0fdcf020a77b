"""Offline checks of the cluster manifests in kubeflow/serving/.

  python -m superres_tfx.serving.check_manifests FILE.yaml ...   (in the serving environment)

Built-in kinds go through `kubernetes-validate --strict` (Kubernetes' own schemas). A
KServe InferenceService has no schema there, and the kserve wheel ships no CRD, so it is
checked against KServe's API model classes (kserve.models, generated from KServe's
OpenAPI spec, and kubernetes.client.models for the pod fields): every field must exist
under its exact name, and values must have the declared types.
"""
import re
import subprocess
import sys
from typing import Any, List

import yaml

KSERVE_KINDS = {("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService"}
_PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool, "datetime": str,
               "bytes": str}
# Both spellings of the generated code: kserve's "list[X]" / "dict(str, X)" and the
# kubernetes client's "List[X]" / "Dict[str, X]".
_LIST = re.compile(r"[lL]ist\[(.+)\]")
_DICT = re.compile(r"dict\(str, (.+)\)|Dict\[str, (.+)\]")


def _model_class(name: str):
  # pylint: disable=import-outside-toplevel
  import kserve.models
  import kubernetes.client.models
  for module in (kserve.models, kubernetes.client.models):
    if hasattr(module, name):
      return getattr(module, name)
  raise LookupError(f"no API model class {name}")


def check_model(value: Any, type_name: str, path: str) -> List[str]:
  """Problems of `value` as an instance of the API type `type_name` (e.g. V1beta1PredictorSpec)."""
  if type_name == "object":
    return []
  if type_name in _PRIMITIVES:
    ok = isinstance(value, _PRIMITIVES[type_name]) and not (
        type_name != "bool" and isinstance(value, bool))
    return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"]
  match = _LIST.fullmatch(type_name)
  if match:
    if not isinstance(value, list):
      return [f"{path}: expected a list"]
    return [p for i, item in enumerate(value) for p in check_model(item, match[1], f"{path}[{i}]")]
  match = _DICT.fullmatch(type_name)
  if match:
    if not isinstance(value, dict):
      return [f"{path}: expected a mapping"]
    item_type = match[1] or match[2]
    return [p for key, item in value.items() for p in check_model(item, item_type, f"{path}.{key}")]
  cls = _model_class(type_name)
  if not isinstance(value, dict):
    return [f"{path}: expected a {type_name} mapping"]
  fields = {json_name: attribute for attribute, json_name in cls.attribute_map.items()}
  problems = []
  for key, item in value.items():
    if key not in fields:
      problems.append(f"{path}.{key}: unknown field of {type_name}")
    else:
      problems += check_model(item, cls.openapi_types[fields[key]], f"{path}.{key}")
  return problems


def check_file(path: str) -> List[str]:
  with open(path) as f:
    documents = [doc for doc in yaml.safe_load_all(f) if doc]
  problems = []
  for doc in documents:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in KSERVE_KINDS:
      problems += check_model(doc, KSERVE_KINDS[key], f"{path}:{doc['kind']}")
      if not doc.get("spec", {}).get("predictor"):
        problems.append(f"{path}:{doc['kind']}.spec.predictor: required")
  builtin = [doc for doc in documents
             if (doc.get("apiVersion"), doc.get("kind")) not in KSERVE_KINDS]
  if builtin:
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", path],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
      problems.append(
          f"{path}: kubernetes-validate --strict failed:\n{result.stdout}{result.stderr}")
  return problems


def main(argv=None) -> int:
  paths = sys.argv[1:] if argv is None else argv
  problems = [p for path in paths for p in check_file(path)]
  for problem in problems:
    print(problem)
  print(f"{len(paths)} manifest files checked, {len(problems)} problems")
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
