"""A large image through the real server: answered whole, in bounded memory, equal to a
local tiled run.

The server process's resident memory is sampled while it upscales a 6 MP photo-like
image over REST and over gRPC, with a memory budget small enough that the image runs
in many tiles. Upscaled whole, the same request would take about 1 GB more (measured
below): the peak must stay far under that.
"""
import base64
import io

import numpy as np
from PIL import Image
import pytest
import requests
from skimage import data

from superres_tfx.serving import client
from superres_tfx.inference import upscaling
from tests import serving_harness
from tests.serving_harness import NAME, export_models, pixels_of
from tests.serving_harness import serving_environment_missing, MISSING_ENVIRONMENT

pytestmark = pytest.mark.skipif(serving_environment_missing(), reason=MISSING_ENVIRONMENT)

SIZE = (3000, 2000)  # width, height: 6 MP in, 24 MP out at x2
BUDGET_MIB = 16
# What the server may add to its resident memory for one such request: the decoded input
# (18 MB), one strip of output rows, the PNG answer (~30 MB), its base64 and JSON copies,
# and the tiles' working memory. Whole-image inference needs about 1 GB more than that.
MAX_GROWTH_MB = 400


def _photo_jpeg() -> bytes:
  image = Image.fromarray(data.astronaut()).resize(SIZE, Image.BICUBIC)
  pixels = np.asarray(image).astype(np.int16)
  pixels += np.random.default_rng(0).integers(-6, 7, pixels.shape, dtype=np.int16)
  buffer = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG",
                                                                   quality=90)
  return buffer.getvalue()


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
  with open(f"/proc/{pid}/status") as f:
    return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  return export_models(str(tmp_path_factory.mktemp("large") / NAME), versions=(1,))


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
  with serving_harness.serving(models, tmp_path_factory,
                               ["--max-request-memory", str(BUDGET_MIB << 20)]) as running:
    yield running


@pytest.fixture(scope="module")
def photo_and_expected(models):
  photo = _photo_jpeg()
  upscaler = models[1][1]
  expected = pixels_of(b"".join(upscaler.upscale_to_png(
      upscaling.decode_image(photo), upscaler.tile_size_for(BUDGET_MIB << 20))))
  return photo, expected


def _sampled(pid: int, call):
  """call()'s answer and the server's peak resident memory growth meanwhile, in MB."""
  with open(f"/proc/{pid}/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from the current resident size
  before = _rss_mb(pid)
  answer = call()
  return answer, _rss_mb(pid, "VmHWM") - before


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_large_photo_is_answered_in_bounded_memory(server, photo_and_expected, protocol):
  photo, expected = photo_and_expected
  if protocol == "rest":
    def call():
      response = requests.post(server.predict_url, timeout=600, json={
          "instances": [{"b64": base64.b64encode(photo).decode("ascii")}]})
      assert response.status_code == 200, response.text[:300]
      return base64.b64decode(response.json()["predictions"][0]["b64"])
  else:
    def call():
      with client.GrpcClient(server.target, NAME, timeout=600) as rpc:
        return rpc.predict([photo])[0]
  answer, growth_mb = _sampled(server.pid, call)
  upscaled = pixels_of(answer)
  assert upscaled.shape == (SIZE[1] * 2, SIZE[0] * 2, 3)
  assert np.abs(upscaled.astype(int) - expected).max() <= 1
  assert growth_mb < MAX_GROWTH_MB, f"the server grew by {growth_mb:.0f} MB"
  assert "tiles of" in server.log()


def test_whole_image_inference_would_not_fit_the_bound(models):
  """The bound above means something: one untiled pass over the same image, in the
  serving environment's TensorFlow, grows a process by more than the bound."""
  import subprocess  # pylint: disable=import-outside-toplevel
  from tests.serving_harness import SERVING_PYTHON  # pylint: disable=import-outside-toplevel
  script = (
      "import sys, numpy as np, tensorflow as tf\n"
      "f = tf.saved_model.load(sys.argv[1]).signatures['upscale']\n"
      "f(lr=tf.zeros([1, 8, 8, 3]))\n"
      "rss = lambda key: next(int(l.split()[1]) for l in open('/proc/self/status') "
      "if l.startswith(key))\n"
      "before = rss('VmRSS:')\n"
      "f(lr=tf.zeros([1, %d, %d, 3]))\n"
      "print((rss('VmHWM:') - before) / 1024)\n" % (SIZE[1], SIZE[0]))
  result = subprocess.run([SERVING_PYTHON, "-c", script, models[1][0]], capture_output=True,
                          text=True, timeout=600, check=True)
  assert float(result.stdout.strip().splitlines()[-1]) > MAX_GROWTH_MB
