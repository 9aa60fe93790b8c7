"""TF Serving's `--model_config_file` read for the local server.

The file is a text proto of `tensorflow.serving.ModelServerConfig`, as
`serving/models.config`; the local server serves one model at its latest
version, so the file must name exactly one model whose version policy is the
default or `latest { num_versions: 1 }`. Anything else is an error naming the
file, never silently served differently from the official server.
"""

import dataclasses

# Fields of a ModelConfig the local server has no use for; read and reported, not applied.
_IGNORED_FIELDS = ("logging_config", "version_labels")


@dataclasses.dataclass(frozen=True)
class ConfiguredModel:
    """The model a config file names.

    Attributes:
        name: the model's name (requests use it).
        base_path: its folder of version folders, as written (a relative path is
            relative to the working directory, as for tensorflow_model_server).
        ignored_fields: fields present in the file that the local server ignores.
    """

    name: str
    base_path: str
    ignored_fields: tuple = ()


def read_model_config(path):
    """Reads a ModelServerConfig text proto naming one model.

    Args:
        path: the `--model_config_file`.

    Returns:
        ConfiguredModel.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a ModelServerConfig text proto, or one the local server
            cannot serve as written (the message names the file and the field).
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with open(path) as file:
        text = file.read()
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ValueError(f"{path}: not a ModelServerConfig text proto: {error}") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{path}: needs a model_config_list (custom_model_config is not supported)")
    models = config.model_config_list.config
    if len(models) != 1:
        raise ValueError(f"{path}: the local server serves one model; the model_config_list has {len(models)}")
    model = models[0]
    if not model.name or not model.base_path:
        raise ValueError(f"{path}: the model config needs both name and base_path")
    if model.model_platform not in ("", "tensorflow"):
        raise ValueError(f"{path}: model_platform {model.model_platform!r} is not 'tensorflow'")
    policy = model.model_version_policy.WhichOneof("policy_choice")
    if policy not in (None, "latest") or model.model_version_policy.latest.num_versions > 1:
        raise ValueError(f"{path}: model_version_policy must be the default or latest {{ num_versions: 1 }} "
                         f"(the local server serves the newest version only)")
    ignored = tuple(name for name in _IGNORED_FIELDS if _is_set(model, name))
    return ConfiguredModel(name=model.name, base_path=model.base_path, ignored_fields=ignored)


def _is_set(message, field):
    value = getattr(message, field)
    return bool(len(value)) if hasattr(value, "__len__") else message.HasField(field)
