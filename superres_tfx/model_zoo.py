"""The models shipped with superres-tfx (pretrained/): listing, installing, rebuilding.

`build` makes them with this pipeline: for each scale, `superres run` on the given
photos with the profile made for it (configs.SHIPPED_PROFILE), exported without the
self-ensemble so that a photo upscales in seconds (`superres upscale --self-ensemble`
adds it back). The pushed SavedModel and the Trainer's Keras weights are copied into
pretrained/superres-x<scale>/ (version 1), and a model card beside them records what
the model was trained on, how, and how well it does, with every file's sha256.
"""
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import Dict, Iterator, List, Optional

from superres_tfx import pretrained
from superres_tfx.core import errors
from superres_tfx.core import names

SHIPPED_VERSION = "1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ModelZooError(errors.SuperresError):
  """A shipped model cannot be built or installed."""


def describe() -> str:
  """One line per shipped model: name, network, size and scores."""
  from superres_tfx import report  # pylint: disable=import-outside-toplevel
  rows = []
  for scale in pretrained.scales():
    card = pretrained.card(scale) or {}
    network = card.get("network", {})
    holdout = card.get("scores", {}).get("holdout", {})
    rows.append([names.model_name(scale), f"x{scale}",
                 f"{network.get('architecture', '?')} w{network.get('width', '?')} "
                 f"d{network.get('depth', '?')}", f"{network.get('parameters', 0):,}",
                 f"{holdout.get('gain_db', float('nan')):+.2f}",
                 pretrained.version_dir(scale)])
  if not rows:
    return "No models are shipped in this checkout (pretrained/ is empty)."
  return report.table(rows, ["model", "scale", "network", "parameters",
                             "hold-out gain dB", "path"])


def install(serving_dir: str) -> List[str]:
  """Copies each shipped model into <serving_dir>/<name>/1/ when <name> has no complete
  version there. Returns one line per model, saying what happened."""
  lines = []
  for scale in pretrained.scales():
    name = names.model_name(scale)
    base = os.path.join(serving_dir, name)
    newest = names.newest_version(base) if os.path.isdir(base) else None
    if newest:
      lines.append(f"{name}: already serving {newest}; left as it is")
      continue
    target = os.path.join(base, SHIPPED_VERSION)
    if os.path.exists(target):
      raise ModelZooError(f"{target} exists but holds no complete model: remove it, then "
                          "install again")
    os.makedirs(base, exist_ok=True)
    # As the Pusher does: a hidden copy renamed into place, so a server watching the
    # folder never loads half a model.
    staging = tempfile.mkdtemp(prefix=".installing-", dir=base)
    shutil.copytree(pretrained.version_dir(scale), os.path.join(staging, SHIPPED_VERSION))
    os.rename(os.path.join(staging, SHIPPED_VERSION), target)
    os.rmdir(staging)
    lines.append(f"{name}: installed the shipped model as {target}")
  if not lines:
    lines.append("No models are shipped in this checkout (pretrained/ is empty).")
  return lines


def file_hashes(folder: str) -> Dict[str, str]:
  """Relative path -> sha256 of every file under folder except the model cards."""
  hashes = {}
  for directory, _, files in os.walk(folder):
    for file_name in files:
      path = os.path.join(directory, file_name)
      relative = os.path.relpath(path, folder)
      if relative in (pretrained.CARD_JSON, pretrained.CARD_MARKDOWN):
        continue
      with open(path, "rb") as f:
        hashes[relative] = hashlib.sha256(f.read()).hexdigest()
  return dict(sorted(hashes.items()))


