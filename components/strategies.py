"""tf.distribute strategy chosen by name in the pipeline configuration.

Keras 3.3 (the version this project pins) cannot train correctly with more than one
replica; make_strategy repairs three defects before any model is built:

1. Gradients are never combined across replicas: TFOptimizer sums them inside
   `merge_call`, where there is no replica context, so the sum is skipped and each
   replica applies its own gradient (keras-team/keras#19308; fixed for Keras 3.5 by
   keras-team/keras#19969). The copies of the weights silently drift apart.
2. The optimizer's slots and the compiled metrics are created lazily inside the first
   distributed train step. TensorFlow then wraps their initialisation in a `cond`,
   and any cross-replica reduction traced in the same step fails with "You must feed
   a value for placeholder tensor '.../cond/Placeholder'". Later Keras builds them
   before tracing (`_symbolic_build` in fit/evaluate); here fit/evaluate do it too.
3. With several workers, the logs are wrong twice over. Each step's logs are averaged
   with `strategy.reduce("MEAN", value, axis=0)`, which cannot trace ("Invalid
   reduction dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388).
   The epoch's logs (and so `val_*` and early stopping) come from metric variables
   local to each worker, so each worker sees only its own shard of the data.
"""
# The repairs reach into Keras internals on purpose, imported late: Keras loads only
# when a strategy is made.
# pylint: disable=import-outside-toplevel,protected-access
import functools
import json
import os

import tensorflow as tf

# The first Keras release whose optimizer all-reduces gradients itself.
KERAS_ALL_REDUCES_GRADIENTS_FROM = (3, 5)


def make_strategy(name: str) -> tf.distribute.Strategy:
  """'default' (no distribution), 'mirrored' (all local devices) or
  'multi_worker_mirrored' (workers described by TF_CONFIG)."""
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    strategy = tf.distribute.MirroredStrategy()
  elif name == "multi_worker_mirrored":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
  else:
    raise ValueError(f"Unknown strategy {name!r}; choose default, mirrored or "
                     "multi_worker_mirrored.")
  if strategy.num_replicas_in_sync > 1:  # one replica needs no repair
    repair_keras_distribution()
  return strategy


def repair_keras_distribution() -> None:
  """Applies the three repairs of the module docstring (idempotent)."""
  _average_gradients_across_replicas()
  _build_state_before_tracing()
  _reduce_scalar_logs_across_workers()
  _reduce_metric_results_across_workers()


def _keras_version() -> tuple:
  import keras
  return tuple(int(part) for part in keras.version().split(".")[:2])


def _average_gradients_across_replicas() -> None:
  """Repair 1: the optimizer applies the mean of the replicas' gradients.

  Each replica's loss is the mean over its share of the global batch, so the mean
  gradient is the gradient of the whole batch: N workers make the update that one
  process makes with the same global batch.
  """
  if _keras_version() >= KERAS_ALL_REDUCES_GRADIENTS_FROM:
    return
  from keras.src import backend as keras_backend
  from keras.src.backend.tensorflow import optimizer as keras_optimizer
  optimizer_class = keras_optimizer.TFOptimizer
  if getattr(optimizer_class._backend_update_step, "repaired", False):
    return

  @tf.autograph.experimental.do_not_convert
  def _backend_update_step(self, grads, trainable_variables, learning_rate):
    variables = [v.value if isinstance(v, keras_backend.Variable) else v
                 for v in trainable_variables]
    context = tf.distribute.get_replica_context()  # None in cross-replica context
    if context is not None and context.num_replicas_in_sync > 1:
      grads = context.all_reduce(tf.distribute.ReduceOp.MEAN, list(grads))

    def update(distribution, grads_and_vars, learning_rate):
      for grad, var in grads_and_vars:
        distribution.extended.update(
            var, lambda v, g, lr: self.update_step(g, v, lr), args=(grad, learning_rate),
            group=False)

    tf.__internal__.distribute.interim.maybe_merge_call(
        update, self._distribution_strategy, list(zip(grads, variables)), learning_rate)

  _backend_update_step.repaired = True
  optimizer_class._backend_update_step = _backend_update_step


