"""Broken, hostile and awkward input files through the real ExampleGen and `superres upscale`.

The corpus (benchmarks/bad_corpus.py: empty, truncated, mislabelled, 16-bit, palette,
CMYK, EXIF-rotated, animated, tiny, a decompression bomb, symbolic link loops, a
named pipe, an unreadable file, a name that is not UTF-8, duplicates) is
generated into a temporary folder. The ExampleGen executor runs on it
in-process; `superres upscale` runs as a subprocess on every file it must
refuse, with a real (untrained) exported model.
"""
import concurrent.futures
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from benchmarks import bad_corpus
from benchmarks import image_samples as samples
from benchmarks import ingestion
from superres_tfx.components import export
from superres_tfx.components import features
from superres_tfx.imaging import image_decoding
from superres_tfx.imaging import image_ops
from superres_tfx.components.image_example_gen import executor
from superres_tfx.pipeline import configs
from superres_tfx.pipeline import run_summary
from superres_tfx import cli
from superres_tfx.inference import upscaling
from superres_tfx import report
from tests import cli_runner

SCALE = 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("corpus"))
  return folder, bad_corpus.write_corpus(folder)


@pytest.fixture(scope="module")
def ingested(corpus, tmp_path_factory):
  """One real executor run over the corpus: (Examples artifact, quarantine report, examples)."""
  input_base, _ = corpus
  examples = ingestion.run_executor(input_base, str(tmp_path_factory.mktemp("examples")))
  with open(os.path.join(examples.uri, executor.QUARANTINE_FILE), encoding="utf-8") as f:
    quarantine = json.load(f)
  records = {}
  for records_of_split in ingestion.read_splits(examples).values():
    for name, example in records_of_split.items():
      assert name not in records, f"{name} is in two splits"
      records[name] = example
  return examples, quarantine, records


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """An untrained network exported as the Trainer exports: <dir>/superres-x2/1."""
  network = keras.Sequential([keras.Input((None, None, 3)),
                              keras.layers.Conv2DTranspose(3, SCALE, strides=SCALE)])
  root = tmp_path_factory.mktemp("serving")
  export.export_serving_model(network, SCALE, str(root / configs.MODEL_NAME / "1"))
  return str(root)


def value(example, key):
  return ingestion.value(example, key)


