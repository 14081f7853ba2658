"""Training: :mod:`.config` (TrainConfig, presets, flags), :mod:`.distributed` (device, precision,
torchrun), :mod:`.inputs` (what a run trains on), :mod:`.runlog` (the run folder), :mod:`.loop` (the loop).

``from digit_denoise.training import train`` loads torch on first use; :mod:`.config` alone does not.
"""

from __future__ import annotations

from .config import PRESETS, TrainConfig, resolve_config

__all__ = ["PRESETS", "TrainConfig", "resolve_config", "train"]


def __getattr__(name: str):  # lazy: the CLI reads the presets without loading torch
    if name == "train":
        from .loop import train

        return train
    raise AttributeError(name)
