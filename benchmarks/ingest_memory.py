"""Peak memory of checking decompression bombs as the ExampleGen does, and what
becomes of each file of the bad-input corpus (benchmarks/bad_corpus.py).

  python -m benchmarks.ingest_memory [--out ingest_memory.json] [--folder DIR ...]

Prints one JSON object. Every memory figure is the peak resident memory
(ru_maxrss, MB) of a fresh process started by this one, which imports nothing
but the standard library: Linux counts the starting process's peak in a child's
ru_maxrss, so a large parent would hide the children's figures.

  read_image_peak_rss_mb  components.image_decoding.read_image (what the
      ExampleGen's DoFn calls) on one file: a 512 x 512 photo, a PNG whose header
      declares 40000 x 40000 pixels, and a real zlib bomb (a valid 10000 x 10000
      PNG of ~100 KB, which Pillow alone only warns about); "imports_only" is the
      process without reading anything, "pillow_trusting_bomb" the same zlib
      bomb decoded by Pillow with no size check.
  executor_peak_rss_mb  the real ExampleGen executor (in-process Beam) on a folder
      holding the photo, and on one holding the photo and both bombs.
  folders  with --folder: the executor on each folder (e.g. the corpus of `superres
      data fetch`): its peak, and how many photos it ingested and quarantined.
  corpus  the executor on the whole bad-input corpus: how many files, ingested or
      quarantined, whether each ended as benchmarks/bad_corpus.py expects, and each
      file's outcome (its quarantine reason).

File permissions are enforced for the corpus (as root: without the capabilities
that let root read any file), so its unreadable file is unreadable.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from typing import List, Optional, Sequence

from benchmarks import output

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOMB_SIDE = 40000
REAL_BOMB_SIDE = 10000


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def _child(args: List[str], command_prefix: Optional[List[str]] = None) -> dict:
  """The JSON object a fresh `python -m benchmarks.ingest_memory ARGS` prints."""
  command = [*(command_prefix or []), sys.executable, "-m", "benchmarks.ingest_memory", *args]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          check=False)
  if result.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def _enforcing_prefix_in_this_process() -> dict:
  from benchmarks import bad_corpus  # pylint: disable=import-outside-toplevel
  return {"prefix": bad_corpus.unprivileged([])}


def _prepare_in_this_process(work_dir: str) -> dict:
  """Writes the photo, the two bombs (each in a folder of its own) and the corpus."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from skimage import data  # pylint: disable=import-outside-toplevel
  from benchmarks import bad_corpus  # pylint: disable=import-outside-toplevel
  from benchmarks import image_samples  # pylint: disable=import-outside-toplevel
  paths = {"photo_512": os.path.join(work_dir, "photo", "astronaut.jpg"),
           f"bomb_{BOMB_SIDE}": os.path.join(work_dir, "bombs", "declared.png"),
           f"bomb_{REAL_BOMB_SIDE}": os.path.join(work_dir, "bombs", "zlib_bomb.png")}
  for path in paths.values():
    os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(data.astronaut()).save(paths["photo_512"], quality=90)
  with open(paths[f"bomb_{BOMB_SIDE}"], "wb") as f:
    f.write(image_samples.png_declaring(BOMB_SIDE, BOMB_SIDE))
  Image.new("L", (REAL_BOMB_SIDE, REAL_BOMB_SIDE)).save(paths[f"bomb_{REAL_BOMB_SIDE}"],
                                                        optimize=True)
  photo_and_bombs = os.path.join(work_dir, "photo_and_bombs")
  os.makedirs(photo_and_bombs)
  for path in paths.values():
    os.symlink(path, os.path.join(photo_and_bombs, os.path.basename(path)))
  corpus = os.path.join(work_dir, "corpus")
  os.makedirs(corpus)
  expected = bad_corpus.write_corpus(corpus)
  return {"samples": paths, "photo": os.path.dirname(paths["photo_512"]),
          "photo_and_bombs": photo_and_bombs, "corpus": corpus, "expected": expected,
          "bytes": {name: os.path.getsize(path) for name, path in paths.items()}}


def _read_in_this_process(path: Optional[str], trusting: bool) -> dict:
  from superres_tfx.imaging import image_decoding  # pylint: disable=import-outside-toplevel
  outcome = "nothing read"
  if trusting:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    Image.MAX_IMAGE_PIXELS = None  # as a decoder without any size check
    with Image.open(path) as image:
      image.load()
      outcome = f"decoded {image.width} x {image.height} pixels"
  elif path:
    try:
      record = image_decoding.read_image(path)
      outcome = f"read {record.width} x {record.height} pixels"
    except image_decoding.UnusableImageError as error:
      outcome = f"refused: {error}"
  return {"peak_rss_mb": round(_peak_rss_mb(), 1), "outcome": outcome}


