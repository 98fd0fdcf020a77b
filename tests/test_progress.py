"""The console of `superres run`: component lines, the Tuner's and the Trainer's progress
as live bars on a terminal and a few plain lines otherwise, Keras' chatter in the log only."""
import io
import logging
import re

import keras
import keras_tuner
import numpy as np
import pytest

from superres_tfx.components import metrics
from superres_tfx.components import progress_callback
from superres_tfx.components import tuner
from superres_tfx.pipeline import progress

TRIALS, EPOCHS, STEPS_PER_EPOCH = 4, 10, 1000


def _record(message, level=logging.INFO, **fields):
  record = logging.LogRecord("test", level, __file__, 0, message, (), None)
  if fields:
    record.progress = fields
  return record


def _feed(printer, *records):
  for record in records:
    printer.handle(record)


def _component(printer, node, *progress_records):
  _feed(printer, _record(f"Component {node} is running."), *progress_records,
        _record(f"Component {node} is finished."))


def _tuner_records():
  records = [_record("", kind="begin", unit="trials", done=0, total=TRIALS)]
  best = None
  for trial in range(TRIALS):
    score = 30.0 + trial * (-1) ** trial
    best = score if best is None else max(best, score)
    records += [_record("", kind="trial_begin", unit="trials", done=trial, total=TRIALS),
                _record("", logging.DEBUG, kind="step", unit="steps", done=75, total=150,
                        nested=True),
                _record("", kind="epoch", unit="steps", done=150, total=150, nested=True,
                        val_psnr=score),
                _record("", kind="trial", unit="trials", done=trial + 1, total=TRIALS,
                        score=score, best=best)]
  return records + [_record("", kind="end", unit="trials", done=TRIALS, total=TRIALS)]


def _trainer_records(epochs=EPOCHS):
  total = EPOCHS * STEPS_PER_EPOCH
  records = [_record("", kind="begin", unit="steps", done=0, total=total, epochs=EPOCHS)]
  for epoch in range(1, epochs + 1):
    done = epoch * STEPS_PER_EPOCH
    records += [
        _record("", logging.DEBUG, kind="step", unit="steps", done=done - 500, total=total,
                left=60.0 * (total - done + 500) / STEPS_PER_EPOCH),
        _record("", kind="epoch", unit="steps", done=done, total=total, epoch=epoch,
                epochs=EPOCHS, val_psnr=30.0 + epoch / 10, left=60.0 * (total - done) / 1000)]
  return records + [_record("", kind="end", unit="steps", done=epochs * STEPS_PER_EPOCH,
                            total=total, best=30.0 + epochs / 10)]


def test_redirected_output_is_one_line_per_component_state_and_a_few_progress_lines():
  out = io.StringIO()
  printer = progress.ProgressPrinter(total=3, stream=out, live=False)
  _component(printer, "Tuner", *_tuner_records())
  _component(printer, "Trainer", *_trainer_records())
  _component(printer, "Pusher")
  lines = out.getvalue().splitlines()
  assert [line.split(" done in")[0] for line in lines] == [
      "      trial 1/4: val PSNR 30.00 dB (best 30.00 dB)",
      "      trial 2/4: val PSNR 29.00 dB (best 30.00 dB)",
      "      trial 3/4: val PSNR 32.00 dB (best 32.00 dB)",
      "      trial 4/4: val PSNR 27.00 dB (best 32.00 dB)",
      "[1/3] Tuner",
      "      training 10000 steps in 10 epochs",
      "      step 3000/10000 (30%): val PSNR 30.30 dB, 7 min left",
      "      step 5000/10000 (50%): val PSNR 30.50 dB, 5 min left",
      "      step 8000/10000 (80%): val PSNR 30.80 dB, 2 min left",
      "      step 10000/10000 (100%): val PSNR 31.00 dB",
      "[2/3] Trainer",
      "[3/3] Pusher"]
  assert "\x1b" not in out.getvalue()  # no cursor movement or colours in a file


def test_redirected_output_says_when_training_stopped_early():
  out = io.StringIO()
  printer = progress.ProgressPrinter(total=1, stream=out, live=False)
  _component(printer, "Trainer", *_trainer_records(epochs=6))
  assert "      stopped early at step 6000/10000: best val PSNR 30.60 dB" in (
      out.getvalue().splitlines())


def _without_escapes(text):
  return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def _live_printer(total):
  out = io.StringIO()
  return progress.ProgressPrinter(total=total, stream=out, live=True), out


