"""A visual quality report of a pushed model: `index.html` plus PNG figures.

The report shows, for a list of high-resolution photos degraded exactly as in
training (components.image_ops.degrade):
- side-by-side crops of the most textured region: the low-resolution input blown up
  by pixel repetition, bicubic, the model and the original, each with its PSNR;
- per-image PSNR/SSIM of the model and of bicubic, as superres_tfx.evaluation scores them
  (Y channel, BT.601, `scale` border pixels cropped), and their means;
- a checkerboard-artifact score (superres_tfx.checkerboard) of the model's outputs;
- the Tuner's trials, if given, with the best one highlighted.

Everything the page shows is also written to `report.json` beside it. Figures are
drawn with PIL; the page is plain HTML with inline CSS and relative links, so the
folder can be copied or served as is.
"""
import datetime
import html
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont
import tensorflow as tf

from superres_tfx.components import image_listing
from superres_tfx.imaging import image_ops
from superres_tfx.components import metrics
from superres_tfx import checkerboard
from superres_tfx import evaluation
from superres_tfx.inference import upscaling

INDEX_FILE = "index.html"
DATA_FILE = "report.json"
GAIN_CHART_FILE = "gain_chart.png"
CROP_PREFIX = "crop_"  # crop_<n>_<image>.png
TUNER_RESULTS_FILE = "tuner_results.json"  # written by TFX's Tuner in its tuner_results output

# Side-by-side crops: CROP_SIDE high-resolution pixels square (smaller if the image
# is), shown ZOOM times enlarged by pixel repetition so that artifacts stay visible.
MAX_CROP_IMAGES = 4
CROP_SIDE = 96
ZOOM = 2
PANEL_GAP = 8
LABEL_HEIGHT = 36
PANEL_NAMES = ("nearest (input)", "bicubic", "model", "original")

CHART_HEIGHT = 220
CHART_MARGIN = 40
CHART_SLOT_MAX = 80
CHART_SLOT_MIN = 24
CHART_WIDTH_TARGET = 720

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
GAIN_UP = (46, 125, 50)
GAIN_DOWN = (198, 40, 40)
AXIS = (120, 120, 120)


def load_tuner_trials(path: str) -> List[Dict]:
  """The trials TFX's Tuner wrote: `tuner_results.json`, or the folder holding it.

  Each trial is {"trial_id", "score", <hyperparameter>: value, ...}, as write_report
  takes them.
  """
  path = os.fspath(path)
  if tf.io.gfile.isdir(path):
    path = os.path.join(path, TUNER_RESULTS_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path}: no tuner results; pass the Tuner's tuner_results "
                            f"output folder or its {TUNER_RESULTS_FILE}")
  with tf.io.gfile.GFile(path) as f:
    trials = json.load(f)
  if not isinstance(trials, list):
    raise ValueError(f"{path}: expected a JSON list of trials, got {type(trials).__name__}")
  return trials


