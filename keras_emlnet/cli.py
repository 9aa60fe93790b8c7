"""What the command lines (`python -m ...`) share: configs built from flags, HxW sizes, --verbose.

Every CLI module defines its flags in `define_flags(flag_values)` (called when
it runs, never at import) and builds its config dataclass with
`config_from_flags`: a field takes the value of the flag of the same name, so
a setting is one flag and one field, not a line copied into every CLI. Only
CLIs import this module (it imports absl); `import keras_emlnet` does not.
"""

import dataclasses
import os
import re
import sys

from absl import app, flags, logging


class FlagError(app.UsageError, ValueError):
    """A flag value the command cannot use; the message names the flag.

    A UsageError, so `app.run` prints it under the short help and exits 1
    (no traceback); a ValueError, so a caller outside `app.run` catches it
    like any other bad value.
    """


def parse_size(text, flag="input_size"):
    """Parses "HxW" (e.g. "480x640", case-insensitive) into (H, W).

    "H,W" (the form `keras_emlnet.data.generate --image_size` used to take)
    is read as the same size, with a warning saying so: HxW is the one
    documented form, and an old command line keeps working.

    Args:
        text: the flag's value.
        flag: the flag's name, for the messages.

    Returns:
        (H, W), two positive ints.

    Raises:
        FlagError: not two positive integers joined by "x" (names --flag).
    """
    text = str(text)
    separator = "x"
    if "," in text and "x" not in text.lower():
        separator = ","
    try:
        height, width = (int(part) for part in text.lower().split(separator))
    except ValueError:
        raise FlagError(f"--{flag} must be HxW such as 480x640, got {text!r}") from None
    if height < 1 or width < 1:
        raise FlagError(f"--{flag} must be positive, got {text!r}")
    if separator == ",":
        logging.warning("--%s=%s read as %dx%d (height x width); write it as %dx%d", flag, text, height, width,
                        height, width)
    return height, width


def config_from_flags(config_class, flag_values=flags.FLAGS, *, base=None, overrides=None):
    """Builds a `config_class` (a dataclass) from the flags named as its fields.

    A field takes its entry of `overrides` if any (a value the CLI computes:
    a parsed size, a default derived from another flag, positional
    arguments); else the value of the flag of the same name unless that is
    None (unset); else its value in `base` or, without `base`, the dataclass
    default. Flags that are no field are ignored (the CLI uses them itself).

    Args:
        config_class: the dataclass type.
        flag_values: the parsed absl FlagValues.
        base: optional `config_class` instance whose values unset flags keep
            (e.g. a training recipe).
        overrides: {field name: value}, taking precedence over the flags.

    Returns:
        The `config_class` instance.

    Raises:
        FlagError: the dataclass rejected the values (a missing or bad one);
            the message names the flags of the fields it mentions.
        TypeError: an override names no field of `config_class` (a bug).
    """
    names = [field.name for field in dataclasses.fields(config_class)]
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"{config_class.__name__} has no fields {unknown}")
    values = {}
    for name in names:
        if name in overrides:
            values[name] = overrides[name]
        elif name in flag_values and flag_values[name].value is not None:
            values[name] = flag_values[name].value
    try:
        return config_class(**values) if base is None else dataclasses.replace(base, **values)
    except (TypeError, ValueError) as error:
        raise FlagError(_naming_flags(error, names, flag_values)) from None


def _naming_flags(error, names, flag_values):
    """The error's message followed by the flags (as typed) of the fields it mentions."""
    message = str(error)
    mentioned = [flag_values[name].serialize() or f"--{name} unset" for name in names
                 if name in flag_values and re.search(rf"\b{re.escape(name)}\b", message)]
    return f"{message} ({', '.join(mentioned)})" if mentioned else message


def run_main(module):
    """Runs a CLI module (one with `define_flags` and `main`) as `python -m module` would.

    The console scripts (`emlnet-train-encoder`, ...) call this: absl's
    `app.run` wants a `main(argv)` and the flags defined first, and its
    `--help` lists the flags of the module named by `sys.argv[0]` — the
    script's path here, not the module that defined them — so the module's
    flags are registered as that path's key flags too, and its usage text
    (the main module's docstring) is the CLI module's.

    Args:
        module: the imported CLI module.
    """
    module.define_flags(flags.FLAGS)
    main_module = sys.argv[0]
    script = sys.modules.get("__main__")
    if script is not None and not script.__doc__:
        script.__doc__ = module.__doc__
    for flag in flags.FLAGS.flags_by_module_dict().get(module.__name__, []):
        flags.FLAGS.register_key_flag_for_module(main_module, flag)
    app.run(module.main)


VERBOSE_CHOICES = ("auto", "0", "1", "2")
VERBOSE_HELP = ("Progress output, Keras's `verbose`: 1 = per-step progress bar with the metrics, 2 = one line "
                "per epoch (per stage), 0 = none but the log lines; auto = 1 on a terminal, 2 in logs and CI "
                "(stdout not a terminal, or CI set).")
# Values of $CI that mean "not in CI" (CI=true is what GitHub Actions, GitLab and .ci/run set).
_NOT_CI = ("", "0", "false", "no", "off")


def define_verbose_flag(flag_values=flags.FLAGS):
    """Defines --verbose (auto|0|1|2, default auto) in `flag_values`; read it with `verbosity_from_flags`."""
    flags.DEFINE_enum("verbose", "auto", list(VERBOSE_CHOICES), VERBOSE_HELP, flag_values=flag_values)


def resolve_verbosity(value, *, stream=None, environ=None):
    """The Keras verbosity (0, 1 or 2) that --verbose `value` means here.

    "auto" is 1 (an animated per-step bar) when `stream` is a terminal and
    $CI is unset or false, else 2 (one line per epoch: an animated bar
    written to a log file or a CI console becomes a line per update).

    Args:
        value: "auto", or 0/1/2 (int or str).
        stream: the stream progress goes to (default sys.stdout, where Keras
            writes its bar).
        environ: the environment (default os.environ).

    Raises:
        FlagError: any other value (names --verbose).
    """
    if str(value) != "auto":
        if str(value) not in VERBOSE_CHOICES:
            raise FlagError(f"--verbose must be one of {', '.join(VERBOSE_CHOICES)}, got {value!r}")
        return int(value)
    environ = os.environ if environ is None else environ
    if environ.get("CI", "").strip().lower() not in _NOT_CI:
        return 2
    stream = sys.stdout if stream is None else stream
    try:
        on_terminal = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        on_terminal = False
    return 1 if on_terminal else 2


def verbosity_from_flags(flag_values=flags.FLAGS):
    """`resolve_verbosity` of --verbose; a CLI's deprecated --progress (0/1/2), when set, wins."""
    if "progress" in flag_values and flag_values["progress"].value is not None:
        return resolve_verbosity(flag_values["progress"].value)
    return resolve_verbosity(flag_values["verbose"].value)
