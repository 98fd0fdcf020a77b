"""Phone-photo-sized requests through the real server: memory, time and correctness, as JSON.

Starts `python -m superres_tfx.serving` with its default limits on one model, then for each protocol
sends `--concurrency` copies of a large JPEG at once (24 MP, 6000x4000, by default)
and reports the server's peak resident memory while they ran (VmHWM, reset before each
protocol), its memory with the model loaded, each request's latency, how long the status
endpoint took to answer meanwhile, the answer's size, and the largest difference from
the same image upscaled in this process in tiles (superres_tfx.inference.upscaling), in grey levels.

Then, as stock TF Serving would run it, the exported `serving_default` signature alone
(loaded by the serving environment's TensorFlow in a fresh process): its memory growth
and time on the same photo, which it upscales in tiles inside its graph, and, beside it,
the same network exported to run the whole image at once, on a 1 MP crop (on the whole
photo it would need tens of GB).

  python -m benchmarks.large_requests [--model DIR] [--image photo.jpg]
      [--concurrency 4] [--protocols [rest] [grpc]] [--no-check] [--no-signature]
      [--out large.json]

Without --model it serves the serving benchmark's stand-in (the default profile's largest
network, self-ensembled, untrained: its cost is a trained model's). Without --image it
makes a 6000x4000 JPEG from scikit-image's astronaut with sensor-like noise.
"""
import argparse
import base64
import concurrent.futures
import io
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Callable, Dict, List

import numpy as np
from PIL import Image
import requests

from benchmarks import output
from benchmarks import process_memory
from benchmarks import serving as serving_benchmark
from superres_tfx.pipeline import configs
from superres_tfx.serving import client
from superres_tfx.serving import launcher
from superres_tfx.inference import upscaling

PHOTO_SIZE = (6000, 4000)  # width, height: a 24 MP phone photo
JPEG_QUALITY = 90
NOISE_LEVELS = 6  # +- grey levels of noise, so the JPEG is not unnaturally smooth
SAMPLE_SECONDS = 0.2
REQUEST_TIMEOUT = 3600


def make_photo(path: str) -> None:
  from skimage import data  # pylint: disable=import-outside-toplevel
  image = Image.fromarray(data.astronaut()).resize(PHOTO_SIZE, Image.BICUBIC)
  pixels = np.asarray(image).astype(np.int16)
  pixels += np.random.default_rng(0).integers(-NOISE_LEVELS, NOISE_LEVELS + 1, pixels.shape,
                                              dtype=np.int16)
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=JPEG_QUALITY)


def _rest_call(url: str, image: bytes) -> Callable[[], bytes]:
  body = {"instances": [{"b64": base64.b64encode(image).decode("ascii")}]}

  def call() -> bytes:
    response = requests.post(f"{url}/v1/models/{configs.MODEL_NAME}:predict", json=body,
                             timeout=REQUEST_TIMEOUT)
    if response.status_code != 200:
      raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
    return base64.b64decode(response.json()["predictions"][0]["b64"])
  return call


def _grpc_call(target: str, image: bytes) -> Callable[[], bytes]:
  def call() -> bytes:
    with client.GrpcClient(target, timeout=REQUEST_TIMEOUT) as rpc:
      return rpc.predict([image])[0]
  return call


