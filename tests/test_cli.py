"""The command line stays light: --version and --help load neither torch nor the training stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = ("import sys; from digit_denoise.cli import main\n"
         "try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
         "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('digit_denoise.training.loop', "
         "'digit_denoise.compare.core', 'digit_denoise.models')))\n"
         "print('HEAVY', heavy)")


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["train", "--help"], ["compare", "--help"],
                                  ["export", "--help"], ["denoise", "--help"]])
def test_version_and_help_do_not_import_torch(args):
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-1000:]
    assert "HEAVY []" in out.stdout, out.stdout[-500:]


def test_train_flags_come_from_the_config_dataclass():
    """Every TrainConfig field is a flag, with the comment beside the field as its help."""
    import argparse
    from dataclasses import fields

    from digit_denoise.training.config import TrainConfig
    from digit_denoise.training.flags import add_arguments, config_from_args, field_help

    p = argparse.ArgumentParser()
    add_arguments(p)
    flags = {a.dest for a in p._actions}
    assert {f.name for f in fields(TrainConfig)} - {"recipe"} <= flags and "config" in flags  # recipe: --config
    helps = field_help()
    assert set(helps) == {f.name for f in fields(TrainConfig)} and "Adam learning rate" in helps["lr"]
    a = p.parse_args(["--manifest", "m.csv", "--out", "r", "--preset", "fast", "--lr", "3e-3", "--no-augment",
                      "--model-config", '{"channels": 8}'])
    cfg = config_from_args(a)
    assert cfg.lr == 3e-3 and cfg.augment is False and cfg.model == "masknet" and cfg.model_config["channels"] == 8
    assert cfg.schedule == "cosine"  # the preset's value where no flag was given


def test_train_help_prints_every_flag_text_as_written():
    """A '%' in a field's comment (e.g. 'to 5 % at the last step') is text, not an argparse format."""
    import argparse

    from digit_denoise.training.flags import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    text = p.format_help()
    assert "cosine (to 5 % at the last planned step)" in " ".join(text.split())
    assert "option_strings" not in text