def _executor_in_this_process(input_base: str, output_dir: str) -> dict:
  from superres_tfx.components.image_example_gen import executor  # pylint: disable=import-outside-toplevel
  from benchmarks import ingestion  # pylint: disable=import-outside-toplevel
  examples = ingestion.run_executor(input_base, output_dir)
  with open(os.path.join(examples.uri, executor.QUARANTINE_FILE), encoding="utf-8") as f:
    report = json.load(f)
  names = [name for records in ingestion.read_splits(examples).values() for name in records]
  return {"peak_rss_mb": round(_peak_rss_mb(), 1), "ingested": sorted(names),
          "quarantined": report["quarantined"]}


def run(work_dir: str, folders: Sequence[str] = ()) -> dict:
  prefix = _child(["--enforcing-prefix"])["prefix"]
  # Written with permissions enforced, so the expected outcomes assume them too.
  prepared = _child(["--prepare", work_dir], prefix)
  reads = {"imports_only": _child(["--read"])}
  for name, path in prepared["samples"].items():
    reads[name] = _child(["--read", path])
  reads["pillow_trusting_bomb"] = _child(
      ["--read", prepared["samples"][f"bomb_{REAL_BOMB_SIDE}"], "--trusting"])
  executor_runs = {
      name: _child(["--executor", prepared[name], os.path.join(work_dir, f"examples_{name}")],
                   prefix)
      for name in ("photo", "photo_and_bombs", "corpus")}

  folder_runs = {folder: _child(["--executor", os.path.abspath(folder),
                                  os.path.join(work_dir, f"examples_folder_{i}")])
                 for i, folder in enumerate(folders)}
  corpus_run = executor_runs["corpus"]
  outcomes = {name: "ingested" for name in corpus_run["ingested"]}
  outcomes.update({q["path"]: q["reason"] for q in corpus_run["quarantined"]})
  expected = prepared["expected"]
  as_expected = {name: name in outcomes and (
      outcomes[name] == words if words == "ingested" else words in outcomes[name])
                 for name, words in expected.items()}
  return {
      "read_image_peak_rss_mb": {name: r["peak_rss_mb"] for name, r in reads.items()},
      "read_image_outcomes": {name: r["outcome"] for name, r in reads.items()},
      "file_bytes": prepared["bytes"],
      "bomb_pixels_would_take_mb": {  # 8 bits a channel, as Pillow decodes them
          f"bomb_{BOMB_SIDE}": round(BOMB_SIDE ** 2 * 3 / 2 ** 20),  # RGB
          f"bomb_{REAL_BOMB_SIDE}": round(REAL_BOMB_SIDE ** 2 / 2 ** 20)},  # gray
      "executor_peak_rss_mb": {name: r["peak_rss_mb"] for name, r in executor_runs.items()},
      "executor_on_photo_and_bombs": {
          "ingested": executor_runs["photo_and_bombs"]["ingested"],
          "quarantined": executor_runs["photo_and_bombs"]["quarantined"]},
      "folders": {folder: {"executor_peak_rss_mb": r["peak_rss_mb"],
                           "ingested": len(r["ingested"]), "quarantined": len(r["quarantined"])}
                  for folder, r in folder_runs.items()},
      "file_permissions_enforced": prefix is not None,
      "corpus": {
          "files": len(outcomes),
          "ingested": sum(o == "ingested" for o in outcomes.values()),
          "quarantined": sum(o != "ingested" for o in outcomes.values()),
          "all_as_expected": all(as_expected.values()) and len(outcomes) == len(expected),
          "not_as_expected": sorted(name for name, ok in as_expected.items() if not ok),
          "outcomes": dict(sorted(outcomes.items())),
      },
  }


def main(argv: Optional[Sequence[str]] = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", help="also write the JSON object to this file")
  parser.add_argument("--folder", action="append", default=[],
                      help="also run the executor on this folder of photos (repeatable)")
  # What the fresh processes run:
  parser.add_argument("--read", nargs="?", const="", help=argparse.SUPPRESS)
  parser.add_argument("--trusting", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--executor", nargs=2, help=argparse.SUPPRESS)
  parser.add_argument("--enforcing-prefix", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--prepare", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.enforcing_prefix:
    result = _enforcing_prefix_in_this_process()
  elif args.prepare:
    result = _prepare_in_this_process(args.prepare)
  elif args.read is not None:
    result = _read_in_this_process(args.read or None, args.trusting)
  elif args.executor:
    result = _executor_in_this_process(*args.executor)
  else:
    with tempfile.TemporaryDirectory(prefix="ingest_memory_") as work_dir:
      result = run(work_dir, args.folder)
    if args.out:
      output.write_text(json.dumps(result, indent=2), args.out)
  print(json.dumps(result))  # one line: the parent of a fresh process parses the last one
  return result


if __name__ == "__main__":
  main()
