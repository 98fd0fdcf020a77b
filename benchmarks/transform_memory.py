"""Memory and time Transform's preprocessing_fn needs for one photo, by photo size.

  python -m benchmarks.transform_memory [--photo FILE ...] [--scale 2] [--out FILE]

Each photo is transformed in a fresh process, as Transform's graph runs it (the
preprocessing_fn traced into a tf.function): first a small photo, so TensorFlow's own
start-up and the traced graph are in memory, then the peak resident memory is reset
(/proc/self/clear_refs) and the photo under test is transformed. `extra_peak_mb` is
that peak above the resident memory just before: what the photo itself costs. Without
--photo, a 24 MP JPEG (6000 x 4000, benchmarks/large_requests.py's phone photo) and a
0.3 MP one are made.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import output
from benchmarks import process_memory

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(path: str, scale: int) -> dict:
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from PIL import Image
  from superres_tfx.components import features
  from superres_tfx.components import preprocessing
  from superres_tfx.pipeline import configs
  from superres_tfx.pipeline import pipeline as pipeline_lib
  config = pipeline_lib.custom_config_for(configs.PROFILES[configs.DEFAULT_PROFILE], scale)
  transform = tf.function(lambda images: preprocessing.preprocessing_fn(
      {features.IMAGE: images}, config))
  from skimage import data
  import io
  buffer = io.BytesIO()
  Image.fromarray(data.astronaut()).save(buffer, format="PNG")
  transform(tf.constant([buffer.getvalue()]))  # warm-up: traced graph, TensorFlow pools
  with open(path, "rb") as f:
    encoded = f.read()
  with Image.open(path) as image:
    width, height = image.size
  before = process_memory.status_mb()
  process_memory.reset_peak()
  start = time.monotonic()
  out = transform(tf.constant([encoded]))
  seconds = time.monotonic() - start
  peak = process_memory.status_mb(field="VmHWM")
  tiles = int(out[features.HR].values.shape[0])
  return {"photo": os.path.basename(path), "width": width, "height": height,
          "megapixels": round(width * height / 1e6, 1), "file_mb": round(len(encoded) / 1e6, 1),
          "tiles": tiles, "seconds": round(seconds, 2), "rss_before_mb": round(before),
          "peak_mb": round(peak), "extra_peak_mb": round(peak - before)}


def measure(path: str, scale: int) -> dict:
  result = subprocess.run([sys.executable, "-m", "benchmarks.transform_memory", "--child", path,
                           "--scale", str(scale)], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--photo", nargs="+", help="photos to transform (default: made here)")
  parser.add_argument("--scale", type=int, default=2)
  parser.add_argument("--out", help="also write the JSON here")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(_child(args.child, args.scale)))
    return
  photos = args.photo
  if not photos:
    # pylint: disable=import-outside-toplevel
    from PIL import Image
    from benchmarks import large_requests
    work = tempfile.mkdtemp(prefix="transform-memory-")
    big = os.path.join(work, "phone_24mp.jpg")
    large_requests.make_photo(big)
    small = os.path.join(work, "small_0.3mp.jpg")
    with Image.open(big) as image:
      image.resize((640, 480)).save(small, quality=large_requests.JPEG_QUALITY)
    photos = [small, big]
  output.emit({"benchmark": "transform_memory", "scale": args.scale,
               "photos": [measure(path, args.scale) for path in photos]}, args.out)


if __name__ == "__main__":
  main()
