"""A corpus of broken, hostile and awkward image files, generated on demand.

`write_corpus(folder)` fills a folder with tiny files made by Pillow and numpy
(nothing committed): what tests/test_bad_inputs.py feeds to the ExampleGen and
to `superres upscale`, and benchmarks/ingest_memory.py counts. It returns what
should become of each file: INGESTED, or words its quarantine reason contains.
"""
import os
import shutil
import subprocess
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from benchmarks import image_samples
from superres_tfx.imaging import file_paths
from superres_tfx.imaging import image_decoding
from superres_tfx.pipeline import configs

INGESTED = "ingested"
# Decodable pictures the ExampleGen leaves out yet `superres upscale` takes.
UPSCALABLE_REASONS = ("smaller than the minimum", "duplicate of")
NOT_UTF8_NAME = b"caf\xe9.png"  # Latin-1 'café.png', as old archives hold it

# Between the ExampleGen's minimum side and the smallest training tile of any
# profile: ingested, and resized up by Transform.
BELOW_PATCH_SIDE = image_decoding.MIN_SIDE + 4
assert BELOW_PATCH_SIDE < min(p.hr_size for p in configs.PROFILES.values())
assert BELOW_PATCH_SIDE < min(p.patch_size for p in configs.PROFILES.values())


def gray_alpha_png() -> bytes:
  alpha = np.full((image_samples.H, image_samples.W), 200, np.uint8)
  pixels = np.dstack([image_samples.picture()[..., 1], alpha])
  return image_samples.encode(Image.fromarray(pixels, "LA"), "PNG")


def truncated_png() -> bytes:
  data = image_samples.encode(Image.fromarray(image_samples.picture()), "PNG")
  return data[:len(data) // 2]


def html_page() -> bytes:
  return (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
          b"<body><h1>Not Found</h1><p>The requested image was not found.</p></body></html>\n")


def png_of(height: int, width: int, invert: bool = False) -> bytes:
  pixels = image_samples.picture(height, width)
  return image_samples.encode(Image.fromarray(255 - pixels if invert else pixels), "PNG")


def write_corpus(folder: str) -> Dict[str, str]:
  """Writes the corpus into `folder` (which must exist); returns the expected outcomes.

  Keys are paths relative to `folder` as the ExampleGen reports them
  (file_paths.display_path; folders end with '/'); values are INGESTED or words
  of the quarantine reason.
  """
  files = {
      "empty.jpg": (b"", "empty file (0 bytes)"),
      "truncated.jpg": (image_samples.truncated_jpeg(), "damaged or truncated"),
      "truncated.png": (truncated_png(), "damaged or truncated"),
      "notes.jpg": (b"shopping list: milk, eggs\n", "not an image format that can be read "
                    "(it holds text)"),
      "page.png": (html_page(), "not an image format that can be read (it holds an HTML page"),
      "deep16.png": (image_samples.deep_png(), INGESTED),
      "gray.png": (image_samples.gray_png(), INGESTED),
      "gray_alpha.png": (gray_alpha_png(), INGESTED),
      "rgba.png": (image_samples.rgba_png(), INGESTED),
      "palette.png": (image_samples.palette_png(), INGESTED),
      "cmyk.jpg": (image_samples.cmyk_jpeg(), INGESTED),
      "rotated.jpg": (image_samples.rotated_jpeg(), INGESTED),
      "animated.gif": (image_samples.animated_gif(), INGESTED),
      "one_pixel.png": (image_samples.tiny_png(), "1 x 1 pixels, smaller than the minimum of "
                        f"{image_decoding.MIN_SIDE} pixels per side"),
      "below_patch.png": (png_of(BELOW_PATCH_SIDE, BELOW_PATCH_SIDE), INGESTED),
      "bomb.png": (image_samples.png_declaring(40000, 40000), "over the limit of "
                   f"{image_decoding.MAX_PIXELS / 1e6:g} megapixels (a possible "
                   "decompression bomb)"),
      # Byte-identical copies: the first in path order is the one kept.
      "dup_a.jpg": (image_samples.rgb_jpeg(), INGESTED),
      "dup_b.jpg": (image_samples.rgb_jpeg(), "duplicate of dup_a.jpg"),
      "more/dup_c.jpg": (image_samples.rgb_jpeg(), "duplicate of dup_a.jpg"),
      "unreadable.png": (png_of(image_samples.H, image_samples.W + 2),
                         "cannot be read (permission denied)"),
  }
  expected = {}
  for name, (data, outcome) in files.items():
    os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
      f.write(data)
    expected[name] = outcome

  with open(os.path.join(os.fsencode(folder), NOT_UTF8_NAME), "wb") as f:
    f.write(png_of(image_samples.H + 2, image_samples.W))
  expected[file_paths.display_path(NOT_UTF8_NAME)] = INGESTED

  os.makedirs(os.path.join(folder, "loops"))
  os.symlink("..", os.path.join(folder, "loops", "back"))  # back to the corpus folder
  expected["loops/back/"] = "symbolic link loop (back -> .., a folder above it)"
  os.symlink("self.png", os.path.join(folder, "self.png"))
  expected["self.png"] = "symbolic link loop (self.png -> self.png)"
  os.symlink("missing.png", os.path.join(folder, "gone.png"))
  expected["gone.png"] = "symbolic link to missing.png, which does not exist"
  os.mkfifo(os.path.join(folder, "pipe.png"))  # opening it would wait for a writer
  expected["pipe.png"] = "not a file but a named pipe"

  unreadable = os.path.join(folder, "unreadable.png")
  os.chmod(unreadable, 0)
  if _readable(unreadable):  # root reads any file
    expected["unreadable.png"] = INGESTED
  return expected


def is_quarantined(outcome: str) -> bool:
  return outcome != INGESTED


def upscale_refuses(outcome: str) -> bool:
  """Whether `superres upscale` must refuse a file the ExampleGen gives `outcome`."""
  return is_quarantined(outcome) and not any(words in outcome for words in UPSCALABLE_REASONS)


def _readable(path: str) -> bool:
  try:
    with open(path, "rb"):
      return True
  except PermissionError:
    return False


def unprivileged(command: List[str]) -> Optional[List[str]]:
  """`command` run so that file permissions apply to it, or None if that cannot be.

  As is for an ordinary user; for root, through setpriv without the capabilities
  that let root read any file (the process stays root, so it can still reach
  root's own temporary folders).
  """
  if os.geteuid() != 0:
    return list(command)
  setpriv = shutil.which("setpriv")
  if setpriv is None:
    return None
  caps = "-dac_override,-dac_read_search"
  prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
  if subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode != 0:
    return None  # not allowed to drop them here (e.g. no CAP_SETPCAP)
  return [*prefix, *command]