def _under_load(pid: int, status_url: str, call: Callable[[], bytes],
                concurrency: int) -> Dict[str, object]:
  """Runs `concurrency` calls at once, sampling the server's memory and status latency."""
  process_memory.reset_peak(pid)
  stop = threading.Event()
  rss, status_ms = [], []

  def sample():
    while not stop.wait(SAMPLE_SECONDS):
      rss.append(process_memory.status_mb(pid, "VmRSS"))
      start = time.monotonic()
      requests.get(status_url, timeout=10)
      status_ms.append((time.monotonic() - start) * 1000)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()

  def timed(_):
    start = time.monotonic()
    answer = call()
    return time.monotonic() - start, answer

  start = time.monotonic()
  try:
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
      results = list(pool.map(timed, range(concurrency)))
  finally:
    stop.set()
    sampler.join()
  answers = [answer for _, answer in results]
  with Image.open(io.BytesIO(answers[0])) as first:
    size = first.size
  return {
      "wall_seconds": round(time.monotonic() - start, 1),
      "latency_seconds": [round(seconds, 1) for seconds, _ in results],
      "answer_bytes": [len(answer) for answer in answers],
      "answer_size": list(size),
      "answers_identical": all(answer == answers[0] for answer in answers),
      "server_peak_rss_mb": round(process_memory.status_mb(pid, "VmHWM")),
      "server_rss_samples_max_mb": round(max(rss, default=0.0)),
      "status_latency_ms": {"max": round(max(status_ms, default=0.0), 1),
                            "p50": round(float(np.median(status_ms)), 1) if status_ms else None,
                            "samples": len(status_ms)},
  }, answers[0]


def _max_difference(answer: bytes, expected: np.ndarray) -> int:
  with Image.open(io.BytesIO(answer)) as image:
    pixels = np.asarray(image.convert("RGB"))
  if pixels.shape != expected.shape:
    raise RuntimeError(f"answer is {pixels.shape}, expected {expected.shape}")
  return int(np.abs(pixels.astype(np.int16) - expected).max())


def _local_tiled(version_dir: str, image: bytes) -> np.ndarray:
  """The same upscaling in this process, tiled as the server tiles with its defaults."""
  upscaler = upscaling.Upscaler(version_dir)
  lr = upscaling.decode_image(image)
  encoded = b"".join(upscaler.upscale_to_png(
      lr, upscaler.tile_size_for(launcher.DEFAULT_MAX_REQUEST_MEMORY)))
  with Image.open(io.BytesIO(encoded)) as decoded:
    return np.asarray(decoded.convert("RGB"))


# Runs in the serving environment: serving_default on one image, memory from /proc.
SIGNATURE_PROBE = """
import json, sys, time
import tensorflow as tf
def status_kb(key):
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
serve(images=tf.constant([tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8)).numpy()]))
image = open(sys.argv[2], "rb").read()
with open("/proc/self/clear_refs", "w") as f:
  f.write("5")
before, start, cpu = status_kb("VmRSS"), time.monotonic(), time.process_time()
answer = serve(images=tf.constant([image]))["images"][0].numpy()
print(json.dumps({"seconds": round(time.monotonic() - start, 1),
                  "cpu_seconds": round(time.process_time() - cpu, 1),
                  "memory_growth_mb": round((status_kb("VmHWM") - before) / 1024),
                  "answer_bytes": len(answer)}))
"""
CROP_SIDE = 1000  # the crop the whole-image signature is measured on