class TestExampleGen:

  def test_every_file_is_ingested_or_quarantined_as_expected(self, corpus, ingested):
    _, expected = corpus
    examples, quarantine, records = ingested
    reasons = {q["path"]: q["reason"] for q in quarantine["quarantined"]}
    assert len(reasons) == len(quarantine["quarantined"])  # each path listed once
    assert not set(records) & set(reasons)
    assert sorted([*records, *reasons]) == sorted(expected)  # nothing lost, nothing extra
    for name, outcome in expected.items():
      if bad_corpus.is_quarantined(outcome):
        assert outcome in reasons[name], name
      else:
        assert name in records, (name, reasons.get(name))
    ingested_count = sum(not bad_corpus.is_quarantined(o) for o in expected.values())
    assert quarantine["ingested"] == len(records) == ingested_count
    assert examples.get_int_custom_property(executor.INGESTED_PROPERTY) == ingested_count
    assert examples.get_int_custom_property(executor.QUARANTINED_PROPERTY) == len(reasons)
    assert quarantine["ignored"] == []

  def test_run_summary_lists_every_quarantined_path(self, corpus, ingested):
    _, expected = corpus
    examples, _, _ = ingested
    summary = run_summary.RunSummary(run_id="run", outcomes={"ImageExampleGen": "complete"})
    run_summary._collect(summary, "Examples", examples.mlmd_artifact)  # pylint: disable=protected-access
    lines = report.format_summary(summary).splitlines()
    quarantined = {name: outcome for name, outcome in expected.items()
                   if bad_corpus.is_quarantined(outcome)}
    assert f"Images ingested: {len(expected) - len(quarantined)}; quarantined: " \
           f"{len(quarantined)}" in lines
    for name, words in quarantined.items():
      line = [text for text in lines if text.startswith(f"  quarantined {name}: ")]
      assert len(line) == 1 and words in line[0], name

  def test_pictures_are_converted_and_upright(self, corpus, ingested):
    input_base, _ = corpus
    _, _, records = ingested

    def pixels(name):
      example = records[name]
      decoded = tf.io.decode_image(value(example, features.IMAGE), expand_animations=False)
      assert decoded.shape == (value(example, features.HEIGHT), value(example, features.WIDTH),
                               value(example, features.CHANNELS)), name
      # What Transform makes of it: RGB whatever the file held.
      assert image_ops.decode_rgb(value(example, features.IMAGE)).shape == (
          *decoded.shape[:2], 3), name
      return decoded.numpy()

    def original_rgb(name):
      with Image.open(os.path.join(input_base, name)) as image:
        return np.asarray(image.convert("RGB"))

    h, w = samples.H, samples.W
    deep = pixels("deep16.png")  # 16 bits scaled to 8, not clipped
    assert deep.shape == (h, w, 1)
    assert np.abs(deep[..., 0] - np.round(samples.deep_pixels() / 257.0)).max() <= 1
    np.testing.assert_array_equal(pixels("palette.png"), original_rgb("palette.png"))
    rotated = pixels("rotated.jpg")  # EXIF orientation 6: shown turned clockwise
    assert rotated.shape == (w, h, 3)
    assert samples.mean_abs_diff(rotated, np.rot90(samples.picture(), k=-1)) < 3
    gray_alpha = pixels("gray_alpha.png")
    assert gray_alpha.shape == (h, w, 2) and (gray_alpha[..., 1] == 200).all()
    np.testing.assert_array_equal(gray_alpha[..., 0], samples.picture()[..., 1])
    assert pixels("rgba.png").shape == (h, w, 4)
    assert samples.mean_abs_diff(pixels("cmyk.jpg"),
                                 np.asarray(samples.cmyk_source().convert("RGB"))) < 3
    np.testing.assert_array_equal(pixels("animated.gif")[..., :3], original_rgb("animated.gif"))
    side = bad_corpus.BELOW_PATCH_SIDE
    assert pixels("below_patch.png").shape == (side, side, 3)
    if "unreadable.png" in records:  # root reads any file
      assert pixels("unreadable.png").shape == (h, w + 2, 3)

  def test_a_name_that_is_not_utf8_is_ingested_and_shown_readably(self, corpus, ingested):
    input_base, _ = corpus
    _, _, records = ingested
    shown = "caf\\xe9.png"
    assert value(records[shown], features.FILENAME) == shown.encode("ascii")
    with open(os.path.join(os.fsencode(input_base), bad_corpus.NOT_UTF8_NAME), "rb") as f:
      original = np.asarray(Image.open(io.BytesIO(f.read())))
    decoded = tf.io.decode_image(value(records[shown], features.IMAGE)).numpy()
    np.testing.assert_array_equal(decoded, original)

  def test_duplicates_keep_the_first_path_only(self, ingested):
    _, quarantine, records = ingested
    assert "dup_a.jpg" in records
    duplicates = sorted(q["path"] for q in quarantine["quarantined"]
                        if q["reason"].startswith("duplicate of dup_a.jpg"))
    assert duplicates == ["dup_b.jpg", "more/dup_c.jpg"]


def _one_line_error(result: subprocess.CompletedProcess, path_shown: str) -> str:
  assert result.returncode != 0, (path_shown, result.stdout)
  assert not result.stdout, path_shown
  assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
  assert result.stderr.startswith(f"superres: error: input image {path_shown}: "), result.stderr
  return result.stderr


