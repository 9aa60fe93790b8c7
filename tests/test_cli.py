"""keras_emlnet.cli: configs built from the flags named as their fields; errors naming the flag."""

import dataclasses

import pytest
from absl import app, flags

from keras_emlnet import cli


@dataclasses.dataclass(frozen=True)
class _Config:
    path: str
    size: tuple = (4, 6)
    count: int = 2
    label: str = "default"
    unflagged: float = 0.5

    def __post_init__(self):
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")


@pytest.fixture
def parse():
    def parse(*args):
        values = flags.FlagValues()
        flags.DEFINE_string("path", None, "A path.", flag_values=values)
        flags.DEFINE_string("size", None, "HxW.", flag_values=values)
        flags.DEFINE_integer("count", 3, "A count.", flag_values=values)
        flags.DEFINE_string("label", None, "A label.", flag_values=values)
        flags.DEFINE_bool("verbose", False, "Not a field: the CLI's own.", flag_values=values)
        values(["prog", *args])
        return values

    return parse


def test_fields_take_the_flags_of_their_name_and_unset_flags_keep_the_default(parse):
    config = cli.config_from_flags(_Config, parse("--path=a/b", "--verbose"))
    # count: the flag's default (3) wins over the field's (2); label unset (None): the field's default.
    assert config == _Config(path="a/b", size=(4, 6), count=3, label="default", unflagged=0.5)


def test_overrides_win_over_flags(parse):
    values = parse("--path=a", "--size=8x10", "--label=mine")
    config = cli.config_from_flags(_Config, values, overrides={"size": cli.parse_size(values.size, "size"),
                                                               "label": "computed"})
    assert (config.size, config.label) == ((8, 10), "computed")


def test_base_keeps_its_values_where_flags_are_unset(parse):
    base = _Config(path="base", count=5, label="recipe", unflagged=2.0)
    config = cli.config_from_flags(_Config, parse("--path=new"), base=base)
    assert config == _Config(path="new", count=3, label="recipe", unflagged=2.0)


def test_rejected_value_names_the_flag_as_typed(parse):
    with pytest.raises(cli.FlagError, match=r"count must be >= 1, got 0 \(--count=0\)") as error:
        cli.config_from_flags(_Config, parse("--path=a", "--count=0"))
    assert isinstance(error.value, app.UsageError) and isinstance(error.value, ValueError)


def test_missing_required_field_names_the_unset_flag(parse):
    with pytest.raises(cli.FlagError, match="--path unset"):
        cli.config_from_flags(_Config, parse())


def test_override_of_no_field_is_a_bug(parse):
    with pytest.raises(TypeError, match=r"no fields \['sise'\]"):
        cli.config_from_flags(_Config, parse("--path=a"), overrides={"sise": (1, 2)})


@pytest.mark.parametrize("text, expected", [("480x640", (480, 640)), ("32X48", (32, 48))])
def test_parse_size(text, expected):
    assert cli.parse_size(text, "image_size") == expected


def test_parse_size_reads_the_old_comma_form_and_says_so(caplog):
    with caplog.at_level("WARNING"):
        assert cli.parse_size("30,40", "image_size") == (30, 40)
    assert "--image_size=30,40 read as 30x40" in caplog.text and "write it as 30x40" in caplog.text
    with pytest.raises(cli.FlagError, match="--image_size"):
        cli.parse_size("30,x40", "image_size")


@pytest.mark.parametrize("text", ["480", "480x", "ax640", "0x640", "1x2x3", "1,2,3", "0,640", None])
def test_parse_size_rejects_bad_text_naming_the_flag(text):
    with pytest.raises(cli.FlagError, match="--image_size"):
        cli.parse_size(text, "image_size")


class _Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        if self.tty is None:
            raise ValueError("I/O operation on closed file")
        return self.tty


@pytest.mark.parametrize("tty, environ, expected", [
    (True, {}, 1),  # a terminal: the animated per-step bar
    (False, {}, 2),  # a log file or a pipe: one line per epoch
    (True, {"CI": "true"}, 2),  # CI consoles are logs even when they emulate a terminal
    (True, {"CI": "1"}, 2),
    (True, {"CI": "false"}, 1),
    (True, {"CI": ""}, 1),
    (None, {}, 2),  # a closed stream
])
def test_auto_verbosity_is_the_bar_on_a_terminal_and_lines_in_logs(tty, environ, expected):
    assert cli.resolve_verbosity("auto", stream=_Stream(tty), environ=environ) == expected


def test_explicit_verbosity_wins_and_bad_values_name_the_flag():
    for value in ("0", "1", "2", 0, 2):
        assert cli.resolve_verbosity(value, stream=_Stream(True), environ={"CI": "true"}) == int(value)
    assert cli.resolve_verbosity("auto", stream=object(), environ={}) == 2  # no isatty at all
    with pytest.raises(cli.FlagError, match="--verbose"):
        cli.resolve_verbosity("3")


def test_verbose_flag_and_the_deprecated_progress_alias(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    values = flags.FlagValues()
    cli.define_verbose_flag(values)
    values(["prog"])
    assert values.verbose == "auto"
    values(["prog", "--verbose=0"])
    assert cli.verbosity_from_flags(values) == 0
    flags.DEFINE_integer("progress", None, "Deprecated alias.", flag_values=values)
    values(["prog", "--verbose=0", "--progress=2"])
    assert cli.verbosity_from_flags(values) == 2
    with pytest.raises(flags.IllegalFlagValueError):
        values(["prog", "--verbose=5"])
