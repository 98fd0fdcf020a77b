"""Tiled upscaling: strip by strip, with PNG written as it goes, equals a whole-image pass.

What the server runs for every request (serving.predict): decode to uint8, upscale tile
by tile with a margin of the network's receptive radius, encode each row of tiles into
the PNG stream. Checked here against the exported `serving_default` signature on the
whole image (one tile of its own at these sizes), for every architecture and scale; and
that signature's own tiling, which stock TF Serving runs, against a whole-image pass.
"""
import numpy as np
from PIL import Image
import pytest
from skimage import data

from superres_tfx.components import export
from superres_tfx.inference import footprint
from superres_tfx.components.models import registry
from superres_tfx.inference import upscaling
from superres_tfx.inference import png_stream
from tests.serving_harness import pixels_of as _pixels
from tests.serving_harness import png as _png

ODD_SIZE = (37, 53)  # neither side a multiple of any tile size used below
SMALL_TILE = 8  # many tiles, so that every seam and corner case is crossed


def _photo(height: int, width: int) -> np.ndarray:
  return np.ascontiguousarray(data.astronaut()[100:100 + height, 150:150 + width])


def _random_weights_model(architecture: str, scale: int):
  """Small, with random weights: an untrained model is plain bicubic and would hide seams."""
  model = registry.build_model(architecture, scale, width=8, depth=2)
  rng = np.random.default_rng(scale)
  model.set_weights([rng.normal(0.0, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()])
  return model


@pytest.fixture(scope="module", params=[
    (architecture, scale) for architecture in registry.architecture_names() for scale in (2, 3, 4)],
    ids=lambda param: f"{param[0]}-x{param[1]}")
def upscaler(request, tmp_path_factory):
  architecture, scale = request.param
  path = str(tmp_path_factory.mktemp(f"{architecture}_x{scale}"))
  export.export_serving_model(_random_weights_model(architecture, scale), scale, path)
  return upscaling.Upscaler(path)


def test_tiled_png_equals_the_whole_image_signature(upscaler):
  lr = _photo(*ODD_SIZE)
  whole = _pixels(upscaler.upscale_bytes(_png(lr)))
  tiled = _pixels(b"".join(upscaler.upscale_to_png(lr, SMALL_TILE)))
  assert tiled.shape == (ODD_SIZE[0] * upscaler.scale, ODD_SIZE[1] * upscaler.scale, 3)
  assert np.abs(tiled.astype(int) - whole).max() <= 1
  # The network is not bicubic, so the comparison above could see a seam.
  assert np.abs(whole.astype(int) - _pixels(_png(np.asarray(Image.fromarray(lr).resize(
      (whole.shape[1], whole.shape[0]), Image.BICUBIC))))).mean() > 2


def test_float_tiles_use_the_receptive_radius_by_default(upscaler):
  lr = _photo(*ODD_SIZE).astype(np.float32) / 255.0
  whole = upscaler.upscale(lr, tile_size=max(ODD_SIZE))
  np.testing.assert_allclose(upscaler.upscale(lr, tile_size=SMALL_TILE), whole, atol=1e-4)


def test_self_ensembled_model_tiles_too(tmp_path):
  export.export_serving_model(_random_weights_model("espcn", 2), 2, str(tmp_path),
                              self_ensemble=True)
  upscaler = upscaling.Upscaler(str(tmp_path))
  lr = _photo(*ODD_SIZE)
  whole = _pixels(upscaler.upscale_bytes(_png(lr)))
  tiled = _pixels(b"".join(upscaler.upscale_to_png(lr, SMALL_TILE)))
  assert upscaler.self_ensemble
  assert np.abs(tiled.astype(int) - whole).max() <= 1


def test_tile_size_follows_the_memory_budget(tmp_path):
  export.export_serving_model(_random_weights_model("edsr", 2), 2, str(tmp_path))
  upscaler = upscaling.Upscaler(str(tmp_path))
  # Eight 3x3 kernels (head, 2 blocks of 2, body end, upsampling, output), beside
  # bicubic's 2.
  assert upscaler.receptive_radius == 8
  small, large = upscaler.tile_size_for(16 << 20), upscaler.tile_size_for(256 << 20)
  assert footprint.MIN_TILE_SIZE < small < large
  outer = large + 2 * upscaler.receptive_radius
  assert outer ** 2 * upscaler.bytes_per_pixel <= 256 << 20
  assert (outer + 1) ** 2 * upscaler.bytes_per_pixel > 256 << 20
  assert upscaler.tile_size_for(1) == footprint.MIN_TILE_SIZE


@pytest.mark.parametrize("height,width,strip_rows", [(1, 1, 1), (5, 7, 2), (64, 33, 64),
                                                     (100, 3, 7)])
def test_png_stream_decodes_to_the_pixels_given(height, width, strip_rows):
  pixels = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
  pixels[: height // 2] = _photo(height, width)[: height // 2]  # smooth and noisy rows
  strips = [pixels[top:top + strip_rows] for top in range(0, height, strip_rows)]
  encoded = b"".join(png_stream.encode(height, width, strips))
  np.testing.assert_array_equal(_pixels(encoded), pixels)


def test_png_stream_refuses_wrong_rows():
  stream = png_stream.PngStream(4, 5)
  with pytest.raises(ValueError, match=r"uint8 rows \[h, 5, 3\]"):
    stream.add(np.zeros([2, 6, 3], np.uint8))
  stream.add(np.zeros([3, 5, 3], np.uint8))
  with pytest.raises(ValueError, match="more than the 4 rows"):
    stream.add(np.zeros([2, 5, 3], np.uint8))
  with pytest.raises(ValueError, match="3 rows written of the 4"):
    stream.finish()


@pytest.mark.parametrize("architecture", registry.architecture_names())
def test_exported_signature_tiles_in_its_graph(architecture, tmp_path):
  """Stock TF Serving runs `serving_default` as exported: its graph tiles large images
  (here made to cut 32-pixel tiles) and still equals one whole-image pass."""
  export.export_serving_model(_random_weights_model(architecture, 3), 3, str(tmp_path),
                              tile_memory=1)  # the smallest tiles there are
  upscaler = upscaling.Upscaler(str(tmp_path))
  lr = _photo(70, 45)  # 3 x 2 tiles of 32, the last row and column partial
  assert footprint.MIN_TILE_SIZE < 45 < 70 < 3 * footprint.MIN_TILE_SIZE
  tiled_in_graph = _pixels(upscaler.upscale_bytes(_png(lr)))
  whole = upscaler.upscale(lr.astype(np.float32) / 255.0, tile_size=100)
  assert tiled_in_graph.shape == (210, 135, 3)
  assert np.abs(tiled_in_graph.astype(int) - np.round(whole * 255.0)).max() <= 1
