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
from .gtcrn import GTCRN, GTCRNConfig
from .masknet import MaskNet, MaskNetConfig
from .seed_buggy import SeedBuggyConfig, SeedBuggyUNet
from .seed_unet import SeedUNet, SeedUNetConfig
from .tasnet import TasNet, TasNetConfig

MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "seed": (SeedUNetConfig, SeedUNet),
    "seed-buggy": (SeedBuggyConfig, SeedBuggyUNet),  # deliberately broken, comparison only
    "seed-attn": (AttnUNetConfig, AttnUNet),  # seed representation, deeper residual attention U-Net
    "masknet": (MaskNetConfig, MaskNet),  # waveform in/out, spectral mask at 16 kHz
    "tasnet": (TasNetConfig, TasNet),  # waveform in/out, learned encoder/decoder, 4 ms frames (time domain)
    "gtcrn": (GTCRNConfig, GTCRN),  # waveform in/out, GTCRN (Rong et al. 2024); loads the published DNS3 weights
}

__all__ = [
    "MODELS",
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
    return cfg_cls.from_dict(overrides)


def build_model(name: str, config_dict=None) -> nn.Module:
    """Fresh module for ``name`` built from ``config_dict`` (dict, config instance, or None)."""
    _, mod_cls = _entry(name)
    return mod_cls(model_config(name, config_dict))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable (registered, ``requires_grad``) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _all_modules(model: nn.Module) -> list[nn.Module]:
    """Registered modules plus any unregistered ones a model exposes via ``hidden_modules()``."""
    mods = list(model.modules())
    for h in getattr(model, "hidden_modules", lambda: [])():
        mods.extend(h.modules())
    return mods


# ---------------------------------------------------------------- receptive field
#
# Analytic, exact, 1-D (the same along H and W). Walk back from one output pixel x
# (an index interval [a, b]) through the layer stack:
#   conv3x3 (pad 1):        [a, b] -> [a - 1, b + 1]        (a block of two: +-2)
#   maxpool 2x2 / 2:        [a, b] -> [2a, 2b + 1]          (to the finer grid)
#   convT 2x2 / 2:          [a, b] -> [a // 2, b // 2]      (to the coarser grid)
#   concat (skip):          union of the two branches' intervals
# The field of a pixel depends on x mod 4 (the pooling grid), so all 4 phases are
# checked. For the seed stack every phase gives the same width,
#   1 + sum_l (k_l - 1) * jump_l  over the deepest path (jump = input pixels per step)
#   = 1 + [enc1 2*2*1] + [pool 1*1] + [enc2 2*2*2] + [pool 1*2] + [enc3 2*2*4]
#       + [convT 0] + [dec2 2*2*2] + [convT 0] + [dec1 2*2*1] + [head 0]
#   = 1 + 4 + 1 + 8 + 2 + 16 + 8 + 4 = 44,
# an EVEN number (transposed convs add 0 and the pool phase shifts it off-centre).
# ``centred=True`` gives instead the smallest odd window centred on the output pixel
# that contains its field for every phase: 2 * max_reach + 1 = 47.
# BatchNorm is treated as per-pixel (eval mode); in training mode its batch statistics
# make every output depend on every input (the seed-buggy model is always like that).


def _conv2(iv):  # two 3x3 convs
    return iv[0] - 2, iv[1] + 2


def _pool_back(iv):
    return 2 * iv[0], 2 * iv[1] + 1


def _up_back(iv):
    return iv[0] // 2, iv[1] // 2


def _union(i, j):
    return min(i[0], j[0]), max(i[1], j[1])


def _seed_field(x: int, levels: int = 3) -> tuple[int, int]:
    """Input interval seen by output pixel ``x`` of a ``levels``-level U-Net (no boundary effects).

    Each level is two 3x3 convs; the seed U-Net has 3 levels. The seed-attn U-Net walks the same way:
    its 1x1 projections and attention gates join branches that are already in the union.
    """

    def enc_in(level, iv):
        iv = _conv2(iv)
        return iv if level == 0 else enc_in(level - 1, _pool_back(iv))

    def dec_in(level, iv):  # decoder block at `level` (< levels - 1)
        c = _conv2(iv)
        deeper = dec_in(level + 1, _up_back(c)) if level + 1 < levels - 1 else enc_in(levels - 1, _up_back(c))
        return _union(deeper, enc_in(level, c))

    return dec_in(0, (x, x))  # head: 1x1 conv, no change


def receptive_field(model_name_or_config, centred: bool = False) -> int:
    """Analytic receptive field (pixels along H or W) of a registered model.

    Accepts a model name, a config instance, or a built model. ``centred=False``:
    exact width of an output pixel's field (44 for the seed U-Net, the same for all
    pooling phases). ``centred=True``: smallest odd centred window containing it for
    every phase (47). See the comment block above for the derivation.
    """
    x = model_name_or_config
    if isinstance(x, (MaskNetConfig, TasNetConfig)):
        x = (MaskNet if isinstance(x, MaskNetConfig) else TasNet)(x)
    if isinstance(x, str) and getattr(_entry(x)[1], "kind", "seed") == "wave":
        x = build_model(x)
    if getattr(x, "kind", "seed") == "wave":  # waveform models: in samples
        return 2 * x.context_samples + 1
    levels = 3
    if isinstance(x, str) and _entry(x)[1] is AttnUNet:
        x = model_config(x)
    if isinstance(x, AttnUNet):
        x = x.config
    if isinstance(x, AttnUNetConfig):
        levels = len(x.channels)
    elif isinstance(x, str):
        _entry(x)
    elif not isinstance(x, (nn.Module, SeedUNetConfig)):
        raise UserError(f"receptive_field: expected a model name or config, got {type(x).__name__}")
    period = 2 ** (levels - 1)  # pooling grid: the field depends on x mod period
    widths, reach = set(), 0
    base = 1024  # far from any boundary, a multiple of the period
    for phase in range(period):
        a, b = _seed_field(base + phase, levels)
        widths.add(b - a + 1)
        reach = max(reach, base + phase - a, b - base - phase)
    if centred:
        return 2 * reach + 1
    return max(widths)


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
    period = 2 ** (len(m.config.channels) - 1) if isinstance(model, AttnUNet) else 4  # the pooling grid
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


# ---------------------------------------------------------------- FLOPs


def flops_per_sample(model: nn.Module, input_shape=(1, 112, 112)) -> int:
    """FLOPs (2 x multiply-adds) of all Conv2d / ConvTranspose2d for one ``Tensor[C, H, W]`` input.

    Counted with forward hooks on a copy of the model (so running statistics of the
    original are untouched), at the internally padded size actually computed.
    Conv2d: ``out_elems * (Cin/groups) * kh * kw``; ConvTranspose2d:
    ``in_elems * (Cout/groups) * kh * kw`` multiply-adds. Bias adds, BatchNorm,
    activations, pooling and padding are not counted.
    """
    m = copy.deepcopy(model)
    macs = 0

    def conv_hook(mod, inp, out):
        nonlocal macs
        k = mod.weight.shape[2] * mod.weight.shape[3]
        if isinstance(mod, nn.ConvTranspose2d):
            macs += inp[0][0].numel() * (mod.out_channels // mod.groups) * k
        else:
            macs += out[0].numel() * (mod.in_channels // mod.groups) * k

    handles = [
        mod.register_forward_hook(conv_hook)
        for mod in _all_modules(m)
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        p = next(iter(m.parameters()), None)
        dev = p.device if p is not None else torch.device("cpu")
        dtype = p.dtype if p is not None else torch.float32
        with torch.no_grad():
            m(torch.zeros(1, *input_shape, device=dev, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    return 2 * macs


# ---------------------------------------------------------------- self-check text


def describe(name: str, config_dict=None) -> str:
    """Multi-line summary: parameters, receptive field, FLOPs and a shape check."""
    model = build_model(name, config_dict)
    if getattr(model, "kind", "seed") == "wave":
        return _describe_wave(name, model)
    cin = model.config.in_channels
    x = torch.randn(2, cin, 112, 112, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        y = model(x)
    ok = y.shape == (2, model.config.out_channels, 112, 112)
    rf, rfc = receptive_field(name), receptive_field(name, centred=True)
    return "\n".join(
        [
            f"{name}: {model.__class__.__name__}",
            f"  trainable parameters: {count_parameters(model):,}",
            f"  receptive field: {rf} px (centred odd window {rfc} px)",
            f"  FLOPs/sample @1x112x112: {flops_per_sample(model, (cin, 112, 112)):,}",
            f"  forward {tuple(x.shape)} -> {tuple(y.shape)}: {'ok' if ok else 'SHAPE MISMATCH'}",
        ]
    )


def wave_flops_per_second(model: nn.Module) -> int:
    """FLOPs (2 × multiply-adds) of a waveform model's convolutions per second of audio."""
    from . import gtcrn, masknet, tasnet

    fn = {MaskNet: masknet.flops_per_second, TasNet: tasnet.flops_per_second,
          GTCRN: gtcrn.flops_per_second}.get(type(model))
    if fn is None:
        raise TypeError(f"{type(model).__name__} is not a waveform model")
    return fn(model)


def _describe_wave(name: str, model: nn.Module) -> str:
    cfg = model.config
    x = torch.randn(2, cfg.sample_rate, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        y = model(x)
    ok = y.shape == x.shape
    ctx = model.context_samples
    if isinstance(model, MaskNet):
        what = f"{cfg.mask} mask, {cfg.n_fft}/{cfg.hop} STFT @ {cfg.sample_rate} Hz"
    elif isinstance(model, GTCRN):
        what = f"{'causal' if cfg.causal else 'non-causal'}, complex ratio mask, {cfg.n_fft}/{cfg.hop} STFT"
    else:
        what = f"learned {cfg.filters}-filter encoder, {cfg.kernel}/{cfg.hop} frames @ {cfg.sample_rate} Hz"
    return "\n".join(
        [
            f"{name}: {model.__class__.__name__} ({what})",
            f"  trainable parameters: {count_parameters(model):,}",
            f"  receptive field: ±{model.context_frames} frames = ±{ctx} samples ({1000 * ctx / cfg.sample_rate:.0f} ms)",
            f"  FLOPs per second of audio: {wave_flops_per_second(model):,}",
            f"  forward {tuple(x.shape)} -> {tuple(y.shape)}: {'ok' if ok else 'SHAPE MISMATCH'}",
        ]
    )