def _build_state_before_tracing() -> None:
  """Repair 2: fit/evaluate create the model's, metrics' and optimizer's variables
  from one batch of a tf.data input before the distributed step is traced."""
  from keras.src.backend.tensorflow import trainer as keras_trainer
  trainer_class = keras_trainer.TensorFlowTrainer

  def building_first(method):
    if getattr(method, "repaired", False):
      return method

    @functools.wraps(method)
    def wrapper(self, x=None, *args, **kwargs):
      strategy = self.distribute_strategy
      if isinstance(x, tf.data.Dataset) and strategy.num_replicas_in_sync > 1:
        metrics = self._compile_metrics
        optimizer = getattr(self, "optimizer", None)
        if ((metrics is not None and not metrics.built)
            or (optimizer is not None and not optimizer.built)):
          with strategy.scope():
            self._symbolic_build(data_batch=next(iter(x)))
      return method(self, x, *args, **kwargs)

    wrapper.repaired = True
    return wrapper

  trainer_class.fit = building_first(trainer_class.fit)
  trainer_class.evaluate = building_first(trainer_class.evaluate)


def _reduce_scalar_logs_across_workers() -> None:
  """Repair 3, per step: scalar logs are averaged over all replicas of all workers.

  Non-scalar logs keep Keras's reduction.
  """
  from keras.src.backend.tensorflow import trainer as keras_trainer
  original = keras_trainer.reduce_per_replica
  if getattr(original, "repaired", False):
    return

  @tf.autograph.experimental.do_not_convert
  def reduce_per_replica(values, strategy, reduction):
    if (reduction in ("auto", "mean")
        and keras_trainer._collective_all_reduce_multi_worker(strategy)):
      return tf.nest.map_structure(
          lambda value: (strategy.reduce("MEAN", value, axis=None) if value.shape.rank == 0
                         else original(value, strategy, reduction)), values)
    return original(values, strategy, reduction)

  reduce_per_replica.repaired = True
  keras_trainer.reduce_per_replica = reduce_per_replica


def _reduce_metric_results_across_workers() -> None:
  """Repair 3, per epoch: metric results are averaged over the workers.

  Every worker then sees the same metrics, so callbacks such as early stopping take
  the same decision everywhere (a worker stopping alone would leave the others
  waiting in a collective). Workers get equal shares of each batch, so the mean of
  their results is the result over the whole data.
  """
  from keras.src.backend.tensorflow import trainer as keras_trainer
  trainer_class = keras_trainer.TensorFlowTrainer
  original = trainer_class.get_metrics_result
  if getattr(original, "repaired", False):
    return

  @functools.wraps(original)
  def get_metrics_result(self):
    results = original(self)
    strategy = self.distribute_strategy
    # Also called inside the traced train step, where workers are reduced per step.
    if (not tf.executing_eagerly()
        or not keras_trainer._collective_all_reduce_multi_worker(strategy)):
      return results
    names = sorted(name for name, value in results.items() if isinstance(value, float))
    if not names:
      return results
    with strategy.scope():
      means = strategy.reduce("MEAN", tf.constant([results[n] for n in names], tf.float32),
                              axis=None)
    return dict(results, **{name: float(v) for name, v in zip(names, means.numpy())})

  get_metrics_result.repaired = True
  trainer_class.get_metrics_result = get_metrics_result


def is_chief() -> bool:
  """True unless TF_CONFIG names this task a non-chief worker (only the chief exports)."""
  task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
  task_type, task_id = task.get("type"), task.get("index", 0)
  if task_type in (None, "chief"):
    return True
  has_chief = "chief" in json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
  return task_type == "worker" and task_id == 0 and not has_chief
