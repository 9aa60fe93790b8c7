"""serving.server takes tensorflow_model_server's flag names, so one command line runs on both servers.

The official names: --port, --rest_api_port, --model_config_file (a
ModelServerConfig text proto), --enable_batching, --batching_parameters_file,
--model_name, --model_base_path, --file_system_poll_wait_seconds.
"""

import base64
import json
import pathlib
import re
import shlex
import urllib.request

import numpy as np
import pytest
from absl import flags

from tests.serving import helpers

ROOT = pathlib.Path(helpers.REPO_ROOT)
MODELS_CONFIG = """model_config_list {{
  config {{
    name: "{name}"
    base_path: "{base_path}"
    model_platform: "tensorflow"
    model_version_policy {{ latest {{ num_versions: 1 }} }}
  }}
}}
"""


def _server_flags(args):
    """A fresh FlagValues with serving.server's flags, parsed from `args`."""
    from serving.server import __main__ as server_cli

    flag_values = flags.FlagValues()
    server_cli.define_flags(flag_values)
    flag_values(["serving.server", *args])
    return server_cli, flag_values


def _dockerfile_entrypoint():
    text = (ROOT / "serving" / "Dockerfile").read_text()
    (entrypoint,) = re.findall(r"^ENTRYPOINT (\[.*?\])$", text.replace("\\\n", " "), flags=re.MULTILINE)
    return json.loads(entrypoint)


def test_the_repository_models_config_is_read():
    from serving.server.model_config import read_model_config

    model = read_model_config(ROOT / "serving" / "models.config")
    assert (model.name, model.base_path, model.ignored_fields) == ("emlnet", "/models/emlnet", ())


@pytest.mark.parametrize("text, message", [
    ("model_config_list { config { name: 'a' base_path: '/a' } config { name: 'b' base_path: '/b' } }",
     "serves one model"),
    ("model_config_list { config { name: 'a' base_path: '/a' model_version_policy { all {} } } }",
     "model_version_policy"),
    ("model_config_list { config { name: 'a' base_path: '/a' "
     "model_version_policy { specific { versions: 1 } } } }", "model_version_policy"),
    ("model_config_list { config { name: 'a' base_path: '/a' "
     "model_version_policy { latest { num_versions: 2 } } } }", "model_version_policy"),
    ("model_config_list { config { name: 'a' } }", "name and base_path"),
    ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'pytorch' } }", "model_platform"),
    ("model_config_list { config { nam: 'a' } }", "not a ModelServerConfig"),
    ("", "needs a model_config_list"),
])
def test_a_config_the_local_server_would_serve_differently_is_refused(tmp_path, text, message):
    from serving.server.model_config import read_model_config

    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as raised:
        read_model_config(path)
    assert str(path) in str(raised.value)


def test_the_official_names_set_the_same_settings():
    server_cli, official = _server_flags(["--port=8600", "--rest_api_port=8601", "--enable_batching=true",
                                          "--model_base_path=/m", "--file_system_poll_wait_seconds=2"])
    _, local = _server_flags(["--grpc_port=8600", "--rest_port=8601", "--enable_batching",
                              "--model_base_path=/m", "--file_system_poll_wait_seconds", "2"])
    from keras_emlnet import cli
    from serving.server.server import ServerConfig

    configs = [cli.config_from_flags(ServerConfig, values, overrides=server_cli.model_overrides(values))
               for values in (official, local)]
    assert configs[0] == configs[1]
    assert (configs[0].grpc_port, configs[0].rest_port, configs[0].enable_batching) == (8600, 8601, True)


def test_model_flags_are_one_source(tmp_path):
    from keras_emlnet import cli

    config = tmp_path / "models.config"
    config.write_text(MODELS_CONFIG.format(name="saliency", base_path="/srv/models/saliency"))
    server_cli, values = _server_flags([f"--model_config_file={config}"])
    assert server_cli.model_overrides(values) == {"model_name": "saliency", "model_base_path": "/srv/models/saliency"}
    for args, message in (([], "--model_base_path or --model_config_file"),
                          ([f"--model_config_file={config}", "--model_base_path=/m"], "leave out"),
                          ([f"--model_config_file={config}", "--model_name=x"], "leave out"),
                          ([f"--model_config_file={tmp_path / 'missing'}"], "--model_config_file")):
        _, values = _server_flags(args)
        with pytest.raises(cli.FlagError, match=re.escape(message)):
            server_cli.model_overrides(values)


