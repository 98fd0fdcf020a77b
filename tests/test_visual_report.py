"""The visual report and the quality benchmark's scoring, with tiny real exported models.

Two models are exported: an untrained ESPCN (its last convolution starts at zero, so
it returns exactly bicubic) and the same network with random output weights.
"""
import json
import os
import re

import numpy as np
from PIL import Image
import pytest
from skimage import data
import tensorflow as tf

from benchmarks import quality
from superres_tfx.components import export
from superres_tfx.imaging import image_ops
from superres_tfx.components.models import registry
from superres_tfx import evaluation
from superres_tfx.inference import upscaling
from superres_tfx import visual_report

SCALE = 2
TRIALS = [
    {"trial_id": "00", "score": 29.1, "architecture": "espcn", "width": 32, "learning_rate": 1e-3},
    {"trial_id": "01", "score": 30.4, "architecture": "fsrcnn", "width": 64, "learning_rate": 3e-4},
    {"trial_id": "02", "score": 28.7, "architecture": "espcn", "width": 64, "learning_rate": 3e-4},
]
# The Evaluator's metrics.json, as the CLI passes it in run_info.
EVAL_METRICS = {"scale": SCALE, "images": 40, "psnr_model": 31.234, "ssim_model": 0.9012,
                "psnr_bicubic": 30.5, "ssim_bicubic": 0.8876, "gain_db": 0.734, "blessed": True,
                "reason": "gain over bicubic +0.73 dB (required +0.10 dB)",
                "baseline_psnr_model": None}


def _export(path, randomise_output: bool):
  model = registry.build_model("espcn", SCALE, width=8, depth=1)
  if randomise_output:
    layer = model.get_layer("subpixel")
    rng = np.random.default_rng(0)
    layer.kernel.assign(rng.normal(0.0, 0.05, layer.kernel.shape).astype(np.float32))
  export.export_serving_model(model, SCALE, str(path))
  return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  root = tmp_path_factory.mktemp("models")
  bicubic = _export(root / "bicubic", randomise_output=False)
  _export(root / "random", randomise_output=True)
  return {"bicubic": str(root / "bicubic"), "random": str(root / "random"),
          "parameters": bicubic.count_params(),
          "multiply_adds": registry.multiply_adds_per_output_pixel(bicubic, SCALE)}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """Two small photos (128x128 and 96x122) and one file that is not an image."""
  folder = tmp_path_factory.mktemp("photos")
  Image.fromarray(data.astronaut()[::4, ::4]).save(folder / "astronaut.png")
  Image.fromarray(data.chelsea()[60:156, 150:272]).save(folder / "chelsea.png")
  (folder / "broken.png").write_bytes(b"not a png")
  return [str(folder / "astronaut.png"), str(folder / "chelsea.png"), str(folder / "broken.png")]


@pytest.fixture(scope="module")
def random_report(models, photos, tmp_path_factory):
  out = tmp_path_factory.mktemp("report_random")
  index = visual_report.write_report(
      str(out), models["random"], photos, scale=SCALE, tuner_trials=TRIALS,
      run_info={"profile": "smoke", "eval split": EVAL_METRICS})
  with open(out / visual_report.DATA_FILE) as f:
    return index, json.load(f)


def test_index_references_existing_files(random_report):
  index, _ = random_report
  page = open(index, encoding="utf-8").read()
  links = re.findall(r'(?:src|href)="([^"]+)"', page)
  assert links, "the page links no figure"
  for link in links:
    assert not os.path.isabs(link) and "://" not in link
    assert os.path.isfile(os.path.join(os.path.dirname(index), link)), link
  pngs = {name for name in os.listdir(os.path.dirname(index)) if name.endswith(".png")}
  assert pngs <= set(links)  # no figure is written without being shown


