"""Model families: name -> (ConfigClass, ModuleClass), plus small model utilities.

Public API::

    MODELS                                   # explicit name -> (ConfigClass, ModuleClass) table
    available_models() -> list[str]
    model_config(name, overrides=None) -> config dataclass
    build_model(name, config_dict=None) -> nn.Module     # config_dict: dict or config instance
    count_parameters(model) -> int                      # trainable parameters
    receptive_field(name_or_config_or_model, centred=False) -> int      # analytic
    measure_receptive_field(model, size=128) -> tuple[int, int]          # empirical (exact, centred)
    flops_per_sample(model, input_shape=(1, 112, 112)) -> int
    wave_flops_per_second(model) -> int                 # waveform models: FLOPs per second of audio
    describe(name, config_dict=None) -> str             # the self-check text

Pure code: no file I/O and no printing here (``describe`` returns a string).
"""

from __future__ import annotations

import copy
from dataclasses import is_dataclass

import torch
from torch import nn

from ..errors import UserError
from .attn_unet import AttnUNet, AttnUNetConfig
from .base import Family, conv2d_flops
from .gtcrn import GTCRN, GTCRNConfig
from .masknet import MaskNet, MaskNetConfig
from .seed_buggy import SeedBuggyConfig, SeedBuggyUNet
from .seed_unet import SeedUNet, SeedUNetConfig
from .tasnet import TasNet, TasNetConfig
from .ulunas import ULUNAS, ULUNASConfig

MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "seed": (SeedUNetConfig, SeedUNet),
    "seed-buggy": (SeedBuggyConfig, SeedBuggyUNet),  # deliberately broken, comparison only
    "seed-attn": (AttnUNetConfig, AttnUNet),  # seed representation, deeper residual attention U-Net
    "masknet": (MaskNetConfig, MaskNet),  # waveform in/out, spectral mask at 16 kHz
    "tasnet": (TasNetConfig, TasNet),  # waveform in/out, learned encoder/decoder, 4 ms frames (time domain)
    "gtcrn": (GTCRNConfig, GTCRN),  # waveform in/out, GTCRN (Rong et al. 2024); loads the published DNS3 weights
    "ul-unas": (ULUNASConfig, ULUNAS),  # waveform in/out, UL-UNAS (Rong et al. 2025); loads the published DNS3 weights
}

__all__ = [
    "MODELS",
    "Family",
    "AttnUNet",
    "AttnUNetConfig",
    "GTCRN",
    "GTCRNConfig",
    "MaskNet",
    "MaskNetConfig",
    "SeedBuggyConfig",
    "SeedBuggyUNet",
    "SeedUNet",
    "SeedUNetConfig",
    "TasNet",
    "TasNetConfig",
    "ULUNAS",
    "ULUNASConfig",
    "available_models",
    "build_model",
    "count_parameters",
    "describe",
    "flops_per_sample",
    "measure_receptive_field",
    "model_config",
    "receptive_field",
    "wave_flops_per_second",
]


def available_models() -> list[str]:
    """Registered model names, in table order."""
    return list(MODELS)


def _entry(name: str) -> tuple[type, type[nn.Module]]:
    try:
        return MODELS[name]
    except KeyError:
        raise UserError(
            f"unknown model {name!r}; choose one of {', '.join(available_models())}"
        ) from None


def model_config(name: str, overrides=None):
    """Config dataclass for ``name``: defaults, updated by ``overrides`` (dict or config instance)."""
    cfg_cls, _ = _entry(name)
    if overrides is None:
        return cfg_cls()
    if isinstance(overrides, cfg_cls):
        return copy.deepcopy(overrides)
    if is_dataclass(overrides):
        overrides = overrides.to_dict()
    return cfg_cls.from_dict(overrides)  # a bad key or value: a one-line UserError


def build_model(name: str, config_dict=None) -> nn.Module:
    """Fresh module for ``name`` built from ``config_dict`` (dict, config instance, or None)."""
    _, mod_cls = _entry(name)
    return mod_cls(model_config(name, config_dict))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable (registered, ``requires_grad``) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------- receptive field
