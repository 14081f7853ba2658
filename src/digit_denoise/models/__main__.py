"""``python -m digit_denoise.models [--name NAME]``: the self-check of every model family (or one)."""

from __future__ import annotations

import argparse

from . import available_models, describe


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m digit_denoise.models", description=__doc__)
    ap.add_argument("--name", choices=available_models(), help="only this model family")
    a = ap.parse_args(argv)
    for name in [a.name] if a.name else available_models():
        print(describe(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
