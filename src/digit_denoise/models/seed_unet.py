"""The seed U-Net: the published 3-level 2-D U-Net denoiser, correctly wired.

Layer stack (default config, 467,233 parameters — the published count)::

    enc1  [conv3x3(1->32)+BN+ReLU,   conv3x3(32->32)+BN+ReLU]    full res
    pool  maxpool 2x2
    enc2  [conv3x3(32->64)+BN+ReLU,  conv3x3(64->64)+BN+ReLU]    1/2 res
    pool  maxpool 2x2
    enc3  [conv3x3(64->128)+BN+ReLU, conv3x3(128->128)+BN+ReLU]  1/4 res (bottleneck)
    up2   convT2x2/2(128->64), concat enc2 -> 128 ch
    dec2  [conv3x3(128->64)+BN+ReLU, conv3x3(64->64)+BN+ReLU]    1/2 res
    up1   convT2x2/2(64->32), concat enc1 -> 64 ch
    dec1  [conv3x3(64->32)+BN+ReLU,  conv3x3(32->32)+BN+ReLU]    full res
    head  conv1x1(32->1)                                          (no final activation)

Every conv / transposed conv keeps PyTorch's default ``bias=True``; that is the
arrangement that reproduces the published 467,233 exactly (convs 465,184 weights
+ 640 conv biases + 96 transposed-conv biases + 1,280 BatchNorm affine + 33 head).
Note the conv biases in front of a BatchNorm are mathematically redundant (BN
subtracts the per-channel mean, so their gradient is zero up to rounding); they
are kept only to match the published model.

Any input size works: the input is padded on the bottom/right to a multiple of 4
(reflect, or replicate when the input is too small to reflect) and the output is
cropped back to the input's H x W.

Pure model code: no file I/O, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dictconfig import DictConfig
from ..errors import UserError
from .base import Family, conv2d_flops

FINAL_ACTIVATIONS = ("none", "relu", "sigmoid", "softplus")


@dataclass
class SeedUNetConfig(DictConfig):
    in_channels: int = 1  # input planes (1 = one magnitude/log-magnitude spectrogram)
    out_channels: int = 1  # output planes (1 = one mask / spectrogram estimate)
    channels: tuple[int, ...] = (32, 64, 128)  # widths of the 3 encoder levels (last = bottleneck)
    final_activation: str = "none"  # applied after the 1x1 head; published recipe: "none"

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise UserError(
                f"seed U-Net: channels must be 3 positive widths, got {self.channels}; "
                "use e.g. [32, 64, 128]"
            )
        if max(self.channels) > 4096 or len(self.channels) > 8 or max(self.in_channels, self.out_channels) > 64:
            raise UserError("seed U-Net: at most 8 levels of at most 4096 channels, and at most 64 input/output planes")
        if self.in_channels < 1 or self.out_channels < 1:
            raise UserError("seed U-Net: in_channels and out_channels must be >= 1")
        if self.final_activation not in FINAL_ACTIVATIONS:
            raise UserError(
                f"seed U-Net: unknown final_activation {self.final_activation!r}; "
                f"choose one of {', '.join(FINAL_ACTIVATIONS)}"
            )


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """2 x (Conv2d 3x3 pad 1 + BatchNorm2d + ReLU): ``Tensor[B, cin, H, W] -> Tensor[B, cout, H, W]``."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def final_activation(name: str) -> nn.Module:
    """The module for ``SeedUNetConfig.final_activation``."""
    return {
        "none": nn.Identity,
        "relu": nn.ReLU,
        "sigmoid": nn.Sigmoid,
        "softplus": nn.Softplus,
    }[name]()


MULTIPLE = 4  # two 2x2 pools: H and W must be multiples of 4 inside the network


