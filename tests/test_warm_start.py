"""Warm start: a new model starts from the last blessed model's weights when it has
the same architecture and scale, and from scratch otherwise."""
import numpy as np

from superres_tfx.components import trainer
from superres_tfx.components.models import registry


def _settings(architecture="espcn", width=8, depth=1, scale=2):
  return {"architecture": architecture, "width": width, "depth": depth, "scale": scale}


def _trained_espcn(tmp_path):
  model = registry.build_model("espcn", scale=2, width=8, depth=1)
  rng = np.random.default_rng(0)
  model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype)
                     for w in model.get_weights()])
  serving_dir = str(tmp_path / "Model" / "7" / "Format-Serving")
  trainer.save_keras_weights(model, _settings(), serving_dir)
  return model, serving_dir


def test_same_architecture_and_scale_loads_the_weights(tmp_path):
  base, serving_dir = _trained_espcn(tmp_path)
  fresh = registry.build_model("espcn", scale=2, width=8, depth=1)
  outcome = trainer.warm_start(fresh, serving_dir, _settings())
  assert outcome.startswith("warm-started")
  for loaded, expected in zip(fresh.get_weights(), base.get_weights()):
    np.testing.assert_array_equal(loaded, expected)


def test_other_architecture_or_scale_trains_from_scratch(tmp_path):
  _, serving_dir = _trained_espcn(tmp_path)
  fresh = registry.build_model("espcn", scale=3, width=8, depth=1)
  before = [w.copy() for w in fresh.get_weights()]
  assert "from scratch" in trainer.warm_start(fresh, serving_dir, _settings(scale=3))
  for after, original in zip(fresh.get_weights(), before):
    np.testing.assert_array_equal(after, original)


def test_no_blessed_model_trains_from_scratch():
  fresh = registry.build_model("espcn", scale=2, width=8, depth=1)
  assert (trainer.warm_start(fresh, None, _settings())
          == "no blessed model yet: trained from scratch")