class TestUpscale:

  def bad_files(self, corpus):
    input_base, expected = corpus
    bad = {os.path.join(input_base, name.rstrip("/")): outcome
           for name, outcome in expected.items() if bad_corpus.upscale_refuses(outcome)}
    assert len(bad) >= 10
    return bad

  def test_each_bad_file_fails_in_one_line(self, corpus, model_dir, tmp_path, capsys):
    """Through cli.main in this process: every kind of bad file."""
    for path, words in self.bad_files(corpus).items():
      out = str(tmp_path / "out.png")
      status = cli.main(["upscale", path, out, "--model", model_dir])
      captured = capsys.readouterr()
      line = _one_line_error(subprocess.CompletedProcess([], status, captured.out, captured.err),
                             path)
      # The ExampleGen's reason (a folder is refused as a folder, not as a link loop).
      assert ("not a file but a folder" if os.path.isdir(path) else words) in line, line
      assert not os.path.exists(out)

  def test_the_command_fails_in_one_line_without_loading_tensorflow(self, corpus, model_dir,
                                                                     tmp_path):
    """As a real command, on one file of each kind of failure."""
    bad = self.bad_files(corpus)
    paths = [path for path in bad if os.path.basename(path) in (
        "empty.jpg", "truncated.png", "page.png", "bomb.png", "self.png")]

    def upscale(path):
      return cli_runner.superres_cli(
          ["upscale", path, str(tmp_path / "out.png"), "--model", model_dir], tmp_path)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(paths)) as pool:
      results = dict(zip(paths, pool.map(upscale, paths)))
    for path, result in results.items():
      # One line on stderr: TensorFlow's start-up messages would add more.
      assert bad[path] in _one_line_error(result, path)
      assert result.returncode == cli.USAGE_ERROR

  def test_a_file_without_read_permission_fails_in_one_line(self, corpus, model_dir, tmp_path):
    input_base, _ = corpus
    path = os.path.join(input_base, "unreadable.png")
    command = bad_corpus.unprivileged([sys.executable, "-m", "superres_tfx.cli", "upscale", path,
                                       str(tmp_path / "out.png"), "--model", model_dir])
    if command is None:
      pytest.skip("cannot run without root's power to read any file here")
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300,
                            env=dict(os.environ, SUPERRES_HOME=str(tmp_path),
                                     TF_CPP_MIN_LOG_LEVEL="2"))
    assert "cannot be read (permission denied)" in _one_line_error(result, path)

  def test_awkward_good_files_are_upscaled(self, corpus, model_dir, tmp_path):
    """What the ExampleGen leaves out for training but is a readable picture upscales."""
    input_base, expected = corpus
    model = upscaling.load_model(model_dir)
    names = [os.path.join(os.fsencode(input_base), bad_corpus.NOT_UTF8_NAME),
             *(os.path.join(input_base, name) for name in
               ("one_pixel.png", "deep16.png", "rotated.jpg", "dup_b.jpg"))]
    assert not bad_corpus.upscale_refuses(expected["one_pixel.png"])
    for path in names:
      upright = image_decoding.load_image(image_decoding.read_file(path))
      out = str(tmp_path / "out.png")
      assert upscaling.upscale_file(path, out, model) == (
          SCALE * upright.height, SCALE * upright.width), path
      with Image.open(out) as result:
        assert result.size == (SCALE * upright.width, SCALE * upright.height)

  def test_a_name_that_is_not_utf8_upscales_and_prints_readably(self, corpus, model_dir,
                                                                tmp_path, capsys):
    input_base, _ = corpus
    path = os.fsdecode(os.path.join(os.fsencode(input_base), bad_corpus.NOT_UTF8_NAME))
    out = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9_x2.png"))
    assert cli.main(["upscale", path, out, "--model", model_dir]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(
        f"Wrote {tmp_path}/caf\\xe9_x2.png ({SCALE * samples.W}x{SCALE * (samples.H + 2)}) "
        f"with {model_dir}") and printed.count("\n") == 1
    with Image.open(out) as result:
      assert result.size == (SCALE * samples.W, SCALE * (samples.H + 2))
