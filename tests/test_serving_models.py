"""One server, several models: --serving-dir and TF Serving's --model-config-file.

A serving directory holds superres-x2 and superres-x3 (tiny ESPCNs with random weights,
so answers tell models and versions apart); one server answers both by name over REST
and gRPC, and serves a model folder added while it runs. A second server reads a model
config file whose version policies it must honour. Bad configurations are refused
before any model loads, which is checked in-process.
"""
import argparse
import os
import shutil
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from superres_tfx.core import names
from superres_tfx.pipeline import configs
from superres_tfx.serving import __main__ as server_main
from superres_tfx.serving import client
from superres_tfx.serving import launcher
from superres_tfx.serving import model_config
from superres_tfx.serving import versions
from tests import serving_harness
from tests.serving_harness import Server, local, pixels_of, png, random_image, wait_for

if serving_harness.serving_environment_missing():
  pytest.skip(serving_harness.MISSING_ENVIRONMENT, allow_module_level=True)

X2, X3 = configs.model_name_for(2), configs.model_name_for(3)
NEW = configs.model_name_for(2, "smoke")  # a model pushed while the server runs
POLL_SECONDS = 0.2
CHANGE_TIMEOUT = 60
AVAILABLE = "AVAILABLE"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """{scale: {version: (path, Upscaler)}}: x2 versions 1-4, x3 versions 1-2."""
  root = tmp_path_factory.mktemp("exported")
  return {2: serving_harness.export_models(str(root / "x2"), (1, 2, 3, 4), scale=2),
          3: serving_harness.export_models(str(root / "x3"), (1, 2), scale=3)}


def _push(models, version: int, base: str) -> None:
  shutil.copytree(models[version][0], os.path.join(base, str(version)))


@pytest.fixture(scope="module")
def dir_server(exported, tmp_path_factory):
  serving_dir = tmp_path_factory.mktemp("serving")
  _push(exported[2], 1, str(serving_dir / X2))
  _push(exported[3], 1, str(serving_dir / X3))
  server = Server(None, str(tmp_path_factory.mktemp("log") / "server.log"), [
      "--serving-dir", str(serving_dir), "--poll-seconds", str(POLL_SECONDS)], name=X2)
  server.serving_dir = str(serving_dir)
  with serving_harness.started(server) as running:
    running.wait_ready(name=X3)
    yield running


CONFIG = """
# TF Serving's model config; a relative base_path is taken from this file's folder.
model_config_list {
  config {
    name: "%s"
    base_path: "models/x2"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
  }
  config {
    name: "%s"
    base_path: "%s"
    model_version_policy { specific { versions: 1 } }
  }
}
"""


@pytest.fixture(scope="module")
def config_server(exported, tmp_path_factory):
  folder = tmp_path_factory.mktemp("config")
  x2_base, x3_base = folder / "models" / "x2", tmp_path_factory.mktemp("elsewhere") / "x3"
  for version in (1, 2, 3):
    _push(exported[2], version, str(x2_base))
  for version in (1, 2):
    _push(exported[3], version, str(x3_base))
  (folder / "models.config").write_text(CONFIG % (X2, X3, x3_base))
  server = Server(None, str(tmp_path_factory.mktemp("log") / "server.log"), [
      "--model-config-file", str(folder / "models.config"), "--poll-seconds",
      str(POLL_SECONDS), "--model-config-file-poll-seconds", str(POLL_SECONDS)], name=X2)
  server.config_file, server.x2_base, server.x3_base = folder / "models.config", x2_base, x3_base
  with serving_harness.started(server) as running:
    running.wait_ready(name=X3)
    yield running


def _states(server, name):
  return {version: status["state"] for version, status in server.served_versions(name).items()}


def _grpc_predict(server, name, image, version=None):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  if version is not None:
    request.model_spec.version.value = version
  request.inputs["images"].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
  with grpc.insecure_channel(server.target) as channel:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 30)


def _grpc_status(server, name):
  with grpc.insecure_channel(server.target) as channel:
    return model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": name}), 10)


def _rest(server, name, image, version=None) -> np.ndarray:
  with client.RestClient(server.url, name, version=version) as rest:
    return pixels_of(rest.predict([image])[0])