def _signature_run(version_dir: str, image_path: str) -> dict:
  result = subprocess.run([launcher.serving_python(), "-c", SIGNATURE_PROBE, version_dir,
                           image_path], capture_output=True, text=True, check=False,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  if result.returncode != 0:
    return {"error": result.stderr.strip().splitlines()[-1][:300]}
  return json.loads(result.stdout.strip().splitlines()[-1])


def _signature_memory(work: str, image_path: str, tiled_version: str) -> dict:
  """serving_default as exported (tiled) on the photo and on a crop, and exported to run
  the whole image at once on the crop."""
  # pylint: disable=import-outside-toplevel
  from superres_tfx.components import export
  from superres_tfx.components.models import registry
  crop = os.path.join(work, "crop.png")
  with Image.open(image_path) as image:
    image.crop((0, 0, CROP_SIDE, CROP_SIDE)).save(crop)
  architecture, scale, width, depth, self_ensemble = serving_benchmark.stand_in_network()
  whole_version = os.path.join(work, "whole-image", "1")
  export.export_serving_model(registry.build_model(architecture, scale, width=width,
                                                   depth=depth), scale, whole_version,
                              self_ensemble=self_ensemble, tile_memory=1 << 50)
  return {"tiled_in_graph": {"photo": _signature_run(tiled_version, image_path),
                             f"crop_{CROP_SIDE}": _signature_run(tiled_version, crop)},
          "whole_image_graph": {f"crop_{CROP_SIDE}": _signature_run(whole_version, crop)},
          "tile_memory_bytes": export.SERVING_TILE_MEMORY}


def _through_server(work: str, version_dir: str, image: bytes, concurrency: int,
                    protocols: List[str], check: bool) -> dict:
  """The server under `concurrency` copies of `image`, for each protocol."""
  base = os.path.join(work, configs.MODEL_NAME)
  os.makedirs(base)
  os.symlink(version_dir, os.path.join(base, "1"))
  args = serving_benchmark.server_args(base)
  process = None
  with open(os.path.join(work, "server.log"), "wb") as log:
    try:
      process = serving_benchmark.start_server(args, log)
      url, target = f"http://127.0.0.1:{args.rest_port}", f"127.0.0.1:{args.grpc_port}"
      status_url = f"{url}/v1/models/{configs.MODEL_NAME}"
      serving_benchmark.wait_until(
          process, log, lambda: requests.get(status_url, timeout=5).status_code == 200)
      result = {"server_defaults": {"max_pixels": args.max_pixels,
                                    "max_request_memory": args.max_request_memory,
                                    "max_in_flight": args.max_in_flight},
                "server_rss_loaded_mb": round(process_memory.status_mb(process.pid, "VmRSS"))}
      expected = _local_tiled(version_dir, image) if check else None
      calls = {"rest": lambda: _rest_call(url, image),
               "grpc": lambda: _grpc_call(target, image)}
      for protocol in protocols:
        figures, answer = _under_load(process.pid, status_url, calls[protocol](), concurrency)
        if expected is not None:
          figures["max_difference_from_local_tiled"] = _max_difference(answer, expected)
        result[protocol] = figures
        result[f"server_rss_after_{protocol}_mb"] = round(process_memory.status_mb(process.pid))
      return result
    finally:
      serving_benchmark.stop_server(process)


def run(model: str, image_path: str, concurrency: int, protocols: List[str],
        check: bool, signature: bool) -> dict:
  work = tempfile.mkdtemp(prefix="large-requests-")
  try:
    if model:
      version_dir, description = upscaling.resolve_model_dir(model), model
    else:
      version_dir, description = serving_benchmark.export_stand_in_model(work)
    if not image_path:
      image_path = os.path.join(work, "photo.jpg")
      make_photo(image_path)
    image = open(image_path, "rb").read()
    with Image.open(io.BytesIO(image)) as opened:
      width, height = opened.size
    result = {
        "model": description, "image": {"path": image_path, "width": width, "height": height,
                                        "bytes": len(image)},
        "concurrency": concurrency, "machine": {"cpus": os.cpu_count(),
                                                "python": platform.python_version()},
    }
    if protocols:
      result.update(_through_server(work, version_dir, image, concurrency, protocols, check))
    if signature and not model:
      result["serving_default_alone"] = _signature_memory(work, image_path, version_dir)
    return result
  finally:
    shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", help="a pushed version or serving directory (default: the "
                      "serving benchmark's stand-in model)")
  parser.add_argument("--image", help="the photo to send (default: a generated 6000x4000 JPEG)")
  parser.add_argument("--concurrency", type=int, default=4)
  parser.add_argument("--protocols", nargs="*", choices=["rest", "grpc"],
                      default=["rest", "grpc"], help="none: serving_default alone")
  parser.add_argument("--no-check", dest="check", action="store_false",
                      help="skip the in-process reference run")
  parser.add_argument("--no-signature", dest="signature", action="store_false",
                      help="skip the serving_default measurements (done for the stand-in "
                      "model only)")
  parser.add_argument("--out", help="also write the JSON here")
  args = parser.parse_args(argv)
  output.emit(run(args.model, args.image, args.concurrency, args.protocols, args.check,
                  args.signature), args.out)


if __name__ == "__main__":
  main()