def signatures_of(version_dir: str) -> Dict[str, Dict]:
  """Each signature's inputs and outputs as name -> "dtype shape" (None as -1)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  loaded = tf.saved_model.load(version_dir)
  described = {}
  for name, function in loaded.signatures.items():
    inputs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    spec = lambda t: f"{t.dtype.name} {[-1 if d is None else d for d in t.shape.as_list()]}"
    described[name] = {"inputs": {key: spec(value) for key, value in sorted(inputs.items())},
                       "outputs": {key: spec(value) for key, value in sorted(outputs.items())}}
  return dict(sorted(described.items()))


def _commit() -> str:
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return commit + ("+uncommitted changes" if dirty.strip() else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown (not a git checkout)"


def training_data(data_dir: str) -> Dict:
  """What the photos were: count and megapixels, and by source where the folder was staged
  by `superres data fetch` (its manifest: package, version, licence)."""
  from superres_tfx.components import image_listing  # pylint: disable=import-outside-toplevel
  from superres_tfx.components import splits  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  files = image_listing.list_image_files(data_dir)
  pixels = 0
  for name in files:
    try:
      with Image.open(os.path.join(data_dir, name)) as image:
        pixels += image.width * image.height
    except (OSError, ValueError):  # quarantined by the pipeline; not counted
      continue
  described = {"folder": os.path.abspath(data_dir), "photos": len(files),
               "megapixels": round(pixels / 1e6, 1), "photos_per_split": {}}
  for name in files:
    split = splits.split_of(name)
    described["photos_per_split"][split] = described["photos_per_split"].get(split, 0) + 1
  manifest_path = os.path.join(data_dir, "manifest.json")
  if os.path.isfile(manifest_path):
    with open(manifest_path, encoding="utf-8") as f:
      manifest = json.load(f)
    sources = {}
    for entry in manifest.get("photos", []):
      key = (entry.get("package") or entry.get("dataset"), entry.get("version") or
             entry.get("archive"), entry.get("licence"))
      source = sources.setdefault(key, {"source": key[0], "version": key[1],
                                        "licence": key[2], "photos": 0, "megapixels": 0.0})
      source["photos"] += 1
      source["megapixels"] += entry.get("width", 0) * entry.get("height", 0) / 1e6
    described["sources"] = [dict(source, megapixels=round(source["megapixels"], 1))
                            for source in sources.values()]
  return described


def _scores(version_dir: str, folder: str, files: Optional[List[str]] = None) -> Dict:
  """PSNR/SSIM of the model and of bicubic on photos of `folder` (all, or `files`)."""
  from superres_tfx import evaluation  # pylint: disable=import-outside-toplevel
  result = evaluation.evaluate_folder(version_dir, folder, files=files)
  return {key: (round(value, 4) if isinstance(value, float) else value)
          for key, value in result.items() if key not in ("model", "skipped")}


@dataclasses.dataclass
class _Trained:
  """A pushed model's Keras weights and where they came from, read back from ML Metadata."""
  keras_dir: str
  summary: Dict  # the Trainer's training.json
  run_id: str


def _trained(pipeline_root: str, model_name: str, version_dir: str) -> _Trained:
  from superres_tfx.pipeline import lineage  # pylint: disable=import-outside-toplevel
  entries = lineage.lineage(lineage.read_only_config(pipeline_root),
                            os.path.basename(version_dir), model_name)
  by_role = {entry.role: entry for entry in entries}
  model, model_run = by_role["Trainer.model"], by_role["Trainer.model_run"]
  summary = lineage.read_json(os.path.join(model_run.uri, names.TRAINING_SUMMARY_FILE))
  return _Trained(os.path.join(model.uri, names.KERAS_DIR), summary,
                  model.run_id)


