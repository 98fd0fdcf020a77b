"""Training under tf.distribute: one process against MultiWorkerMirroredStrategy workers.

Each worker trains the project's network (components.model.build_compiled_model) on
aligned LR/HR crops of photos bundled with scikit-image, made by Transform's own
preprocessing (superres_tfx.components.preprocessing.make_pairs) and augmented by the Trainer's
input functions, under the strategy the Trainer would use
(components.strategies.make_strategy). As in components/trainer.py, only the chief
exports the serving model.

  Steps/s of one process and of N local workers, same global batch (JSON on stdout):
    python -m benchmarks.training [--steps 40] [--workers 2] [--batch-size 16]
        [--patch-size 48] [--width 32] [--out training.json]

  One worker of the cluster described by TF_CONFIG (what the benchmark launches):
    TF_CONFIG=... python -m benchmarks.training --worker --result result.json
        [--export-dir DIR] [--steps N] [--batch-size B] ...

Batches are global: with N workers each computes the gradient of batch/N crops and
the mean gradient is applied everywhere, so all workers keep the same weights.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import keras
import keras_tuner
import numpy as np
import tensorflow as tf

from benchmarks import output
from benchmarks import ports as benchmark_ports
from superres_tfx.components import export
from superres_tfx.components import model as model_lib
from superres_tfx.components import preprocessing
from superres_tfx.components import strategies
from superres_tfx.components import training_data
from superres_tfx import bundled_data

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PHOTOS = 4  # distinct photos in the tiny training set
EVAL_PHOTOS = 2  # other photos, for validation
HR_SIZE = 96  # each photo gives one HR tile of this side, its most detailed
WORKER_TIMEOUT_S = 600


def photo_pairs(scale: int, photos: Sequence[str], hr_size: int = HR_SIZE):
  """(lr, hr) float32 arrays [photos, ...] made exactly as Transform makes them."""
  lrs, hrs = [], []
  for path in photos:
    hr_png, lr_png = preprocessing.make_pairs(tf.io.read_file(path), hr_size, scale,
                                              tiles_per_megapixel=0.0, min_tiles=1,
                                              max_tiles=1)
    lr, hr = training_data.decode_pair(lr_png[0], hr_png[0])
    lrs.append(lr.numpy())
    hrs.append(hr.numpy())
  return np.stack(lrs), np.stack(hrs)


def datasets(scale: int, batch_size: int, patch_size: int, seed: int):
  """Endless augmented (lr, hr) patch batches of TRAIN_PHOTOS photos, and one
  validation batch of EVAL_PHOTOS other whole photos."""
  paths = bundled_data.training_photo_paths()
  lr, hr = photo_pairs(scale, paths[:TRAIN_PHOTOS])
  lr_patch = patch_size // scale
  train = tf.data.Dataset.from_tensor_slices((lr, hr)).repeat().shuffle(
      len(lr) * 4, seed=seed)
  train = train.map(lambda a, b: training_data.random_patch(a, b, lr_patch, scale))
  train = train.map(training_data.random_dihedral)
  train = train.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  val = tf.data.Dataset.from_tensor_slices(
      photo_pairs(scale, paths[TRAIN_PHOTOS:TRAIN_PHOTOS + EVAL_PHOTOS])).batch(EVAL_PHOTOS)
  return train, val


def hyperparameters(architecture: str, width: int, depth: int,
                    learning_rate: float) -> keras_tuner.HyperParameters:
  hp = keras_tuner.HyperParameters()
  model_lib.define_search_space(hp, {
      "learning_rates": [learning_rate], "architectures": [architecture],
      "widths": [width], "depths": [depth], "dropouts": [0.0]})
  return hp


def digest(arrays) -> str:
  value = hashlib.sha256()
  for array in arrays:
    value.update(np.ascontiguousarray(array).tobytes())
  return value.hexdigest()


def train_worker(steps: int, export_dir: Optional[str] = None,
                 strategy: str = "multi_worker_mirrored", scale: int = 2,
                 batch_size: int = 8, patch_size: int = 24, architecture: str = "espcn",
                 width: int = 8, depth: int = 1, learning_rate: float = 1e-3,
                 seed: Optional[int] = None) -> Dict:
  """Trains `steps` global batches under `strategy`; the chief exports to export_dir.

  The seed (of weights, shuffling and crops) defaults to a different value on each
  task, so identical weights on all workers come from the strategy (initial values
  broadcast, gradients averaged), not from identical random draws.
  """
  if steps < 2:
    raise ValueError(f"steps must be at least 2 (the first is not timed), not {steps}.")
  task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
  if seed is None:
    seed = 1000 + int(task.get("index", 0))
  chosen = strategies.make_strategy(strategy)  # before any other TensorFlow op runs
  keras.utils.set_random_seed(seed)
  train, val = datasets(scale, batch_size, patch_size, seed)
  first_batch = digest(tensor.numpy() for tensor in next(iter(train)))
  with chosen.scope():
    model = model_lib.build_compiled_model(
        hyperparameters(architecture, width, depth, learning_rate), scale=scale,
        loss="mae", decay_steps=steps)
  initial = digest(model.get_weights())
  # One step with validation first: traces the train and test steps outside the timing.
  model.fit(train, validation_data=val, steps_per_epoch=1, epochs=1, verbose=0)
  start = time.perf_counter()
  history = model.fit(train, steps_per_epoch=steps - 1, epochs=1, verbose=0)
  seconds = time.perf_counter() - start
  validation = model.evaluate(val, verbose=0, return_dict=True)
  chief = strategies.is_chief()
  exported = None
  if chief and export_dir:  # workers train; only the chief writes the model
    export.export_serving_model(model, scale, export_dir)
    exported = export_dir
  return {
      "task": task or None, "chief": chief, "replicas": chosen.num_replicas_in_sync,
      "seed": seed, "first_batch": first_batch, "steps": steps,
      "timed_steps": steps - 1, "seconds": seconds, "steps_per_second": (steps - 1) / seconds,
      "loss": float(history.history["loss"][-1]), "val_psnr": float(validation["psnr"]),
      "initial_weights": initial, "final_weights": digest(model.get_weights()),
      "exported": exported}


def tf_config(ports: Sequence[int], index: int) -> str:
  """TF_CONFIG of worker `index` of a loopback cluster; worker 0 is the chief."""
  return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                     "task": {"type": "worker", "index": index}})


def launch(workers: int, work_dir: str, strategy: str = "multi_worker_mirrored",
           export: bool = True, worker_args: Sequence[str] = ()) -> List[Dict]:
  """Runs `workers` worker processes of this Python to completion; their results.

  worker_args: further `--worker` options (--steps, --batch-size, ...).
  """
  ports = benchmark_ports.free_ports(workers)
  processes = []
  try:
    for index in range(workers):
      result = os.path.join(work_dir, f"worker-{index}.json")
      args = [sys.executable, "-m", "benchmarks.training", "--worker", "--result", result,
              "--strategy", strategy, *worker_args]
      if export:
        # A directory per worker: only the chief may write to its own.
        args += ["--export-dir", os.path.join(work_dir, f"model-{index}")]
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
      env.pop("TF_CONFIG", None)
      if workers > 1:
        env["TF_CONFIG"] = tf_config(ports, index)
      log_path = os.path.join(work_dir, f"worker-{index}.log")
      with open(log_path, "w") as log:
        process = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
      processes.append((process, log_path, result))
    results = []
    for process, log_path, result in processes:
      process.wait(timeout=WORKER_TIMEOUT_S)
      if process.returncode != 0:
        with open(log_path) as f:
          raise RuntimeError(f"Worker {' '.join(process.args)} failed with status "
                             f"{process.returncode}; end of its log {log_path}:\n"
                             f"{f.read()[-3000:]}")
      with open(result) as f:
        results.append(json.load(f))
    return results
  finally:
    for process, _, _ in processes:
      if process.poll() is None:
        process.kill()
        process.wait()


def benchmark(steps: int, workers: int, worker_args: Sequence[str] = ()) -> Dict:
  """Steps/s with the same global batch: one process, then `workers` MWMS workers."""
  args = ["--steps", str(steps), *worker_args]
  with tempfile.TemporaryDirectory() as work_dir:
    single = launch(1, work_dir, strategy="default", export=False, worker_args=args)[0]
    multi = launch(workers, work_dir, export=False, worker_args=args)
  return {
      "cpu_count": os.cpu_count(), "timed_steps": single["timed_steps"],
      "worker_options": list(worker_args),
      "one_process": {"steps_per_second": single["steps_per_second"],
                      "loss": single["loss"], "val_psnr": single["val_psnr"]},
      f"{workers}_workers": {
          # The cluster moves at the pace of its slowest worker.
          "steps_per_second": min(r["steps_per_second"] for r in multi),
          "loss": multi[0]["loss"], "val_psnr": multi[0]["val_psnr"],
          "identical_weights": len({r["final_weights"] for r in multi}) == 1},
  }


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=40, help="global batches (>= 2)")
  parser.add_argument("--batch-size", type=int, default=16, help="global batch size")
  parser.add_argument("--patch-size", type=int, default=48, help="HR patch side")
  parser.add_argument("--width", type=int, default=32, help="filters of the espcn")
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--out", help="also write the JSON here")
  parser.add_argument("--worker", action="store_true",
                      help="run one worker of the cluster in TF_CONFIG")
  parser.add_argument("--strategy", default="multi_worker_mirrored")
  parser.add_argument("--result", help="(--worker) where to write the worker's JSON")
  parser.add_argument("--export-dir", help="(--worker) where the chief exports the model")
  args = parser.parse_args(argv)
  if args.steps < 2:
    parser.error("--steps must be at least 2 (the first step is not timed)")
  if args.worker:
    if not args.result:
      parser.error("--worker needs --result")
    result = train_worker(args.steps, args.export_dir, strategy=args.strategy,
                          batch_size=args.batch_size, patch_size=args.patch_size,
                          width=args.width)
    with open(args.result, "w") as f:
      json.dump(result, f, indent=1)
    return
  worker_args = ["--batch-size", str(args.batch_size), "--patch-size", str(args.patch_size),
                 "--width", str(args.width)]
  output.emit(benchmark(args.steps, args.workers, worker_args), args.out)


if __name__ == "__main__":
  main()