def test_figures_are_pngs_of_the_expected_size_and_content(random_report, photos):
  index, report = random_report
  out_dir = os.path.dirname(index)
  with Image.open(os.path.join(out_dir, visual_report.GAIN_CHART_FILE)) as chart:
    assert chart.format == "PNG" and chart.height == visual_report.CHART_HEIGHT
  figures = [item for item in report["per_image"] if item["figure"]]
  assert len(figures) == 2
  for item, path in zip(figures, photos):
    hr = image_ops.crop_to_multiple(tf.constant(upscaling.read_image(path)), SCALE)
    lr = image_ops.degrade(hr, SCALE).numpy()
    hr = hr.numpy()
    crop = item["crop"]
    side = crop["side"]
    assert side == min(visual_report.CROP_SIDE, *hr.shape[:2]) // SCALE * SCALE
    assert crop["top"] % SCALE == 0 and crop["left"] % SCALE == 0
    panel = side * visual_report.ZOOM
    gap = visual_report.PANEL_GAP
    with Image.open(os.path.join(out_dir, item["figure"])) as figure:
      assert figure.format == "PNG"
      assert figure.size == (4 * panel + 5 * gap, visual_report.LABEL_HEIGHT + panel + 2 * gap)
      pixels = np.asarray(figure.convert("RGB"))
    top = gap + visual_report.LABEL_HEIGHT
    def shown(i, pixels=pixels, top=top, panel=panel, gap=gap):
      # Panel i, reduced back to one pixel per image pixel.
      left = gap + i * (panel + gap)
      return pixels[top:top + panel:visual_report.ZOOM, left:left + panel:visual_report.ZOOM]
    rows = slice(crop["top"], crop["top"] + side)
    cols = slice(crop["left"], crop["left"] + side)
    lr_crop = lr[crop["top"] // SCALE:(crop["top"] + side) // SCALE,
                 crop["left"] // SCALE:(crop["left"] + side) // SCALE]
    nearest = np.repeat(np.repeat(lr_crop, SCALE, 0), SCALE, 1)
    np.testing.assert_array_equal(shown(0), image_ops.to_uint8(nearest).numpy())
    np.testing.assert_array_equal(shown(3), image_ops.to_uint8(hr[rows, cols]).numpy())


def test_table_values_are_those_of_evaluate_image(random_report, models, photos):
  index, report = random_report
  upscaler = upscaling.load_model(models["random"])
  page = open(index, encoding="utf-8").read()
  assert [item["name"] for item in report["per_image"]] == ["astronaut.png", "chelsea.png"]
  for item, path in zip(report["per_image"], photos):
    expected = evaluation.evaluate_image(upscaler, upscaling.read_image(path))
    for key, value in expected.items():
      assert item[key] == pytest.approx(value, abs=1e-9), key
    assert f"<td>{expected['psnr_model']:.2f}</td><td>{expected['psnr_bicubic']:.2f}</td>" in page
  assert report["summary"]["psnr_model"] == pytest.approx(
      np.mean([item["psnr_model"] for item in report["per_image"]]))
  assert report["summary"]["gain_db"] != 0.0  # random output weights change the picture
  for item in report["per_image"]:  # random sub-pixel filters leave a period-2 pattern
    assert item["checkerboard_model"] > item["checkerboard_bicubic"] + 6.0
  assert [item["file"] for item in report["skipped"]] == [photos[2]]
  assert "broken.png" in page


def test_tuner_trials_with_the_best_highlighted(random_report):
  index, report = random_report
  page = open(index, encoding="utf-8").read()
  best_rows = re.findall(r'<tr class="best"><td>([^<]+)</td>', page)
  assert best_rows == ["01"]  # the highest validation PSNR
  assert [t["trial_id"] for t in report["tuner_trials"] if t["best"]] == ["01"]
  assert "learning_rate" in page and "smoke" in page


def test_eval_figures_are_a_table(random_report):
  index, report = random_report
  page = open(index, encoding="utf-8").read()
  assert report["run_info"]["eval split"] == EVAL_METRICS  # the data keeps them as given
  assert '"psnr_model"' not in page  # no raw JSON
  assert ('<tr><td class="l">model</td><td>31.23</td><td>0.9012</td></tr>'
          '<tr><td class="l">bicubic</td><td>30.50</td><td>0.8876</td></tr>') in page
  assert '<span class="up">+0.73</span>' in page and '<span class="up">+0.0136</span>' in page
  assert '<th class="l">images</th><td class="l">40</td>' in page
  assert "yes (gain over bicubic +0.73 dB (required +0.10 dB))" in page
  assert "baseline" not in page  # no baseline yet


def test_model_equal_to_bicubic_scores_as_bicubic(models, photos, tmp_path):
  folder = os.path.dirname(photos[0])  # a folder stands for the images in it
  visual_report.write_report(str(tmp_path), models["bicubic"], [folder])
  with open(tmp_path / visual_report.DATA_FILE) as f:
    report = json.load(f)
  assert sorted(item["name"] for item in report["per_image"]) == ["astronaut.png", "chelsea.png"]
  for item in report["per_image"]:
    assert item["psnr_model"] == item["psnr_bicubic"]
    assert item["ssim_model"] == item["ssim_bicubic"]
    assert item["checkerboard_model"] == pytest.approx(item["checkerboard_bicubic"])
  assert report["summary"]["gain_db"] == 0.0


def test_report_rejects_a_scale_the_model_was_not_trained_for(models, photos, tmp_path):
  with pytest.raises(ValueError, match="upscales by 2, not 3"):
    visual_report.write_report(str(tmp_path), models["bicubic"], photos, scale=3)


def test_report_with_no_usable_image_says_so(models, photos, tmp_path):
  with pytest.raises(evaluation.EvaluationDataError, match="broken.png"):
    visual_report.write_report(str(tmp_path), models["bicubic"], photos[2:])


def test_benchmark_scores_a_model_with_every_key(models, photos):
  folder = os.path.dirname(photos[0])
  result = quality.score_model(models["random"], folder)
  expected_keys = {
      "model", "scale", "images", "psnr_model", "psnr_bicubic", "ssim_model", "ssim_bicubic",
      "gain_db", "ssim_gain", "parameters", "architecture", "width", "depth",
      "architecture_source", "multiply_adds_per_output_pixel", "output_megapixels",
      "ms_per_output_megapixel", "cpu_ms_per_output_megapixel", "checkerboard_model",
      "checkerboard_bicubic", "per_image", "skipped"}
  assert expected_keys <= set(result)
  assert result["scale"] == SCALE and result["images"] == 2
  assert result["parameters"] == models["parameters"]
  assert (result["architecture"], result["width"], result["depth"]) == ("espcn", 8, 1)
  assert result["multiply_adds_per_output_pixel"] == pytest.approx(models["multiply_adds"])
  assert result["output_megapixels"] == pytest.approx((128 * 128 + 96 * 122) / 1e6)
  assert result["ms_per_output_megapixel"] > 0
  folder_scores = evaluation.evaluate_folder(models["random"], folder)
  assert result["gain_db"] == pytest.approx(folder_scores["gain_db"])
  json.dumps(result)  # the benchmark writes it as JSON


def test_benchmark_rejects_an_architecture_the_weights_do_not_fit(models):
  shapes = quality.saved_model_weight_shapes(models["bicubic"])
  with pytest.raises(ValueError, match="does not have the model's"):
    quality.identify_architecture(shapes, SCALE, "fsrcnn", width=8, depth=1)
