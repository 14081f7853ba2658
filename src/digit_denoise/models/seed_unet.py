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

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError

FINAL_ACTIVATIONS = ("none", "relu", "sigmoid", "softplus")


@dataclass
class SeedUNetConfig:
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
        if self.in_channels < 1 or self.out_channels < 1:
            raise UserError("seed U-Net: in_channels and out_channels must be >= 1")
        if self.final_activation not in FINAL_ACTIVATIONS:
            raise UserError(
                f"seed U-Net: unknown final_activation {self.final_activation!r}; "
                f"choose one of {', '.join(FINAL_ACTIVATIONS)}"
            )

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "SeedUNetConfig":
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`UserError`."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(
                f"{cls.__name__}: unknown config key(s) {unknown}; known keys: {sorted(known)}"
            )
        return cls(**d)


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


class SeedUNet(nn.Module):
    """The seed U-Net (see module docstring for the layer stack).

    ``forward(x: Tensor[B, in_channels, H, W]) -> Tensor[B, out_channels, H, W]`` for any H, W >= 1.
    """

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


if __name__ == "__main__":  # self-check: python -m digit_denoise.models.seed_unet
    from . import describe

    print(describe("seed"))
