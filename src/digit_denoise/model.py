"""Shim: ``python -m digit_denoise.model [--name NAME]`` prints a self-check per model.

The model code lives in :mod:`digit_denoise.models`; this module only re-exports it.
"""

from __future__ import annotations

from .models import (  # noqa: F401  (re-exports)
    MODELS,
    available_models,
    build_model,
    count_parameters,
    describe,
    flops_per_sample,
    measure_receptive_field,
    model_config,
    receptive_field,
)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m digit_denoise.model", description=__doc__)
    ap.add_argument("--name", choices=available_models(), help="one model (default: all)")
    args = ap.parse_args(argv)
    for name in [args.name] if args.name else available_models():
        print(describe(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
