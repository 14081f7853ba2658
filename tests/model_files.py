"""Tiny model files for the denoise / export / nasty-input tests (untrained; built in milliseconds)."""

from __future__ import annotations

from pathlib import Path

import torch

from digit_denoise import checkpoint as ck
from digit_denoise.models import build_model
from digit_denoise.seed.features import SeedFeatureConfig

TINY_WAVE = {"channels": 8, "dilations": [1, 2]}
TINY_SEED = {"channels": [4, 8, 16]}


def save_wave_model(folder: Path, *, identity: bool = False, config: dict | None = None, seed: int = 0) -> Path:
    """A MaskNet checkpoint folder. ``identity``: its mask is sigmoid(12) ≈ 1 − 6e-6 everywhere, so the
    output equals the input up to resampling: lets tests check levels, channel order and alignment."""
    torch.manual_seed(seed)
    model = build_model("masknet", {**TINY_WAVE, **(config or {})})
    if identity:
        with torch.no_grad():
            model.out.weight.zero_()
            model.out.bias.fill_(12.0)
    meta = ck.model_meta("masknet", model.config.to_dict(), {"kind": "wave"}, model.config.sample_rate)
    return ck.save_checkpoint(folder, model, meta)


def save_seed_model(folder: Path, seed: int = 0) -> Path:
    """A small seed U-Net checkpoint folder (48 kHz seed representation)."""
    torch.manual_seed(seed)
    model = build_model("seed", TINY_SEED).eval()
    feat = SeedFeatureConfig()
    meta = ck.model_meta("seed", model.config.to_dict(), {"kind": "seed", **feat.to_dict()}, feat.sample_rate)
    return ck.save_checkpoint(folder, model, meta)
