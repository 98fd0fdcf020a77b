"""Models trained by this pipeline and shipped with the code: one per scale.

  pretrained/superres-x2/1/              the SavedModel, as the Pusher writes one (both
                                         signatures of a pushed model)
  pretrained/superres-x2/keras/          its Keras weights and settings: fine-tuning
                                         (`superres run --init pretrained`) starts there
  pretrained/superres-x2/model_card.md   what it was trained on, how, and how well it
  pretrained/superres-x2/model_card.json does; the same as data, with file hashes

`superres models build` makes them (superres_tfx/model_zoo.py). Plain Python: finding
them imports no TensorFlow.
"""
import json
import os
from typing import Dict, List, Optional

from superres_tfx.core import names

ROOT = os.path.dirname(os.path.abspath(__file__))
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "model_card.md"


def base_dir(scale: int) -> str:
  """Where the shipped model of `scale` lives (TF Serving's layout: numbered versions)."""
  return os.path.join(ROOT, names.model_name(scale))


def version_dir(scale: int) -> Optional[str]:
  """The shipped SavedModel of `scale`; None when no model of that scale is shipped."""
  base = base_dir(scale)
  return names.newest_version(base) if os.path.isdir(base) else None


def keras_dir(scale: int) -> str:
  return os.path.join(base_dir(scale), names.KERAS_DIR)


def settings(scale: int) -> Optional[Dict]:
  """The shipped network's settings (architecture, width, depth, scale); None if none."""
  path = os.path.join(keras_dir(scale), names.KERAS_SETTINGS_FILE)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def card(scale: int) -> Optional[Dict]:
  path = os.path.join(base_dir(scale), CARD_JSON)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def scales() -> List[int]:
  """The scales a model is shipped for."""
  return [scale for scale in names.SCALES if version_dir(scale)]