def write_card(scale: int, trained: _Trained, profile: str, data_dir: str,
               train_steps: Optional[int] = None) -> Dict:
  """Scores the shipped model of `scale` and writes its model card (JSON and markdown)."""
  # pylint: disable=import-outside-toplevel
  from superres_tfx import bundled_data
  from superres_tfx.components import image_listing
  from superres_tfx.components import splits
  from superres_tfx.components.models import registry
  from superres_tfx.pipeline import configs
  version_dir = pretrained.version_dir(scale)
  settings = pretrained.settings(scale)
  holdout_dir = tempfile.mkdtemp(prefix="holdout-")
  bundled_data.stage_holdout_photos(holdout_dir)
  test_files = [name for name in image_listing.list_image_files(data_dir)
                if splits.split_of(name) == splits.TEST]
  card = {
      "name": names.model_name(scale), "scale": scale, "version": int(SHIPPED_VERSION),
      "network": {**{key: settings[key] for key in ("architecture", "width", "depth")},
                  "parameters": trained.summary.get("parameters"),
                  "multiply_adds_per_output_pixel": round(registry.multiply_adds_per_output_pixel(
                      registry.build_model(settings["architecture"], scale=scale,
                                           width=settings["width"], depth=settings["depth"]),
                      scale)),
                  "self_ensemble": False},
      "training": {"profile": profile,
                   "train_steps": train_steps or configs.PROFILES[profile].train_steps,
                   "hyperparameters": trained.summary.get("hyperparameters"),
                   "initialisation": trained.summary.get("initialisation"),
                   "epochs_run": len(trained.summary.get("history", {}).get("loss", [])),
                   "data": training_data(data_dir)},
      "scores": {
          "convention": "PSNR (dB) and SSIM on the Y channel (BT.601), scale pixels cropped "
                        "at each border, low-resolution input by bicubic downscaling in 8 bits",
          "holdout": _scores(version_dir, holdout_dir),
          "corpus_test_split": _scores(version_dir, data_dir, test_files) if test_files
                               else None},
      "made_by": {"command": f"superres models build --data {data_dir} --scales {scale} "
                             f"--profile {profile}"
                             + (f" --train-steps {train_steps}" if train_steps else ""),
                  "pipeline_run": trained.run_id, "commit": _commit(),
                  "date": datetime.date.today().isoformat()},
      "signatures": signatures_of(version_dir),
      "files": file_hashes(pretrained.base_dir(scale)),
  }
  shutil.rmtree(holdout_dir, ignore_errors=True)
  with open(os.path.join(pretrained.base_dir(scale), pretrained.CARD_JSON), "w",
            encoding="utf-8") as f:
    json.dump(card, f, indent=1)
    f.write("\n")
  with open(os.path.join(pretrained.base_dir(scale), pretrained.CARD_MARKDOWN), "w",
            encoding="utf-8") as f:
    f.write(card_markdown(card))
  return card


def _score_row(label: str, scores: Optional[Dict]) -> str:
  if not scores:
    return f"| {label} | - | - | - | - | - |"
  photos = f"{scores['images']} photo" + ("s" if scores["images"] != 1 else "")
  return (f"| {label} ({photos}) | {scores['psnr_model']:.2f} | "
          f"{scores['psnr_bicubic']:.2f} | **{scores['gain_db']:+.2f}** | "
          f"{scores['ssim_model']:.4f} | {scores['ssim_bicubic']:.4f} |")