def write_report(out_dir: str, model_path: Union[str, upscaling.Upscaler],
                 images: Sequence[str], scale: Optional[int] = None,
                 tuner_trials: Optional[List[Dict]] = None,
                 run_info: Optional[Dict] = None) -> str:
  """Writes index.html, report.json and PNG figures into out_dir; returns index.html's path.

  Args:
    out_dir: created if missing; files of an earlier report there are overwritten.
    model_path: a pushed SavedModel version, a serving directory, or a loaded Upscaler.
    images: high-resolution image files; a folder stands for every image under it.
      Unreadable or too small images are listed as skipped.
    scale: if given, the model must upscale by this factor.
    tuner_trials: trials as TFX's Tuner writes them (see load_tuner_trials): dicts with
      "score" (validation PSNR, higher is better), optionally "trial_id", and the
      hyperparameter values either as the other keys or under "hyperparameters".
    run_info: free-form facts about the run (profile, steps, time...) shown at the top;
      a dict value is shown as a table, the Evaluator's metrics as PSNR/SSIM of the
      model and bicubic with the gain and the verdict.

  Raises:
    evaluation.EvaluationDataError: no image could be evaluated.
  """
  upscaler = (model_path if isinstance(model_path, upscaling.Upscaler)
              else upscaling.load_model(model_path))
  upscaling.check_scale(upscaler, scale)
  s = upscaler.scale
  out_dir = os.path.abspath(os.path.expanduser(os.fspath(out_dir)))
  os.makedirs(out_dir, exist_ok=True)
  for name in os.listdir(out_dir):  # crops of an earlier report may show other images
    if name.startswith(CROP_PREFIX) and name.endswith(".png"):
      os.remove(os.path.join(out_dir, name))

  paths = _expand_image_paths(images)
  per_image, skipped = [], []
  for path in paths:
    name = os.path.basename(path)
    try:
      hr = upscaling.read_image(path)
    except upscaling.ImageReadError as error:
      skipped.append({"file": path, "reason": str(error)})
      continue
    min_side = max(evaluation.min_image_side(s), checkerboard.min_checkerboard_side(s))
    if min(hr.shape[:2]) < min_side:
      skipped.append({"file": path, "reason": (
          f"{hr.shape[1]}x{hr.shape[0]} pixels is too small: at scale {s} each side "
          f"needs at least {min_side}")})
      continue
    entry = {"file": path, "name": name, **evaluation.evaluate_image(upscaler, hr)}
    entry["gain_db"] = entry["psnr_model"] - entry["psnr_bicubic"]
    figure = None
    if len(per_image) < MAX_CROP_IMAGES:
      figure = f"{CROP_PREFIX}{len(per_image) + 1}_{_slug(name)}.png"
    entry.update(_visuals(upscaler, hr, os.path.join(out_dir, figure) if figure else None))
    entry["figure"] = figure
    per_image.append(entry)

  if not per_image:
    reasons = "; ".join(item["reason"] for item in skipped[:5]) or "no image files given"
    raise evaluation.EvaluationDataError(
        f"none of the {len(paths)} images for the report could be evaluated: {reasons}")

  summary = {key: float(np.mean([item[key] for item in per_image]))
             for key in ("psnr_model", "psnr_bicubic", "ssim_model", "ssim_bicubic",
                         "checkerboard_model", "pattern_rms_model", "checkerboard_bicubic",
                         "checkerboard_hr")}
  summary["gain_db"] = summary["psnr_model"] - summary["psnr_bicubic"]
  _gain_chart([item["gain_db"] for item in per_image], os.path.join(out_dir, GAIN_CHART_FILE))
  trials = _normalise_trials(tuner_trials) if tuner_trials else []

  data = {"model": upscaler.version_dir, "scale": s, "images": len(per_image),
          "summary": summary, "per_image": per_image, "skipped": skipped,
          "tuner_trials": trials, "run_info": run_info or {},
          "figures": {"gain_chart": GAIN_CHART_FILE}}
  with open(os.path.join(out_dir, DATA_FILE), "w") as f:
    json.dump(data, f, indent=1, default=str)
  index_path = os.path.join(out_dir, INDEX_FILE)
  with open(index_path, "w", encoding="utf-8") as f:
    f.write(_html(data))
  return index_path


def _expand_image_paths(images: Sequence[str]) -> List[str]:
  if isinstance(images, (str, os.PathLike)):
    images = [images]
  paths = []
  for image in images:
    image = os.path.abspath(os.path.expanduser(os.fspath(image)))
    if os.path.isdir(image):
      paths.extend(os.path.join(image, name) for name in image_listing.list_image_files(image))
    else:
      paths.append(image)
  return paths


def _slug(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_-]+", "_", os.path.splitext(name)[0])[:40] or "image"


