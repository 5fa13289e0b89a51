"""kdcourse.cli: one parsing style, deprecated flag spellings, argparse-like errors."""
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kdcourse.cli import modernize, parse_config


@dataclass
class Demo:
    out_dir: Path = field(default=Path("x"), metadata={"help": "output folder"})
    epochs: int = 1


def test_config_dataclass_is_filled_from_flags():
    (cfg,) = parse_config(Demo, ["--out_dir", "runs/a", "--epochs", "3"])
    assert cfg == Demo(out_dir=Path("runs/a"), epochs=3)


@pytest.mark.parametrize("old", ["--out", "--output-dir", "--output_dir"])
def test_old_output_spellings_still_work_and_say_they_are_deprecated(old, capsys):
    (cfg,) = parse_config(Demo, [old, "runs/b"], prog="demo")
    assert cfg.out_dir == Path("runs/b")
    assert capsys.readouterr().err == f"demo: warning: {old} is deprecated, use --out_dir\n"
    (cfg,) = parse_config(Demo, [f"{old}=runs/c"], prog="demo")
    assert cfg.out_dir == Path("runs/c")


def test_positional_arguments_come_back_in_a_namespace():
    cfg, args = parse_config(Demo, ["subs", "--epochs", "2"], positional={"submissions": "folder"})
    assert (cfg.epochs, args.submissions) == (2, "subs")


def test_unknown_option_is_one_usage_error_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(Demo, ["--epochs", "1", "--nope", "3"], prog="demo")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "demo: error: unrecognized arguments: --nope 3" in err
    assert "Traceback" not in err


def test_modernize_leaves_other_tokens_alone(capsys):
    assert modernize(["--outer", "--out_dir", "a", "out"], "p") == ["--outer", "--out_dir", "a", "out"]
    assert capsys.readouterr().err == ""