def card_markdown(card: Dict) -> str:
  network, training, scores = card["network"], card["training"], card["scores"]
  data = training["data"]
  lines = [f"# {card['name']}: x{card['scale']} super-resolution, shipped with superres-tfx",
           "",
           f"{network['architecture'].upper()} (width {network['width']}, depth "
           f"{network['depth']}), {network['parameters']:,} parameters, "
           f"{network['multiply_adds_per_output_pixel']:,} multiply-adds per output pixel; "
           "exported without the self-ensemble (`superres upscale --self-ensemble` adds it: "
           "8x the time). Signatures as a pushed model's: `serving_default` (encoded images "
           "in, PNG out) and `upscale` (float32 in [0, 1]).",
           "", "## Scores", "", scores["convention"] + ".", "",
           "| photos | model PSNR | bicubic PSNR | gain | model SSIM | bicubic SSIM |",
           "|---|---|---|---|---|---|",
           _score_row("hold-out photos, never trained on", scores["holdout"]),
           _score_row("test split of the training folder", scores["corpus_test_split"]),
           "", "## Training", "",
           f"- Profile `{training['profile']}`, hyperparameters "
           f"`{json.dumps(training['hyperparameters'], sort_keys=True)}`, "
           f"{training.get('train_steps')} steps at most, {training['epochs_run']} epochs run "
           f"({training['initialisation']}).",
           f"- Data: {data['photos']} photos in `{data['folder']}` "
           f"({data['megapixels']} MP; per split "
           f"{json.dumps(data['photos_per_split'], sort_keys=True)}).", ""]
  if data.get("sources"):
    lines += ["| source | version | photos | megapixels | licence |",
              "|---|---|---|---|---|"]
    lines += [f"| {s['source']} | {s['version']} | {s['photos']} | {s['megapixels']} | "
              f"{s['licence']} |" for s in data["sources"]]
    lines.append("")
  made = card["made_by"]
  lines += ["## Made by", "", f"`{made['command']}`, pipeline run `{made['pipeline_run']}`, "
            f"commit `{made['commit']}`, {made['date']}.", "",
            "## Files", "", "| file | sha256 |", "|---|---|"]
  lines += [f"| `{path}` | `{digest}` |" for path, digest in card["files"].items()]
  return "\n".join(lines) + "\n"


def _replace_shipped(scale: int, trained: _Trained) -> None:
  """Writes the pushed model's network into pretrained/, in place of the shipped model of
  `scale`: exported again from a fresh copy of the network holding only its weights (the
  Trainer's SavedModel and weights file also carry the optimizer's state, 3x the size)."""
  # pylint: disable=import-outside-toplevel
  from superres_tfx.components import export
  from superres_tfx.components import keras_weights
  from superres_tfx.components.models import registry
  with open(os.path.join(trained.keras_dir, names.KERAS_SETTINGS_FILE), encoding="utf-8") as f:
    settings = json.load(f)
  model = registry.build_model(settings["architecture"], scale=scale, width=settings["width"],
                               depth=settings["depth"])
  model.load_weights(os.path.join(trained.keras_dir, names.KERAS_WEIGHTS_FILE))
  base = pretrained.base_dir(scale)
  staging = tempfile.mkdtemp(prefix=".building-", dir=pretrained.ROOT)
  version_dir = os.path.join(staging, SHIPPED_VERSION)
  export.export_serving_model(model, scale, version_dir, self_ensemble=False)
  keras_weights.save(model, settings, version_dir)
  if os.path.isdir(base):
    shutil.rmtree(base)
  os.rename(staging, base)
  os.chmod(base, 0o755)  # mkdtemp's 0700 would keep other users out of a shared checkout


def build(data_dir: str, scales: List[int], profile: str, work_dir: str,
          train_steps: Optional[int] = None) -> Iterator[str]:
  """Trains and ships a model per scale (`train_steps` overriding the profile's); yields
  what happened, a line at a time."""
  # pylint: disable=import-outside-toplevel
  from superres_tfx.pipeline import local_runner
  for scale in scales:
    options = local_runner.RunOptions(
        data_root=os.path.abspath(data_dir), pipeline_root=os.path.join(work_dir, "pipeline"),
        serving_dir=os.path.join(work_dir, "serving"), profile=profile, scale=scale,
        self_ensemble=False, train_steps=train_steps)
    yield f"x{scale}: training {options.model_name} with profile {profile} on {data_dir}"
    summary = local_runner.run(options)
    if not summary.pushed_dir:
      reason = (summary.metrics or {}).get("reason") or summary.infra_reason or "see the log"
      yield f"x{scale}: not shipped: the run pushed nothing ({reason}); {summary.log_path}"
      continue
    trained = _trained(options.pipeline_root, options.model_name, summary.pushed_dir)
    _replace_shipped(scale, trained)
    card = write_card(scale, trained, profile, data_dir, train_steps)
    yield (f"x{scale}: shipped {pretrained.base_dir(scale)}: hold-out photos "
           f"{card['scores']['holdout']['gain_db']:+.2f} dB over bicubic")