def test_on_a_terminal_the_bar_shows_steps_val_psnr_and_time_left_then_one_line():
  printer, out = _live_printer(total=2)
  records = _trainer_records()
  _feed(printer, _record("Component Trainer is running."), *records[:8])
  printer._bar.refresh()  # pylint: disable=protected-access
  frame = out.getvalue()
  assert "[1/2] Trainer" in frame and "━" in frame
  assert "3500/10000 steps · val PSNR 30.30 dB · 6 min left" in frame
  _feed(printer, *records[8:], _record("Component Trainer is finished."))
  _component(printer, "Pusher")
  # The bar is erased; what stays is one line per component.
  final_lines = [line for line in out.getvalue().splitlines() if "done in" in line]
  assert final_lines[0].endswith(": 10000 steps, val PSNR 31.00 dB")
  assert "[2/2] Pusher done in 0 s" in final_lines[1]
  assert " ...\n" not in out.getvalue()


def test_on_a_terminal_the_tuner_bar_counts_trials_and_a_trial_s_steps():
  printer, out = _live_printer(total=1)
  records = _tuner_records()
  _feed(printer, _record("Component Tuner is running."), *records[:7])  # trial 2, mid-way
  printer._bar.refresh()  # pylint: disable=protected-access
  task = printer._bar.tasks[0]  # pylint: disable=protected-access
  assert task.completed == pytest.approx(1.5 / TRIALS)
  assert "trial 2/4 · best val PSNR 30.00 dB" in out.getvalue()
  _feed(printer, *records[7:], _record("Component Tuner is finished."))
  assert out.getvalue().rstrip().endswith(": 4 trials, best val PSNR 32.00 dB")


def test_a_run_stopped_mid_component_ends_the_bar_and_says_where():
  printer, out = _live_printer(total=3)
  _component(printer, "ImageExampleGen")
  _feed(printer, _record("Component Transform is running."))
  printer.close()
  assert printer._bar is None  # pylint: disable=protected-access
  last = _without_escapes(out.getvalue()).splitlines()[-1]
  assert last.startswith("[2/3] Transform stopped after ")


def test_cached_and_skipped_components_keep_their_lines():
  for live in (False, True):
    out = io.StringIO()
    printer = progress.ProgressPrinter(total=2, stream=out, live=live)
    _feed(printer, _record("Component Tuner is running."),
          _record("A cached execution 7 is used."), _record("Component Tuner is finished."),
          _record("Skipping component Trainer."))
    lines = [line for line in _without_escapes(out.getvalue()).splitlines()
             if "Tuner ..." not in line]
    assert lines[-2].startswith("[1/2] Tuner done in ") and lines[-2].endswith(" s (cached)")
    assert lines[-1] == "[2/2] Trainer skipped"
    assert printer.outcomes == {"Tuner": "cached", "Trainer": "skipped"}


def test_the_printer_listens_to_the_logger_the_components_report_to():
  assert progress.PROGRESS_LOGGER == progress_callback.LOGGER_NAME


@pytest.fixture
def restored_logging():
  """route_logs rewires the root logger: put it back after the test."""
  root = logging.getLogger()
  saved = list(root.handlers), root.level
  progress_logger = logging.getLogger(progress.PROGRESS_LOGGER)
  saved_level = progress_logger.level
  yield
  for handler in list(root.handlers):
    root.removeHandler(handler)
    if handler not in saved[0]:
      handler.close()
  for handler in saved[0]:
    root.addHandler(handler)
  root.setLevel(saved[1])
  progress_logger.setLevel(saved_level)


@pytest.mark.parametrize("live", [False, True])
def test_the_log_file_keeps_epochs_and_trials_but_not_step_ticks(tmp_path, live,
                                                                 restored_logging):
  del restored_logging
  printer = progress.ProgressPrinter(total=1, stream=io.StringIO(), live=live)
  log_path = tmp_path / "run.log"
  progress.route_logs(str(log_path), printer)
  assert logging.getLogger(progress.PROGRESS_LOGGER).isEnabledFor(logging.DEBUG) == live
  progress_callback.report("Trainer", "step", "step %d", 5, level=logging.DEBUG,
                           unit="steps", done=5, total=10)
  progress_callback.report("Trainer", "epoch", "epoch %d/%d", 1, 2, unit="steps", done=5,
                           total=10, val_psnr=30.0)
  text = log_path.read_text()
  assert "superres.progress: Trainer: epoch 1/2" in text
  assert "step 5" not in text


class _Records(logging.Handler):
  def __init__(self):
    super().__init__(level=logging.DEBUG)
    self.records = []

  def emit(self, record):
    self.records.append(record)


