"""The whole DAG at growing data sizes: time, memory and output of every component.

  python -m benchmarks.scaling --data ~/.superres/data/corpus [--sizes 15 55 110]
      [--profile default] [--scale 2] [--work DIR] [--out scaling.json]
      [--chart scaling.png] [--beam-arg=--direct_running_mode=multi_processing ...]

For each size N, N photos of the folder (an even spread over its sorted photos, so the
subsets nest and mix their sources) are linked into a folder of their own, and
`superres run` runs on them in a fresh process with a fresh pipeline root (nothing
cached). Per component, from ML Metadata (each execution's start and end): wall
seconds, the process's peak resident memory while it ran (sampled every 0.2 s; the DAG
runs in one process, so memory an earlier component still holds counts too: an upper
bound for the component itself), and the bytes its outputs hold. Also: examples per
split, Transform's tiles per split, and seconds per input megapixel, whose ratio
between sizes says whether a component's cost grows linearly with the pixels. The
model server the InfraValidator starts is a process of its own, not counted here.

The chart plots each component's seconds against the input megapixels.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

from benchmarks import output
from benchmarks import process_memory

SAMPLE_SECONDS = 0.2
DEFAULT_SIZES = (15, 55, 110)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def photo_subset(folder: str, count: int) -> List[str]:
  """`count` photos of `folder`, evenly spread over its sorted photos."""
  photos = sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_SUFFIXES))
  if count >= len(photos):
    return photos
  return [photos[i * len(photos) // count] for i in range(count)]


def _megapixels(paths: List[str]) -> float:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  total = 0
  for path in paths:
    with Image.open(path) as image:
      total += image.width * image.height
  return total / 1e6


class _Sampler(threading.Thread):
  """(time, resident MB of this process, of it and its child processes) every
  SAMPLE_SECONDS: Beam's multi-processing runner works in child processes."""

  def __init__(self):
    super().__init__(daemon=True)
    self.samples, self._done = [], threading.Event()

  def run(self):
    while not self._done.is_set():
      self.samples.append((time.time(), process_memory.status_mb(),
                           process_memory.tree_mb(os.getpid())))
      self._done.wait(SAMPLE_SECONDS)

  def stop(self):
    self._done.set()
    self.join()


def _folder_bytes(uri: str) -> int:
  return sum(os.path.getsize(os.path.join(directory, name))
             for directory, _, names in os.walk(uri) for name in names)


