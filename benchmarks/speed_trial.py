"""One tuning trial of the serving benchmark's speed section, in a fresh process.

Times the float signature (`upscale`) of each given SavedModel on a random
SIDE x SIDE input: CPU and wall milliseconds per output megapixel, medians of rounds
(benchmarks.hardware.measure). What TensorFlow fixes at start-up comes from the parent:
environment variables (TF_ENABLE_ONEDNN_OPTS, TF_XLA_FLAGS) and --intra-op/--inter-op
(tf.config.threading, set before the first op; 0 = TensorFlow's choice). Also with
CALLERS threads calling at once, as the server's concurrent requests do. With --extras,
also: the signature under tf.function(jit_compile=True); the input as 2x2 tiles, one
call each and as one batch; the fixed bicubic upscaling alone, with and without
antialias.

  python -m benchmarks.speed_trial --model NAME=DIR [--model ...] [--intra-op N]
      [--inter-op N] [--extras]

Prints one JSON object. benchmarks/serving.py runs it with the server's Python.
"""
import argparse
import concurrent.futures
import json
import re
import sys
from typing import Callable, Dict

import tensorflow as tf

from benchmarks import hardware
from superres_tfx.imaging import image_ops
from superres_tfx.core import names

SIDE = 256
TILES_PER_SIDE = 2  # 2x2 tiles of 128x128
CALLERS = 2  # threads calling at once, as concurrent requests do in the server


def _costs(call: Callable[[], object], output_pixels: int) -> Dict[str, float]:
  rounds = hardware.measure(call)
  per_mp = 1000.0 * 1e6 / output_pixels
  return {"cpu_ms_per_output_mp": round(hardware.median_per_call(rounds, "cpu_s") * per_mp, 1),
          "wall_ms_per_output_mp": round(hardware.median_per_call(rounds, "wall_s") * per_mp, 1)}


def _guarded(measurement: Callable[[], Dict]) -> Dict:
  """A measurement, or why it could not run (XLA refuses some ops)."""
  try:
    return measurement()
  except (tf.errors.OpError, ValueError) as error:
    message = error.message if isinstance(error, tf.errors.OpError) else str(error)
    unsupported = sorted(set(re.findall(r"No registered '(\w+)' OpKernel for XLA", message)))
    if unsupported:
      return {"error": f"ops XLA cannot compile: {', '.join(unsupported)}"}
    return {"error": message.splitlines()[0][:300]}


def _tiles(lr: tf.Tensor) -> tf.Tensor:
  """[1, H, W, 3] -> [TILES_PER_SIDE^2, H/t, W/t, 3], row by row."""
  t = TILES_PER_SIDE
  _, h, w, c = lr.shape
  grid = tf.reshape(lr, [t, h // t, t, w // t, c])
  return tf.reshape(tf.transpose(grid, [0, 2, 1, 3, 4]), [t * t, h // t, w // t, c])


def _model_trial(version_dir: str, extras: bool) -> Dict[str, Dict]:
  loaded = tf.saved_model.load(version_dir)
  upscale = loaded.signatures[names.FLOAT_SIGNATURE]
  scale = int(loaded.scale.numpy())
  lr = tf.random.uniform([1, SIDE, SIDE, 3], seed=SIDE)
  pixels = (SIDE * scale) ** 2
  network = lambda x: upscale(lr=x)["sr"]
  result = {"plain": _costs(lambda: network(lr), pixels)}
  with concurrent.futures.ThreadPoolExecutor(CALLERS) as pool:
    result["concurrent"] = _costs(
        lambda: list(pool.map(lambda _: network(lr), range(CALLERS))), CALLERS * pixels)
  if not extras:
    return result
  compiled = tf.function(network, jit_compile=True)
  result["xla_jit_compile"] = _guarded(lambda: _costs(lambda: compiled(lr), pixels))
  tiles = _tiles(lr)
  result["tiles_one_at_a_time"] = _costs(
      lambda: [network(tiles[i:i + 1]) for i in range(tiles.shape[0])], pixels)
  result["tiles_batched"] = _costs(lambda: network(tiles), pixels)
  bicubic = tf.function(lambda x: image_ops.upscale_bicubic(x, scale))
  result["bicubic_only"] = _costs(lambda: bicubic(lr), pixels)
  # What the same upscaling costs without antialias (which only acts when shrinking).
  plain_bicubic = tf.function(lambda x: tf.clip_by_value(
      tf.image.resize(x, [SIDE * scale] * 2, method=tf.image.ResizeMethod.BICUBIC), 0.0, 1.0))
  result["bicubic_without_antialias_only"] = _costs(lambda: plain_bicubic(lr), pixels)
  result["bicubic_without_antialias_max_difference"] = float(
      tf.reduce_max(tf.abs(plain_bicubic(lr) - bicubic(lr))))
  return result


def _onednn_enabled():
  try:
    # pylint: disable=import-outside-toplevel
    from tensorflow.python.util import _pywrap_util_port
    return bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):
    return None  # this TensorFlow does not say


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
  parser.add_argument("--intra-op", type=int, default=0)
  parser.add_argument("--inter-op", type=int, default=0)
  parser.add_argument("--extras", action="store_true")
  args = parser.parse_args(argv)
  hardware.set_tf_threads(args.intra_op, args.inter_op)
  result = {"tensorflow": tf.__version__, "onednn": _onednn_enabled(),
            "input": f"{SIDE}x{SIDE}", "concurrent_callers": CALLERS, "models": {}}
  for spec in args.model:
    name, version_dir = spec.split("=", 1)
    result["models"][name] = _model_trial(version_dir, args.extras)
  json.dump(result, sys.stdout)
  print()


if __name__ == "__main__":
  main()