@pytest.fixture
def reported():
  """The `superres.progress` records, step ticks included (as the CLI asks for them)."""
  handler = _Records()
  logger = logging.getLogger(progress_callback.LOGGER_NAME)
  level = logger.level
  logger.addHandler(handler)
  logger.setLevel(logging.DEBUG)
  yield handler.records
  logger.removeHandler(handler)
  logger.setLevel(level)


def _tiny_model():
  keras.utils.set_random_seed(0)
  inputs = keras.Input((8, 8, 3))
  outputs = keras.layers.Conv2D(3, 3, padding="same")(inputs)
  model = keras.Model(inputs, outputs)
  model.compile(optimizer="adam", loss="mae", metrics=[metrics.psnr_metric])
  return model


def _images(count=16, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.random((count, 8, 8, 3), dtype=np.float32)
  return x, np.clip(x + 0.05, 0.0, 1.0)


def test_the_training_callback_reports_begin_epochs_with_val_psnr_and_end(reported, capsys):
  x, y = _images()
  _tiny_model().fit(x, y, validation_data=_images(4, seed=1), batch_size=4, epochs=3,
                    verbose=0, callbacks=[progress_callback.TrainingProgress("Trainer")])
  assert capsys.readouterr().out == ""
  kinds = [r.progress["kind"] for r in reported if r.levelno >= logging.INFO]
  assert kinds == ["begin", "epoch", "epoch", "epoch", "end"]
  begin, *epochs, end = [r for r in reported if r.levelno >= logging.INFO]
  assert begin.getMessage() == "Trainer: training 12 steps in 3 epochs"
  assert [e.progress["done"] for e in epochs] == [4, 8, 12]
  assert all(e.progress["total"] == 12 and isinstance(e.progress["val_psnr"], float)
             for e in epochs)
  assert "val_psnr" in epochs[0].getMessage() and "loss" in epochs[0].getMessage()
  assert end.progress["done"] == 12 and end.progress["best"] == max(
      e.progress["val_psnr"] for e in epochs)
  assert epochs[-1].progress["left"] == 0
  ticks = [r for r in reported if r.levelno == logging.DEBUG]
  assert ticks and ticks[0].progress == {
      "component": "Trainer", "kind": "step", "unit": "steps", "done": 1, "total": 12,
      "nested": False, "val_psnr": None, "left": None}


def test_step_ticks_cost_nothing_when_no_handler_asks_for_them(reported):
  logging.getLogger(progress_callback.LOGGER_NAME).setLevel(logging.INFO)
  x, y = _images()
  _tiny_model().fit(x, y, validation_data=_images(4, seed=1), batch_size=4, epochs=1,
                    verbose=0, callbacks=[progress_callback.TrainingProgress("Trainer")])
  assert [r.progress["kind"] for r in reported] == ["begin", "epoch", "end"]


def test_a_tuner_search_prints_nothing_and_reports_every_trial(reported, capsys, tmp_path):
  hp = keras_tuner.HyperParameters()
  hp.Choice("filters", [3, 6])

  def build(trial_hp):
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(trial_hp.get("filters"), 3, padding="same")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(hidden))
    model.compile(optimizer="adam", loss="mae", metrics=[metrics.psnr_metric])
    return model

  # The class tuner_fn uses for a grid search, with tuner_fn's fit settings.
  search = tuner._REPORTING_CLASSES["grid"](  # pylint: disable=protected-access
      build, objective=keras_tuner.Objective("val_psnr", direction="max"), max_trials=2,
      hyperparameters=hp, directory=str(tmp_path), project_name="t", overwrite=True)
  assert isinstance(search, tuner.TUNER_CLASSES["grid"])
  x, y = _images()
  search.search_space_summary()
  search.search(x, y, validation_data=_images(4, seed=1), batch_size=4, epochs=2,
                callbacks=[progress_callback.TrainingProgress("Tuner", nested=True)],
                verbose=0)
  search.results_summary()
  assert capsys.readouterr().out == ""
  trials = [r.progress for r in reported if r.progress["kind"] == "trial"]
  assert [(t["done"], t["total"]) for t in trials] == [(1, 2), (2, 2)]
  assert trials[-1]["best"] == max(t["score"] for t in trials)
  nested = [r.progress for r in reported if r.progress["unit"] == "steps"]
  assert nested and all(p["nested"] for p in nested)
  assert {p["kind"] for p in nested} == {"step", "epoch"}  # no begin/end inside a trial
