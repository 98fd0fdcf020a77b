"""tf.distribute strategy chosen by name in the pipeline configuration."""
import json
import os

import tensorflow as tf


def make_strategy(name: str) -> tf.distribute.Strategy:
  """'default' (no distribution), 'mirrored' (all local devices) or
  'multi_worker_mirrored' (workers described by TF_CONFIG)."""
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker_mirrored":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"Unknown strategy {name!r}; choose default, mirrored or "
                   "multi_worker_mirrored.")


def is_chief() -> bool:
  """True unless TF_CONFIG names this task a non-chief worker (only the chief exports)."""
  task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
  task_type, task_id = task.get("type"), task.get("index", 0)
  if task_type in (None, "chief"):
    return True
  has_chief = "chief" in json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
  return task_type == "worker" and task_id == 0 and not has_chief