def receptive_field(model_name_or_config, centred: bool = False) -> int:
    """Receptive field of a model name, config instance or built model.

    Waveform models: ``2 · context + 1`` samples. Seed models: pixels along H or W, exact width
    (``centred=False``, 44 for the seed U-Net) or the smallest odd centred window containing the
    field for every pooling phase (``centred=True``, 47); see :func:`.seed_unet.unet_receptive_field`.
    """
    x = model_name_or_config
    if isinstance(x, str):
        x = build_model(x)
    elif not isinstance(x, nn.Module):
        name = next((n for n, (c, _) in MODELS.items() if type(x) is c), None)
        if name is None:
            raise UserError(f"receptive_field: expected a model name or config, got {type(x).__name__}")
        x = build_model(name, x)
    if x.kind == "wave":
        return 2 * x.context + 1
    return x.receptive_field(centred)


def _swap_for_rf(m: nn.Module) -> None:
    """In place: keep connectivity, make the net linear with positive weights."""
    for name, child in list(m.named_children()):
        if isinstance(child, nn.MaxPool2d):
            setattr(m, name, nn.AvgPool2d(child.kernel_size, child.stride))
        elif isinstance(child, (nn.ReLU, nn.BatchNorm2d, nn.Sigmoid, nn.Softplus)):
            setattr(m, name, nn.Identity())
        else:
            _swap_for_rf(child)
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        with torch.no_grad():
            m.weight.fill_(1.0 / m.weight[0].numel())
            if m.bias is not None:
                m.bias.zero_()


def measure_receptive_field(model: nn.Module, size: int = 128) -> tuple[int, int]:
    """Empirical receptive field: ``(exact_width, centred_odd_width)`` along H and W.

    On a float64 copy whose max-pools are average-pools (same connectivity), whose
    ReLU/BatchNorm/final activation are identities and whose conv weights are all
    positive, the gradient of one output pixel w.r.t. a ``size x size`` input is
    non-zero exactly on that pixel's field. All pooling phases are measured (4x4 for the seed
    U-Net's two pools, 2^(levels-1) squared for seed-attn).
    """
    m = copy.deepcopy(model).cpu().double()
    roots = [m, *getattr(m, "hidden_modules", lambda: [])()]
    for r in roots:
        _swap_for_rf(r)
    m.eval()
    cin = m.config.in_channels
    widths, reach = set(), 0
    period = 2 ** (len(m.config.channels) - 1)  # the pooling grid
    c = size // 2 - size // 2 % period
    for dy in range(period):
        for dx in range(period):
            x = torch.zeros(1, cin, size, size, dtype=torch.float64, requires_grad=True)
            m(x)[0, 0, c + dy, c + dx].backward()
            nz = x.grad[0].abs().sum(0) > 0
            rows = torch.nonzero(nz.any(1)).flatten()
            cols = torch.nonzero(nz.any(0)).flatten()
            for idx, centre in ((rows, c + dy), (cols, c + dx)):
                lo, hi = int(idx.min()), int(idx.max())
                if lo == 0 or hi == size - 1:
                    raise ValueError(f"receptive field reaches the border; use size > {size}")
                widths.add(hi - lo + 1)
                reach = max(reach, centre - lo, hi - centre)
    return max(widths), 2 * reach + 1


# ---------------------------------------------------------------- FLOPs and self-check
def flops_per_sample(model: nn.Module, input_shape=(1, 112, 112)) -> int:
    """FLOPs (2 × multiply-adds) of a seed model's convolutions for one ``Tensor[C, H, W]`` input."""
    return conv2d_flops(model, input_shape)


def wave_flops_per_second(model: nn.Module) -> int:
    """FLOPs (2 × multiply-adds) of a waveform model per second of audio."""
    if model.kind != "wave":
        raise TypeError(f"{type(model).__name__} is not a waveform model")
    return model.flops()


def describe(name: str, config_dict=None) -> str:
    """Multi-line summary: parameters, receptive field, FLOPs and a shape check."""
    return build_model(name, config_dict).describe(name)