# --- one server for the models of a serving directory ---------------------------------

def test_one_server_answers_each_model_by_name(dir_server, exported):
  image = png(random_image(20, 24, seed=1))
  for name, scale in ((X2, 2), (X3, 3)):
    expected = local(exported[scale], 1, image)
    assert expected.shape[:2] == (20 * scale, 24 * scale)
    np.testing.assert_array_equal(_rest(dir_server, name, image), expected)
    np.testing.assert_array_equal(pixels_of(client.upscale_grpc(dir_server.target, name, image)),
                                  expected)
    answer = _grpc_predict(dir_server, name, image, version=1)
    assert (answer.model_spec.name, answer.model_spec.version.value) == (name, 1)
    np.testing.assert_array_equal(pixels_of(answer.outputs["images"].string_val[0]), expected)
    assert _states(dir_server, name) == {1: AVAILABLE}
    assert [s.version for s in _grpc_status(dir_server, name).model_version_status] == [1]

  # A name not served: 404 / NOT_FOUND naming the models that are.
  response = requests.post(f"{dir_server.url}/v1/models/superres-x9:predict",
                           json={"instances": [{"b64": ""}]}, timeout=10)
  assert response.status_code == 404
  assert "Latest(superres-x9)" in response.json()["error"]
  assert f"serves {X2}, {X3}" in response.json()["error"]
  assert dir_server.status("superres-x9").status_code == 404
  with pytest.raises(grpc.RpcError) as missing:
    _grpc_predict(dir_server, "superres-x9", image)
  assert missing.value.code() == grpc.StatusCode.NOT_FOUND
  assert f"serves {X2}, {X3}" in missing.value.details()
  with pytest.raises(grpc.RpcError) as missing:
    _grpc_status(dir_server, "superres-x9")
  assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_new_model_folder_is_served_live(dir_server, exported):
  image = png(random_image(16, 16, seed=2))
  assert dir_server.status(NEW).status_code == 404
  # Staged under a hidden name, as the Pusher stages a version: not a model.
  staging = os.path.join(dir_server.serving_dir, ".incoming-" + NEW)
  _push(exported[2], 2, staging)
  time.sleep(5 * POLL_SECONDS)
  assert dir_server.status(NEW).status_code == 404
  os.rename(staging, os.path.join(dir_server.serving_dir, NEW))
  dir_server.wait_ready(CHANGE_TIMEOUT, name=NEW)
  np.testing.assert_array_equal(_rest(dir_server, NEW, image), local(exported[2], 2, image))
  np.testing.assert_array_equal(
      pixels_of(client.upscale_grpc(dir_server.target, NEW, image)), local(exported[2], 2, image))
  np.testing.assert_array_equal(_rest(dir_server, X2, image), local(exported[2], 1, image))

  # Its folder removed: no longer served, as TF Serving unloads a model.
  shutil.rmtree(os.path.join(dir_server.serving_dir, NEW))
  wait_for(lambda: dir_server.status(NEW).status_code == 404, CHANGE_TIMEOUT,
           f"{NEW} to be unloaded")
  assert f"serves {X2}, {X3}" in dir_server.status(NEW).json()["error"]
  np.testing.assert_array_equal(_rest(dir_server, X3, image), local(exported[3], 1, image))
  assert "Traceback" not in dir_server.log()


# --- one server for TF Serving's model config file -------------------------------------