def pad_to_multiple(x: Tensor, multiple: int = MULTIPLE) -> Tensor:
    """Pad ``Tensor[B, C, H, W]`` on the bottom/right so H and W are multiples of ``multiple``.

    Reflect padding when the input is large enough, else replicate (reflect needs pad < size).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def unet_forward(
    x: Tensor,
    enc: list[nn.Module] | nn.ModuleList,
    pool: nn.Module,
    ups: list[nn.Module] | nn.ModuleList,
    decs: list[nn.Module] | nn.ModuleList,
    head: nn.Module,
    act: nn.Module,
) -> Tensor:
    """Shared 3-level U-Net forward (also used by the buggy reproduction).

    ``x: Tensor[B, Cin, H, W]`` (any H, W) -> ``Tensor[B, Cout, H, W]``.
    ``ups``/``decs`` are ordered deepest first: ``ups[0]`` maps level 3 -> level 2.
    """
    if x.dim() != 4:
        raise ValueError(f"expected Tensor[B, C, H, W], got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    y = pad_to_multiple(x)
    e1 = enc[0](y)  # [B, c1, H', W']
    e2 = enc[1](pool(e1))  # [B, c2, H'/2, W'/2]
    e3 = enc[2](pool(e2))  # [B, c3, H'/4, W'/4]
    d2 = decs[0](torch.cat([ups[0](e3), e2], dim=1))  # [B, c2, H'/2, W'/2]
    d1 = decs[1](torch.cat([ups[1](d2), e1], dim=1))  # [B, c1, H', W']
    out = act(head(d1))  # [B, Cout, H', W']
    return out[..., :h, :w]


class SeedUNet(Family):
    """The seed U-Net (see module docstring for the layer stack).

    ``forward(x: Tensor[B, in_channels, H, W]) -> Tensor[B, out_channels, H, W]`` for any H, W >= 1.
    """

    kind = "seed"
    levels = 3

    @property
    def context(self) -> int:
        """Receptive field in pixels (44: see :func:`unet_receptive_field`)."""
        return unet_receptive_field(self.levels)

    def receptive_field(self, centred: bool = False) -> int:
        return unet_receptive_field(self.levels, centred)

    def flops(self) -> int:
        return conv2d_flops(self, (self.config.in_channels, 112, 112))

    def summary(self) -> str:
        return f"{self.levels}-level U-Net, channels {list(self.config.channels)}"

    def __init__(self, config: SeedUNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SeedUNetConfig()
        c1, c2, c3 = cfg.channels
        self.enc = nn.ModuleList(
            [conv_block(cfg.in_channels, c1), conv_block(c1, c2), conv_block(c2, c3)]
        )
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(
            [nn.ConvTranspose2d(c3, c2, 2, stride=2), nn.ConvTranspose2d(c2, c1, 2, stride=2)]
        )
        self.decs = nn.ModuleList([conv_block(2 * c2, c2), conv_block(2 * c1, c1)])
        self.head = nn.Conv2d(c1, cfg.out_channels, 1)
        self.act = final_activation(cfg.final_activation)

    def forward(self, x: Tensor) -> Tensor:
        """``Tensor[B, Cin, H, W] -> Tensor[B, Cout, H, W]``."""
        return unet_forward(x, self.enc, self.pool, self.ups, self.decs, self.head, self.act)


def unet_receptive_field(levels: int, centred: bool = False) -> int:
    """Analytic receptive field (pixels along H or W) of a ``levels``-level U-Net of 3×3 conv pairs.

    ``centred=False``: exact width of an output pixel's field (44 for the seed U-Net, the same for all
    pooling phases). ``centred=True``: smallest odd centred window containing it for every phase (47).
    See the comment block above :func:`_seed_field` for the derivation.
    """
    period = 2 ** (levels - 1)  # pooling grid: the field depends on x mod period
    widths, reach = set(), 0
    base = 1024  # far from any boundary, a multiple of the period
    for phase in range(period):
        a, b = _seed_field(base + phase, levels)
        widths.add(b - a + 1)
        reach = max(reach, base + phase - a, b - base - phase)
    return 2 * reach + 1 if centred else max(widths)


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