def _visuals(upscaler: upscaling.Upscaler, hr: np.ndarray, figure_path: Optional[str]) -> Dict:
  """Checkerboard scores of the whole image and, if figure_path, the side-by-side figure."""
  s = upscaler.scale
  hr = image_ops.crop_to_multiple(tf.convert_to_tensor(hr, tf.float32), s)
  lr = image_ops.degrade_8bit(hr, s)
  sr = upscaler.upscale(lr)
  bicubic = image_ops.upscale_bicubic(lr, s).numpy()
  hr, lr = hr.numpy(), lr.numpy()
  model_y = metrics.rgb_to_y(sr).numpy()
  result = {
      "checkerboard_model": checkerboard.checkerboard_score(model_y, s),
      "pattern_rms_model": checkerboard.periodic_pattern_rms(model_y, s),
      "checkerboard_bicubic": checkerboard.checkerboard_score(metrics.rgb_to_y(bicubic).numpy(), s),
      "checkerboard_hr": checkerboard.checkerboard_score(metrics.rgb_to_y(hr).numpy(), s),
  }
  if figure_path is None:
    return result
  side = min(CROP_SIDE, *hr.shape[:2])
  side -= side % s
  top, left = most_textured_region(hr, side, s)
  box = (slice(top, top + side), slice(left, left + side))
  lr_box = (slice(top // s, (top + side) // s), slice(left // s, (left + side) // s))
  nearest = np.repeat(np.repeat(lr[lr_box], s, axis=0), s, axis=1)
  panels = [nearest, bicubic[box], sr[box], hr[box]]
  reference = np.stack([hr[box]] * 3)
  crop_psnr = metrics.psnr_y(reference, np.stack(panels[:3]), crop=0).numpy()
  labels = [f"{name}\n{psnr:.2f} dB" for name, psnr in zip(PANEL_NAMES, crop_psnr)]
  labels.append(f"{PANEL_NAMES[3]}\nreference")
  _comparison_figure(panels, labels, figure_path)
  result["crop"] = {"top": int(top), "left": int(left), "side": int(side),
                    "psnr_nearest": float(crop_psnr[0]), "psnr_bicubic": float(crop_psnr[1]),
                    "psnr_model": float(crop_psnr[2])}
  return result


def most_textured_region(hr: np.ndarray, side: int, scale: int) -> Tuple[int, int]:
  """(top, left) of the side x side window of an RGB image with the most gradient energy.

  Corners are multiples of `scale`, so the window maps exactly onto low-resolution pixels.
  """
  y = metrics.rgb_to_y(tf.convert_to_tensor(hr, tf.float32)).numpy().astype(np.float64)
  energy = np.zeros_like(y)
  energy[:, 1:] += np.diff(y, axis=1) ** 2
  energy[1:, :] += np.diff(y, axis=0) ** 2
  integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
  step = max(scale, (side // 8) // scale * scale)
  best, best_energy = (0, 0), -1.0
  for top in range(0, y.shape[0] - side + 1, step):
    for left in range(0, y.shape[1] - side + 1, step):
      total = (integral[top + side, left + side] - integral[top, left + side]
               - integral[top + side, left] + integral[top, left])
      if total > best_energy:
        best, best_energy = (top, left), total
  return best


def _font(size: int = 13):
  try:
    return ImageFont.load_default(size=size)
  except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
    return ImageFont.load_default()


def _to_pil(image: np.ndarray) -> Image.Image:
  return Image.fromarray(image_ops.to_uint8(tf.convert_to_tensor(image, tf.float32)).numpy())


def _comparison_figure(panels: List[np.ndarray], labels: List[str], path: str) -> None:
  """Panels side by side, each ZOOM x enlarged by pixel repetition, labels above."""
  side = panels[0].shape[0] * ZOOM
  width = len(panels) * side + (len(panels) + 1) * PANEL_GAP
  height = LABEL_HEIGHT + side + 2 * PANEL_GAP
  figure = Image.new("RGB", (width, height), BACKGROUND)
  draw = ImageDraw.Draw(figure)
  font = _font()
  for i, (panel, label) in enumerate(zip(panels, labels)):
    x = PANEL_GAP + i * (side + PANEL_GAP)
    draw.multiline_text((x, PANEL_GAP // 2), label, fill=TEXT, font=font, spacing=2)
    figure.paste(_to_pil(panel).resize((side, side), Image.NEAREST),
                 (x, PANEL_GAP + LABEL_HEIGHT))
  figure.save(path, format="PNG")


def _gain_chart(gains: List[float], path: str) -> None:
  """Bars of PSNR gain over bicubic per image (numbered as in the table), zero line."""
  slot = int(np.clip(CHART_WIDTH_TARGET // max(len(gains), 1), CHART_SLOT_MIN, CHART_SLOT_MAX))
  width = 2 * CHART_MARGIN + slot * len(gains)
  chart = Image.new("RGB", (width, CHART_HEIGHT), BACKGROUND)
  draw = ImageDraw.Draw(chart)
  font = _font(11)
  # Room for the title and a value label above the highest bar, and for a value
  # label and the image number below the lowest one.
  top, bottom = 40, CHART_HEIGHT - 40
  high = max(0.0, *gains)
  low = min(0.0, *gains)
  span = (high - low) or 1.0
  to_y = lambda value: bottom - (value - low) / span * (bottom - top)
  zero = to_y(0.0)
  draw.text((4, 4), "PSNR gain over bicubic (dB, Y) per image", fill=TEXT, font=font)
  draw.line([(CHART_MARGIN, zero), (width - CHART_MARGIN, zero)], fill=AXIS)
  for i, gain in enumerate(gains):
    x0 = CHART_MARGIN + i * slot + slot // 6
    x1 = CHART_MARGIN + (i + 1) * slot - slot // 6
    y = to_y(gain)
    draw.rectangle([x0, min(y, zero), x1, max(y, zero)],
                   fill=GAIN_UP if gain >= 0 else GAIN_DOWN)
    draw.text((x0, CHART_HEIGHT - 16), str(i + 1), fill=TEXT, font=font)
    if slot >= 40:
      draw.text((x0, y - 14 if gain >= 0 else y + 2), f"{gain:+.2f}", fill=TEXT, font=font)
  chart.save(path, format="PNG")


_TRIAL_META = ("trial_id", "score", "status", "hyperparameters")


def _normalise_trials(trials: List[Dict]) -> List[Dict]:
  """-> [{"trial_id", "score", "hyperparameters": {...}, "best": bool}], in the given order."""
  rows = []
  for i, trial in enumerate(trials):
    if not isinstance(trial, dict):
      raise ValueError(f"tuner trial {i} is a {type(trial).__name__}; expected a dict with "
                       f"'score' and hyperparameter values")
    hps = trial.get("hyperparameters")
    if isinstance(hps, dict) and isinstance(hps.get("values"), dict):
      hps = hps["values"]  # Keras Tuner's own trial.json layout
    if not isinstance(hps, dict):
      hps = {k: v for k, v in trial.items() if k not in _TRIAL_META}
    score = trial.get("score")
    rows.append({"trial_id": str(trial.get("trial_id", i)),
                 "score": None if score is None else float(score),
                 "hyperparameters": hps, "best": False})
  scored = [row for row in rows if row["score"] is not None]
  if scored:  # the objective, validation PSNR, is maximised
    max(scored, key=lambda row: row["score"])["best"] = True
  return rows


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:24px auto;
 padding:0 16px;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:4px}
h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right} th{background:#f4f4f4}
td.l,th.l{text-align:left} tr.mean td{font-weight:bold;background:#fafafa}
tr.best td{background:#e8f5e9;font-weight:bold} .up{color:#2e7d32} .down{color:#c62828}
.note{color:#555;font-size:.9em} figure{margin:12px 0} figcaption{font-size:.9em;color:#444}
img{max-width:100%;image-rendering:pixelated}
"""


def _e(value) -> str:
  return html.escape(str(value))


def _signed(value: float, digits: int) -> str:
  css = "up" if value > 0 else "down" if value < 0 else ""
  return f'<span class="{css}">{value:+.{digits}f}</span>'


def _html(data: Dict) -> str:
  s = data["scale"]
  summary = data["summary"]
  out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>Super-resolution report x{s}</title><style>{_CSS}</style></head><body>",
         f"<h1>Super-resolution quality report, x{s}</h1>",
         f'<p class="note">Model {_e(data["model"])}<br>{data["images"]} images; written '
         f'{_e(datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))}; data in '
         f'<a href="{DATA_FILE}">{DATA_FILE}</a>.</p>']
  if data["run_info"]:
    out.append("<h2>Run</h2><table>")
    for key, value in data["run_info"].items():
      out.append(f'<tr><th class="l">{_e(key)}</th><td class="l">{_run_value(value)}</td></tr>')
    out.append("</table>")

  out.append("<h2>Scores</h2>")
  out.append(f'<p>Mean PSNR <b>{summary["psnr_model"]:.2f} dB</b> against '
             f'{summary["psnr_bicubic"]:.2f} dB for bicubic: '
             f'<b>{_signed(summary["gain_db"], 2)} dB</b>. PSNR and SSIM on the luma channel '
             f'(ITU-R BT.601, studio range), {s} border pixels cropped; each photo was '
             f'downscaled by {s} with antialiased bicubic and upscaled back.</p>')
  out.append('<table><tr><th>#</th><th class="l">image</th><th>PSNR model</th>'
             "<th>PSNR bicubic</th><th>gain dB</th><th>SSIM model</th><th>SSIM bicubic</th>"
             "<th>SSIM gain</th></tr>")
  for i, item in enumerate(data["per_image"]):
    out.append(_score_row(str(i + 1), item["name"], item))
  out.append(_score_row("", "mean", summary, css="mean"))
  out.append("</table>")
  out.append(f'<img src="{GAIN_CHART_FILE}" alt="PSNR gain over bicubic per image">')

  figures = [item for item in data["per_image"] if item.get("figure")]
  if figures:
    out.append("<h2>Side by side</h2>")
    out.append(f'<p class="note">The most textured {figures[0]["crop"]["side"]}x'
               f'{figures[0]["crop"]["side"]} region of each photo, shown {ZOOM}x enlarged. '
               "PSNR (Y) of the crop against the original.</p>")
    for item in figures:
      crop = item["crop"]
      out.append(f'<figure><img src="{_e(item["figure"])}" alt="{_e(item["name"])} crops">'
                 f'<figcaption>{_e(item["name"])}: region at x={crop["left"]}, '
                 f'y={crop["top"]}</figcaption></figure>')

  out.append("<h2>Checkerboard artifacts</h2>")
  out.append(f'<p class="note">Spectral power of the luma at the upsampling period '
             f"(frequencies k&middot;N/{s}) relative to neighbouring frequencies, in dB: "
             "about 0 or below when there is no periodic structure, 10 dB and more when a "
             f"period-{s} pattern (checkerboard) is there. The pattern's size, in grey "
             "levels of Y (0..255), tells whether it can be seen: below half a level it "
             "mostly vanishes when the output is rounded to 8 bits. Bicubic and the "
             "original are shown for reference.</p>")
  out.append('<table><tr><th>#</th><th class="l">image</th><th>model dB</th>'
             "<th>model pattern (grey levels)</th><th>bicubic dB</th><th>original dB</th></tr>")
  for i, item in enumerate(data["per_image"]):
    out.append(_checkerboard_row(str(i + 1), item["name"], item))
  out.append(_checkerboard_row("", "mean", summary, css="mean"))
  out.append("</table>")

  if data["tuner_trials"]:
    out.append(_trials_table(data["tuner_trials"]))
  if data["skipped"]:
    out.append("<h2>Skipped images</h2><ul>")
    out.extend(f"<li>{_e(item['file'])}: {_e(item['reason'])}</li>" for item in data["skipped"])
    out.append("</ul>")
  out.append("</body></html>\n")
  return "\n".join(out)


def _run_value(value) -> str:
  """One run_info value as HTML: the Evaluator's figures and other dicts as small tables."""
  if isinstance(value, dict):
    if all(isinstance(value.get(key), (int, float)) for key in _EVAL_SCORE_KEYS):
      return _eval_table(value)
    return _facts_table(value)
  if isinstance(value, list):
    return _e(json.dumps(value, default=str))
  return _e(value)


# The Evaluator's metrics.json (components/evaluator): the scores, then the verdict.
_EVAL_SCORE_KEYS = ("psnr_model", "psnr_bicubic", "ssim_model", "ssim_bicubic")
_EVAL_SHOWN_KEYS = _EVAL_SCORE_KEYS + ("gain_db", "images", "blessed", "reason",
                                        "baseline_psnr_model")


def _eval_table(scores: Dict) -> str:
  """PSNR/SSIM of the model and bicubic with the gain, then images and the verdict."""
  out = ['<table><tr><th class="l"></th><th>PSNR dB</th><th>SSIM</th></tr>']
  for name in ("model", "bicubic"):
    out.append(f'<tr><td class="l">{name}</td><td>{scores[f"psnr_{name}"]:.2f}</td>'
               f'<td>{scores[f"ssim_{name}"]:.4f}</td></tr>')
  out.append('<tr class="mean"><td class="l">gain</td>'
             f'<td>{_signed(scores["psnr_model"] - scores["psnr_bicubic"], 2)}</td>'
             f'<td>{_signed(scores["ssim_model"] - scores["ssim_bicubic"], 4)}</td></tr>')
  out.append("</table>")
  facts = {}
  if "images" in scores:
    facts["images"] = scores["images"]
  if "blessed" in scores:
    verdict = "yes" if scores["blessed"] else "no"
    facts["blessed"] = f"{verdict} ({scores['reason']})" if scores.get("reason") else verdict
  if scores.get("baseline_psnr_model") is not None:
    facts["baseline model PSNR dB"] = f"{scores['baseline_psnr_model']:.2f}"
  facts.update((key, value) for key, value in scores.items()
               if key not in _EVAL_SHOWN_KEYS and value is not None)
  if facts:
    out.append(_facts_table(facts))
  return "".join(out)


def _facts_table(facts: Dict) -> str:
  rows = "".join(f'<tr><th class="l">{_e(key)}</th><td class="l">{_run_value(value)}</td></tr>'
                 for key, value in facts.items())
  return f"<table>{rows}</table>"


def _score_row(number: str, name: str, scores: Dict, css: str = "") -> str:
  return (f'<tr class="{css}"><td>{number}</td><td class="l">{_e(name)}</td>'
          f'<td>{scores["psnr_model"]:.2f}</td><td>{scores["psnr_bicubic"]:.2f}</td>'
          f'<td>{_signed(scores["psnr_model"] - scores["psnr_bicubic"], 2)}</td>'
          f'<td>{scores["ssim_model"]:.4f}</td><td>{scores["ssim_bicubic"]:.4f}</td>'
          f'<td>{_signed(scores["ssim_model"] - scores["ssim_bicubic"], 4)}</td></tr>')


def _checkerboard_row(number: str, name: str, scores: Dict, css: str = "") -> str:
  return (f'<tr class="{css}"><td>{number}</td><td class="l">{_e(name)}</td>'
          f'<td>{scores["checkerboard_model"]:+.1f}</td>'
          f'<td>{scores["pattern_rms_model"]:.2f}</td>'
          f'<td>{scores["checkerboard_bicubic"]:+.1f}</td>'
          f'<td>{scores["checkerboard_hr"]:+.1f}</td></tr>')


def _trials_table(trials: List[Dict]) -> str:
  names = []
  for trial in trials:
    names.extend(name for name in trial["hyperparameters"] if name not in names)
  out = ["<h2>Hyperparameter search</h2>",
         '<p class="note">Validation PSNR (dB) of each Tuner trial; the best is highlighted.</p>',
         "<table><tr><th>trial</th>" + "".join(f"<th>{_e(n)}</th>" for n in names) +
         "<th>score</th></tr>"]
  for trial in trials:
    cells = "".join(f"<td>{_e(trial['hyperparameters'].get(n, ''))}</td>" for n in names)
    score = "&mdash;" if trial["score"] is None else f"{trial['score']:.3f}"
    out.append(f'<tr class="{"best" if trial["best"] else ""}"><td>{_e(trial["trial_id"])}</td>'
               f"{cells}<td>{score}</td></tr>")
  out.append("</table>")
  return "\n".join(out)