def test_model_config_file_version_policies(config_server, exported):
  image = png(random_image(18, 14, seed=3))
  x2, x3 = exported[2], exported[3]
  # latest { num_versions: 2 }: versions 3 and 2; unversioned requests get the highest.
  assert _states(config_server, X2) == {3: AVAILABLE, 2: AVAILABLE}
  assert sorted(s.version for s in _grpc_status(config_server, X2).model_version_status) == [2, 3]
  np.testing.assert_array_equal(_rest(config_server, X2, image), local(x2, 3, image))
  for version in (2, 3):
    np.testing.assert_array_equal(_rest(config_server, X2, image, version),
                                  local(x2, version, image))
    answer = _grpc_predict(config_server, X2, image, version)
    assert answer.model_spec.version.value == version
    np.testing.assert_array_equal(pixels_of(answer.outputs["images"].string_val[0]),
                                  local(x2, version, image))
  response = requests.post(f"{config_server.url}/v1/models/{X2}/versions/1:predict",
                           json={"instances": [{"b64": ""}]}, timeout=10)
  assert response.status_code == 404
  assert f"Specific({X2}, 1)" in response.json()["error"]
  assert "serving versions 2, 3" in response.json()["error"]

  # specific { versions: 1 }: version 2 is on disk, version 1 is served.
  assert _states(config_server, X3) == {1: AVAILABLE}
  np.testing.assert_array_equal(_rest(config_server, X3, image), local(x3, 1, image))
  with pytest.raises(grpc.RpcError) as missing:
    _grpc_predict(config_server, X3, image, version=2)
  assert missing.value.code() == grpc.StatusCode.NOT_FOUND
  assert f"Specific({X3}, 2)" in missing.value.details()

  # A new push: versions 4 and 3 served, 2 unloaded, 1 never loaded.
  _push(x2, 4, str(config_server.x2_base))
  wait_for(lambda: _states(config_server, X2) == {4: AVAILABLE, 3: AVAILABLE, 2: "END"},
           CHANGE_TIMEOUT, "version 4 to replace version 2")
  np.testing.assert_array_equal(_rest(config_server, X2, image), local(x2, 4, image))
  np.testing.assert_array_equal(_rest(config_server, X2, image, 3), local(x2, 3, image))
  assert "Traceback" not in config_server.log()


def test_model_config_file_read_again(config_server, exported):
  """--model-config-file-poll-seconds: models added and dropped, a policy changed live."""
  image = png(random_image(12, 10, seed=4))
  # Caught half-edited: the models stay as they were.
  config_server.config_file.write_text("model_config_list { config { name: ")
  wait_for(lambda: "is not a text ModelServerConfig" in config_server.log(), CHANGE_TIMEOUT,
           "the broken config file to be reported")
  assert config_server.status(X2).status_code == 200

  config_server.config_file.write_text("""model_config_list {
    config { name: "%s" base_path: "%s" model_version_policy { all {} } }
    config { name: "%s" base_path: "models/x2" }
  }""" % (X3, config_server.x3_base, NEW))
  wait_for(lambda: _states(config_server, X3) == {1: AVAILABLE, 2: AVAILABLE}, CHANGE_TIMEOUT,
           f"{X3} to serve every version")
  np.testing.assert_array_equal(_rest(config_server, X3, image), local(exported[3], 2, image))
  np.testing.assert_array_equal(_rest(config_server, X3, image, 1), local(exported[3], 1, image))
  config_server.wait_ready(CHANGE_TIMEOUT, name=NEW)
  newest = max(int(version) for version in os.listdir(config_server.x2_base))
  np.testing.assert_array_equal(_rest(config_server, NEW, image), local(exported[2], newest, image))
  assert config_server.status(X2).status_code == 404
  assert "Traceback" not in config_server.log()


def test_version_policies_select():
  on_disk = {1, 2, 5, 7}
  assert model_config.DEFAULT_POLICY.select(on_disk) == {7}
  assert model_config.VersionPolicy(model_config.LATEST, 3).select(on_disk) == {2, 5, 7}
  assert model_config.VersionPolicy(model_config.ALL).select(on_disk) == on_disk
  assert model_config.VersionPolicy(model_config.SPECIFIC,
                                    versions=frozenset({2, 3})).select(on_disk) == {2}


def test_failed_and_removed_versions_under_a_policy(exported, tmp_path):
  """In-process: a version that fails to load leaves the next ones served in its place."""
  base = tmp_path / X2
  for version in (1, 2):
    _push(exported[2], version, str(base))
  (base / "3").mkdir()
  (base / "3" / names.SAVED_MODEL_FILE).write_bytes(b"not a SavedModel")
  manager = versions.VersionManager(str(base), policy=model_config.VersionPolicy(
      model_config.LATEST, 2), name=X2)
  manager.poll()
  assert manager.loaded_versions() == [1, 2] and manager.served().version == 2
  failed = manager.statuses()[0]
  assert (failed.version, failed.state) == (3, "END") and failed.error
  shutil.rmtree(base / "2")
  manager.poll()
  assert manager.loaded_versions() == [1]
  shutil.rmtree(base / "1")
  manager.poll()
  with pytest.raises(versions.NoVersionAvailable, match="version 1 was removed from .* and "
                     "version 3, left in its place, failed to load"):
    manager.served()


