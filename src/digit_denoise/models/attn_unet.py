"""Attention U-Net on the seed representation: deeper, residual, attention-gated skips.

Same input and output as the seed U-Net (the 112×112 mel-dB image in [0, 1], one plane in, one
out), so it trains with the seed recipe (``--preset seed --model seed-attn``) and is evaluated by
``digit-denoise evaluate``. What changes (default config, 4 levels 32→64→128→256)::

    enc_l   residual block: conv3x3+BN+ReLU, conv3x3+BN, + 1×1 projection of the input, ReLU
    pool    maxpool 2×2 between levels (the image is padded to a multiple of 2^(levels-1))
    up_l    convT 2×2/2 (c_{l+1} → c_l)
    gate_l  attention gate (Oktay et al. 2018): α = σ(1×1(ReLU(1×1(up) + 1×1(skip)))) ∈ [0, 1]^{H×W},
            skip ← α ⊙ skip — the decoder decides which time-frequency cells of the skip pass
    dec_l   residual block on concat(up, gated skip)
    head    conv1x1 → sigmoid (the target image lies in [0, 1])

The seed U-Net's field of view is 44×44 px of a 112×112 image; four levels widen it to most of
the image (see ``python -m digit_denoise.models --name seed-attn``).

Pure model code: no file I/O, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..dictconfig import DictConfig
from ..errors import UserError
from .base import Family, conv2d_flops
from .seed_unet import FINAL_ACTIVATIONS, final_activation, pad_to_multiple, unet_receptive_field


@dataclass
class AttnUNetConfig(DictConfig):
    in_channels: int = 1
    out_channels: int = 1
    channels: tuple[int, ...] = (32, 64, 128, 256)  # widths per level, the last is the bottleneck
    attention: bool = True  # attention gates on the skip connections
    final_activation: str = "sigmoid"

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise UserError(f"seed-attn: channels must be ≥ 2 positive widths, got {list(self.channels)}")
        if max(self.channels) > 4096 or len(self.channels) > 8 or max(self.in_channels, self.out_channels) > 64:
            raise UserError("seed-attn: at most 8 levels of at most 4096 channels, and at most 64 input/output planes")
        if self.in_channels < 1 or self.out_channels < 1:
            raise UserError("seed-attn: in_channels and out_channels must be >= 1")
        if self.final_activation not in FINAL_ACTIVATIONS:
            raise UserError(f"seed-attn: unknown final_activation {self.final_activation!r}; "
                            f"choose one of {', '.join(FINAL_ACTIVATIONS)}")


class ResBlock(nn.Module):
    """``Tensor[B, cin, H, W] -> Tensor[B, cout, H, W]``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.skip(x))


class AttentionGate(nn.Module):
    """``(g Tensor[B, c, H, W], x Tensor[B, c, H, W]) -> x ⊙ α`` with ``α: Tensor[B, 1, H, W]``."""

    def __init__(self, c: int):
        super().__init__()
        inter = max(1, c // 2)
        self.wg = nn.Conv2d(c, inter, 1)
        self.wx = nn.Conv2d(c, inter, 1, bias=False)
        self.psi = nn.Conv2d(inter, 1, 1)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def forward(self, g: Tensor, x: Tensor) -> Tensor:
        return x * self.sigmoid(self.psi(self.relu(self.wg(g) + self.wx(x))))


class AttnUNet(Family):
    """``forward(x: Tensor[B, in_channels, H, W]) -> Tensor[B, out_channels, H, W]`` for any H, W ≥ 1."""

    kind = "seed"

    @property
    def context(self) -> int:
        """Receptive field in pixels: the seed U-Net's walk (1×1 projections and gates add nothing)."""
        return unet_receptive_field(len(self.config.channels))

    def receptive_field(self, centred: bool = False) -> int:
        return unet_receptive_field(len(self.config.channels), centred)

    def flops(self) -> int:
        return conv2d_flops(self, (self.config.in_channels, 112, 112))

    def summary(self) -> str:
        gates = "attention gates" if self.config.attention else "plain skips"
        return f"{len(self.config.channels)}-level residual U-Net, channels {list(self.config.channels)}, {gates}"

    def __init__(self, config: AttnUNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or AttnUNetConfig()
        ch = cfg.channels
        self.enc = nn.ModuleList([ResBlock(cfg.in_channels, ch[0])]
                                 + [ResBlock(a, b) for a, b in zip(ch, ch[1:])])
        self.pool = nn.MaxPool2d(2)
        # decoder lists are ordered deepest first
        self.ups = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2)
                                  for i in reversed(range(len(ch) - 1))])
        self.gates = nn.ModuleList([AttentionGate(ch[i]) if cfg.attention else nn.Identity()
                                    for i in reversed(range(len(ch) - 1))])
        self.decs = nn.ModuleList([ResBlock(2 * ch[i], ch[i]) for i in reversed(range(len(ch) - 1))])
        self.head = nn.Conv2d(ch[0], cfg.out_channels, 1)
        self.act = final_activation(cfg.final_activation)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected Tensor[B, C, H, W], got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        y = pad_to_multiple(x, 2 ** (len(self.config.channels) - 1))
        skips = []
        for i, enc in enumerate(self.enc):
            y = enc(y if i == 0 else self.pool(y))
            skips.append(y)
        for up, gate, dec, skip in zip(self.ups, self.gates, self.decs, reversed(skips[:-1])):
            u = up(y)
            s = gate(u, skip) if self.config.attention else skip
            y = dec(torch.cat([u, s], dim=1))
        return self.act(self.head(y))[..., :h, :w]
