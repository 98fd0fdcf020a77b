"""Name -> builder registry of the super-resolution networks.

Each *_arch.py module registers its builder with @register("name"); the Tuner
chooses among `architecture_names()` and the Trainer calls `build_model`.
"""
from typing import Callable, Dict

import keras
import numpy as np

# name -> builder(scale, width, depth, dropout) -> keras.Model
ARCHITECTURES: Dict[str, Callable[..., keras.Model]] = {}


def register(name: str):
  """Decorator adding a builder to ARCHITECTURES under `name`."""

  def decorator(builder):
    if name in ARCHITECTURES:
      raise ValueError(f"Architecture {name!r} is registered twice.")
    ARCHITECTURES[name] = builder
    return builder

  return decorator


def architecture_names() -> tuple:
  return tuple(sorted(ARCHITECTURES))


def build_model(architecture: str, scale: int, width: int = 64, depth: int = 2,
                dropout: float = 0.0) -> keras.Model:
  """A fully convolutional model: float32 [N, H, W, 3] in [0, 1] -> [N, s*H, s*W, 3].

  Every model predicts a residual on top of the bicubic upscaling of its input, and
  its last convolution starts at zero, so an untrained model is exactly bicubic.
  """
  if architecture not in ARCHITECTURES:
    raise ValueError(f"Unknown architecture {architecture!r}; known architectures: "
                     f"{', '.join(architecture_names())}.")
  if int(scale) != scale or scale < 2:
    raise ValueError(f"scale must be an integer >= 2, got {scale!r}.")
  if int(width) != width or width < 2:
    raise ValueError(f"width must be an integer >= 2, got {width!r}.")
  if int(depth) != depth or depth < 0:
    raise ValueError(f"depth must be an integer >= 0, got {depth!r}.")
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
  return ARCHITECTURES[architecture](scale=int(scale), width=int(width),
                                     depth=int(depth), dropout=float(dropout))


def multiply_adds_per_output_pixel(model: keras.Model, scale: int) -> float:
  """Multiply-adds of the model's convolutions per high-resolution output pixel.

  Measured by running the model on a small probe image, so layers working at low
  and at high resolution are weighted by the pixels they really see. The fixed
  bicubic upscaling is not counted.
  """
  convs = [layer for layer in model.layers
           if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
  if not convs:
    return 0.0
  # A convolution applies its whole kernel once per output pixel; a transposed
  # convolution once per input pixel.
  applied_at = [layer.input if isinstance(layer, keras.layers.Conv2DTranspose)
                else layer.output for layer in convs]
  probe_side = 12
  probe = keras.Model(model.inputs, applied_at)
  maps = probe(np.zeros((1, probe_side, probe_side, 3), np.float32), training=False)
  total = sum(int(np.prod(layer.kernel.shape)) * int(m.shape[1]) * int(m.shape[2])
              for layer, m in zip(convs, maps))
  return total / float((probe_side * scale) ** 2)