# --- start-up errors: one line, exit status 2, before any model loads ------------------

def _entry(name='name: "a" ', base='base_path: "m" ', extra=""):
  return "config { %s%s%s}" % (name, base, extra)


@pytest.mark.parametrize("text,message", [
    ("model_config_list { config { nme: 'a' } }", "models.config is not a text ModelServerConfig: "
     "1:30 : Message type \"tensorflow.serving.ModelConfig\" has no field named \"nme\""),
    ("model_config_list { %s }" % _entry(name=""), "config #1: it has no name"),
    ("model_config_list { %s }" % _entry(base=""), "config 'a': it has no base_path"),
    ("model_config_list { %s %s }" % (_entry(), _entry()),
     "config 'a': the name is used by an earlier config too"),
    ("model_config_list { %s }" % _entry(extra='model_platform: "pytorch" '),
     "serves 'tensorflow' SavedModels only"),
    ("model_config_list { %s }" % _entry(base='base_path: "missing" '),
     "config 'a': base_path {folder}/missing is not a directory"),
    ("model_config_list { %s }" % _entry(extra="version_labels { key: 'stable' value: 1 } "),
     "version_labels are not supported"),
    ("model_config_list { %s }" % _entry(extra="model_version_policy { specific { } } "),
     "its specific version policy lists no versions"),
    ("", "has no model_config_list"),
    ("model_config_list { }", "lists no models"),
])
def test_bad_model_config_file(tmp_path, capsys, text, message):
  (tmp_path / "m").mkdir()
  (tmp_path / "models.config").write_text(text)
  with pytest.raises(SystemExit) as exited:
    server_main.main(["--model-config-file", str(tmp_path / "models.config")])
  assert exited.value.code == 2
  error = capsys.readouterr().err
  assert error.startswith(f"serving: error: {tmp_path / 'models.config'}") or \
      error.startswith(f"serving: error: --model-config-file {tmp_path / 'models.config'}")
  assert message.format(folder=tmp_path) in error and error.count("\n") == 1, error


def test_bad_model_sources(tmp_path, capsys):
  (tmp_path / "superres-x2" / "1").mkdir(parents=True)
  for argv, message in (
      (["--model-config-file", str(tmp_path / "none.config")],
       f"cannot read --model-config-file {tmp_path / 'none.config'}: [Errno 2]"),
      (["--serving-dir", str(tmp_path / "none")], f"--serving-dir {tmp_path / 'none'} is not a "
       f"directory"),
      (["--serving-dir", str(tmp_path / "superres-x2")], "it is one model's base directory; "
       "serve it with --model-base"),
      (["--serving-dir", str(tmp_path), "--name", "x"], "--name names the model of --model-base"),
      (["--serving-dir", str(tmp_path), "--model-config-file-poll-seconds", "5"],
       "--model-config-file-poll-seconds goes with --model-config-file"),
      (["--serving-dir", str(tmp_path), "--model-base", str(tmp_path)],
       "argument --model-base: not allowed with argument --serving-dir")):
    with pytest.raises(SystemExit) as exited:
      server_main.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_launcher_passes_the_model_source():
  parser = launcher.add_arguments(argparse.ArgumentParser())
  command = launcher.serving_command(parser.parse_args(["--model-config-file", "m.config"]))
  assert command[3:5] == ["--model-config-file", os.path.abspath("m.config")]
  command = launcher.serving_command(parser.parse_args(["--serving-dir", "~/s"]))
  assert command[3:5] == ["--serving-dir", os.path.expanduser("~/s")]
  # With none, the server serves the default serving directory.
  command = launcher.serving_command(parser.parse_args([]))
  assert not {"--model-base", "--serving-dir", "--model-config-file", "--name"} & set(command)
