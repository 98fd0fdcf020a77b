"""Where training starts: the last blessed model's weights (warm start) or the shipped
model's (init pretrained) when the network and scale are the same, else from scratch."""
import numpy as np

from superres_tfx.components import keras_weights
from superres_tfx.components.models import registry

WARM = {"warm_start": True}


def _settings(architecture="espcn", width=8, depth=1, scale=2):
  return {"architecture": architecture, "width": width, "depth": depth, "scale": scale}


def _trained_espcn(tmp_path):
  model = registry.build_model("espcn", scale=2, width=8, depth=1)
  rng = np.random.default_rng(0)
  model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype)
                     for w in model.get_weights()])
  serving_dir = str(tmp_path / "Model" / "7" / "Format-Serving")
  keras_weights.save(model, _settings(), serving_dir)
  return model, serving_dir


def test_same_architecture_and_scale_loads_the_weights(tmp_path):
  base, serving_dir = _trained_espcn(tmp_path)
  fresh = registry.build_model("espcn", scale=2, width=8, depth=1)
  outcome = keras_weights.initialise(fresh, _settings(), WARM, serving_dir)
  assert outcome.startswith("started from the last blessed model")
  for loaded, expected in zip(fresh.get_weights(), base.get_weights()):
    np.testing.assert_array_equal(loaded, expected)


def test_other_architecture_or_scale_trains_from_scratch(tmp_path):
  _, serving_dir = _trained_espcn(tmp_path)
  fresh = registry.build_model("espcn", scale=3, width=8, depth=1)
  before = [w.copy() for w in fresh.get_weights()]
  assert "from scratch" in keras_weights.initialise(fresh, _settings(scale=3), WARM,
                                                    serving_dir)
  for after, original in zip(fresh.get_weights(), before):
    np.testing.assert_array_equal(after, original)


def test_no_blessed_model_trains_from_scratch():
  fresh = registry.build_model("espcn", scale=2, width=8, depth=1)
  assert (keras_weights.initialise(fresh, _settings(), WARM, None)
          == "no blessed model yet: trained from scratch")
  assert keras_weights.initialise(fresh, _settings(), {}) == "trained from scratch"