def test_the_dockerfile_is_the_official_image_with_the_local_server_s_flags():
    text = (ROOT / "serving" / "Dockerfile").read_text()
    pins = dict(re.findall(r"^([a-z-]+)==(\S+)$", (ROOT / "requirements.txt").read_text(), flags=re.MULTILINE))
    (tag,) = re.findall(r"^ARG TF_SERVING_TAG=(\S+)$", text, flags=re.MULTILINE)
    assert tag == pins["tensorflow"] == pins["tensorflow-serving-api"]
    assert re.search(r"^FROM tensorflow/serving:\$\{TF_SERVING_TAG\}$", text, flags=re.MULTILINE)
    copies = dict(re.findall(r"^COPY (\S+) (\S+)$", text, flags=re.MULTILINE))
    assert (ROOT / "serving" / "models.config").is_file() and (ROOT / "serving" / "batching_parameters.txt").is_file()
    assert re.search(r"^EXPOSE 8500 8501$", text, flags=re.MULTILINE)
    entrypoint = _dockerfile_entrypoint()
    assert entrypoint[0] == "tensorflow_model_server"
    _, values = _server_flags(entrypoint[1:])
    assert (values.grpc_port, values.rest_port, values.enable_batching) == (8500, 8501, True)
    # The files the flags name are the files copied in, and the export lands where models.config points.
    assert copies["serving/models.config"] == values.model_config_file
    assert copies["serving/batching_parameters.txt"] == values.batching_parameters_file
    from serving.server.model_config import read_model_config

    assert copies["exports/emlnet"] == read_model_config(ROOT / "serving" / "models.config").base_path


def test_the_server_starts_and_answers_with_the_official_flag_names(serving_export, tmp_path):
    model, export_base = serving_export
    config = tmp_path / "models.config"
    config.write_text(MODELS_CONFIG.format(name="saliency", base_path=export_base))
    entrypoint = _dockerfile_entrypoint()
    # The Dockerfile's command line with free ports and this machine's files.
    args = [arg.replace("=8500", "=0").replace("=8501", "=0")
            .replace("/config/models.config", str(config))
            .replace("/config/batching_parameters.txt", str(ROOT / "serving" / "batching_parameters.txt"))
            for arg in entrypoint[1:]]
    assert shlex.join(args).count("=0") == 2
    process = helpers.ServerProcess(args)
    try:
        assert process.grpc_port > 0 and process.rest_port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{process.rest_port}/v1/models/saliency", timeout=60) as reply:
            status = json.load(reply)["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [("1", "AVAILABLE")]
        image = helpers.distinct_images(1, seed=5)[0]
        body = json.dumps({"instances": [{"b64": base64.b64encode(helpers.png_bytes(image)).decode()}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{process.rest_port}/v1/models/saliency:predict",
                                         data=body, method="POST")
        with urllib.request.urlopen(request, timeout=60) as reply:
            (prediction,) = json.load(reply)["predictions"]
        got, want = np.array(prediction["saliency"], np.float32), model.predict_map(image)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * want.max())
        assert any("max_batch_size=8" in line for line in process.lines)
    finally:
        returncode = process.stop()
    assert returncode == 0, "".join(process.lines[-20:])


def test_thread_pool_flags_size_tensorflow_in_a_fresh_process_only():
    import subprocess
    import sys

    _, flag_values = _server_flags(["--model_base_path", "/m", "--tensorflow_intra_op_parallelism", "1",
                                    "--tensorflow_inter_op_parallelism", "3"])
    assert (flag_values.tensorflow_intra_op_parallelism, flag_values.tensorflow_inter_op_parallelism) == (1, 3)
    code = ("import tensorflow as tf; from serving.server.server import set_tensorflow_threads as s; s(1, 3); "
            "tf.constant(1.0) + 1; c = tf.config.threading; "
            "print(c.get_intra_op_parallelism_threads(), c.get_inter_op_parallelism_threads())")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["1", "3"], done.stderr[-2000:]
    import tensorflow as tf

    from serving.server.server import set_tensorflow_threads

    tf.constant(1.0) + 1  # TensorFlow has started in this process
    current = tf.config.threading.get_inter_op_parallelism_threads()
    with pytest.raises(ValueError, match="tensorflow_inter_op_parallelism must be set before TensorFlow starts"):
        set_tensorflow_threads(0, current + 1)
    set_tensorflow_threads(0, 0)  # 0: left as it is, no error