def _split_counts(uri: str, count_tiles: bool) -> Dict[str, int]:
  """Records (or, for Transform's output, tiles) per Split-* folder of an artifact."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from superres_tfx.components import features  # pylint: disable=import-outside-toplevel
  counts = {}
  for name in sorted(os.listdir(uri)):
    if not name.startswith("Split-"):
      continue
    files = tf.io.gfile.glob(os.path.join(uri, name, "*"))
    count = 0
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
      if count_tiles:
        example = tf.train.Example.FromString(record)
        count += len(example.features.feature[features.HR].bytes_list.value)
      else:
        count += 1
    counts[name[len("Split-"):]] = count
  return counts


def _components(pipeline_root: str, samples) -> Dict[str, Dict]:
  """Per node: seconds, peak RSS while it ran, output bytes (and counts of examples)."""
  # pylint: disable=import-outside-toplevel
  from ml_metadata import metadata_store
  from ml_metadata.proto import metadata_store_pb2
  from superres_tfx.pipeline import pipeline as pipeline_lib
  from superres_tfx.pipeline import run_summary
  store = metadata_store.MetadataStore(pipeline_lib.metadata_config(pipeline_root))
  result = {}
  for execution in sorted(store.get_executions(), key=lambda e: e.id):
    node = run_summary.node_id(store, execution)
    start = execution.create_time_since_epoch / 1000.0
    end = execution.last_update_time_since_epoch / 1000.0
    during = [(rss, tree) for moment, rss, tree in samples
              if start - SAMPLE_SECONDS <= moment <= end + SAMPLE_SECONDS]
    outputs = [event.artifact_id for event in store.get_events_by_execution_ids([execution.id])
               if event.type == metadata_store_pb2.Event.OUTPUT]
    figures = {"seconds": round(end - start, 1),
               "peak_rss_mb": round(max(rss for rss, _ in during)) if during else None,
               # With the processes it started (Beam workers, the serving check's server).
               "peak_tree_mb": round(max(tree for _, tree in during)) if during else None,
               "output_bytes": 0}
    for artifact in store.get_artifacts_by_id(outputs):
      if not os.path.isdir(artifact.uri):
        continue
      figures["output_bytes"] += _folder_bytes(artifact.uri)
      type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
      if type_name == "Examples":
        key = "tiles_per_split" if node == "Transform" else "examples_per_split"
        figures[key] = _split_counts(artifact.uri, count_tiles=node == "Transform")
    result[node] = figures
  return result


def _child(args) -> None:
  """Runs the DAG in this process while sampling its memory; prints the figures."""
  sampler = _Sampler()
  sampler.start()
  started = time.time()
  command = ["run", "--profile", args.profile, "--scale", str(args.scale), "--data", args.data,
             "--pipeline-root", args.pipeline_root, "--serving-dir", args.serving_dir,
             *[f"--beam-arg={arg}" for arg in args.beam_args]]
  from superres_tfx import cli  # pylint: disable=import-outside-toplevel
  code = cli.main(command)
  wall = time.time() - started
  sampler.stop()
  print(json.dumps({"exit_code": code, "wall_seconds": round(wall, 1),
                    "peak_rss_mb": round(process_memory.status_mb(field="VmHWM")),
                    "components": _components(args.pipeline_root, sampler.samples)}))


def measure(data: str, size: int, profile: str, scale: int, work: str,
            beam_args: List[str] = ()) -> Dict:
  names = photo_subset(data, size)
  subset = os.path.join(work, f"photos-{len(names)}")
  os.makedirs(subset, exist_ok=True)
  for name in names:
    link = os.path.join(subset, name)
    if not os.path.lexists(link):
      os.symlink(os.path.abspath(os.path.join(data, name)), link)
  paths = [os.path.join(subset, name) for name in names]
  root = tempfile.mkdtemp(prefix=f"run-{len(names)}-", dir=work)
  log = os.path.join(root, "console.txt")
  command = [sys.executable, "-m", "benchmarks.scaling", "--child", "--data", subset,
             "--profile", profile, "--scale", str(scale),
             "--pipeline-root", os.path.join(root, "pipeline"),
             "--serving-dir", os.path.join(root, "serving"),
             *[f"--beam-arg={arg}" for arg in beam_args]]
  env = dict(os.environ, SUPERRES_HOME=root, TF_CPP_MIN_LOG_LEVEL="2")
  with open(log, "w") as console:
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=console, text=True, check=False)
  lines = result.stdout.strip().splitlines()
  with open(log, "a") as console:
    console.write("\n".join(lines[:-1]))
  figures = json.loads(lines[-1]) if lines else {"exit_code": result.returncode}
  megapixels = _megapixels(paths)
  for component in figures.get("components", {}).values():
    component["seconds_per_megapixel"] = round(component["seconds"] / megapixels, 3)
  return {"photos": len(names), "megapixels": round(megapixels, 1),
          "input_bytes": sum(os.path.getsize(path) for path in paths), "console": log,
          **figures}


def growth(sizes: List[Dict]) -> Dict[str, float]:
  """Per component: its seconds per megapixel at the largest size over that at the one
  before (1.0 = linear in pixels, below = better than linear)."""
  if len(sizes) < 2:
    return {}
  before, last = sizes[-2].get("components", {}), sizes[-1].get("components", {})
  return {node: round(last[node]["seconds_per_megapixel"] /
                      before[node]["seconds_per_megapixel"], 2)
          for node in last if node in before and before[node]["seconds_per_megapixel"] > 0}


def chart(sizes: List[Dict], path: str, min_share: float = 0.02) -> None:
  """Seconds of each component (those above min_share of a run) against megapixels."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  width, height, margin = 900, 520, 70
  nodes = [node for node in sizes[-1].get("components", {})
           if any(size["components"].get(node, {}).get("seconds", 0)
                  >= min_share * size["wall_seconds"] for size in sizes)]
  colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
             (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
  top_x = max(size["megapixels"] for size in sizes) * 1.05
  top_y = max(size["components"][node]["seconds"] for size in sizes for node in nodes
              if node in size["components"]) * 1.1
  image = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(image)
  to_xy = lambda mp, s: (margin + mp / top_x * (width - 2 * margin - 150),
                         height - margin - s / top_y * (height - 2 * margin))
  draw.line([to_xy(0, 0), to_xy(top_x, 0)], fill="black")
  draw.line([to_xy(0, 0), to_xy(0, top_y)], fill="black")
  draw.text((margin, 20), f"Seconds per component against input megapixels "
            f"(profile {sizes[-1].get('profile', '')})", fill="black")
  for size in sizes:
    x, y = to_xy(size["megapixels"], 0)
    draw.line([(x, y), (x, y + 5)], fill="black")
    draw.text((x - 30, y + 8), f"{size['megapixels']:.0f} MP", fill="black")
    draw.text((x - 30, y + 22), f"{size['photos']} photos", fill="black")
  step = next(s for s in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200) if top_y / s <= 8)
  for tick in range(0, int(top_y) + 1, step):
    x, y = to_xy(0, tick)
    draw.line([(x - 5, y), (x, y)], fill="black")
    draw.text((8, y - 6), f"{tick} s", fill="black")
  for index, node in enumerate(nodes):
    colour = colours[index % len(colours)]
    points = [to_xy(size["megapixels"], size["components"][node]["seconds"])
              for size in sizes if node in size["components"]]
    draw.line(points, fill=colour, width=3)
    for x, y in points:
      draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
    draw.rectangle([width - 200, 60 + 20 * index, width - 188, 72 + 20 * index], fill=colour)
    draw.text((width - 182, 60 + 20 * index), node, fill="black")
  image.save(path)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", required=True, help="a folder of photos, e.g. the corpus")
  parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
  parser.add_argument("--profile", default="default")
  parser.add_argument("--scale", type=int, default=2)
  parser.add_argument("--work", help="where subsets and runs go (default: a temporary folder)")
  parser.add_argument("--out", help="also write the JSON here")
  parser.add_argument("--chart", help="write the PNG chart here")
  parser.add_argument("--beam-arg", action="append", default=[], dest="beam_args",
                      help="a Beam option for every run, repeatable (as `superres run`)")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--pipeline-root", help=argparse.SUPPRESS)
  parser.add_argument("--serving-dir", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    _child(args)
    return
  work = args.work or tempfile.mkdtemp(prefix="superres-scaling-")
  os.makedirs(work, exist_ok=True)
  sizes = []
  for size in args.sizes:
    sizes.append({"profile": args.profile, **measure(args.data, size, args.profile, args.scale,
                                                     work, args.beam_args)})
    print(f"{sizes[-1]['photos']} photos: {sizes[-1].get('wall_seconds')} s, exit code "
          f"{sizes[-1].get('exit_code')}", file=sys.stderr, flush=True)
  sizes.sort(key=lambda size: size["photos"])
  result = {"profile": args.profile, "scale": args.scale, "data": os.path.abspath(args.data),
            "beam_args": args.beam_args,
            "sizes": sizes, "growth_largest_two": growth(sizes)}
  if args.chart and all("components" in size for size in sizes):
    chart(sizes, args.chart)
    result["chart"] = args.chart
  output.emit(result, args.out)


if __name__ == "__main__":
  main()
