"""Two real worker processes train the project's network under MultiWorkerMirroredStrategy.

Each worker has its own seed, so it draws other crops and would initialise other
weights: identical weights after training prove that the strategy broadcast the
initial values and that every step applied the gradient averaged over both workers.
"""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from benchmarks import training
from superres_tfx import bundled_data

STEPS = 4
WORKER_ARGS = ["--steps", str(STEPS), "--batch-size", "8", "--patch-size", "24",
               "--width", "8"]


def test_two_workers_train_in_lockstep_and_only_the_chief_exports(tmp_path):
  chief, worker = training.launch(2, str(tmp_path), worker_args=WORKER_ARGS)

  assert chief["chief"] and not worker["chief"]
  assert chief["replicas"] == worker["replicas"] == 2
  assert chief["seed"] != worker["seed"] and chief["first_batch"] != worker["first_batch"]
  assert chief["initial_weights"] == worker["initial_weights"]
  assert chief["final_weights"] == worker["final_weights"]
  assert chief["final_weights"] != chief["initial_weights"]  # it did train
  # Logs are averaged over the workers, so callbacks decide the same everywhere.
  assert chief["loss"] == worker["loss"] and chief["val_psnr"] == worker["val_psnr"]
  assert np.isfinite(chief["loss"]) and chief["val_psnr"] > 20

  assert chief["exported"] == str(tmp_path / "model-0") and worker["exported"] is None
  assert not (tmp_path / "model-1").exists()
  loaded = tf.saved_model.load(chief["exported"])
  photo = Image.open(bundled_data.holdout_photo_paths()[0]).convert("RGB").crop((0, 0, 40, 30))
  buffer = io.BytesIO()
  photo.save(buffer, format="PNG")
  out = loaded.signatures["serving_default"](images=tf.constant([buffer.getvalue()]))
  assert Image.open(io.BytesIO(out["images"].numpy()[0])).size == (80, 60)
