"""DELIBERATELY BROKEN reproduction of the published seed U-Net bug.

Use it ONLY for side-by-side comparison with :class:`~.seed_unet.SeedUNet`; never
as a real denoiser.

The published code kept the encoder / up-sampling / decoder blocks in plain Python
lists instead of ``nn.ModuleList``. PyTorch therefore never registers them, so:

* ``.parameters()`` / ``state_dict()`` see only the 1x1 head (33 parameters for
  the default config): the optimizer trains the head alone, and the encoder and
  decoder keep their random initial weights forever;
* ``.eval()`` / ``.train()`` never reach the hidden blocks, so their BatchNorm
  layers stay in training mode forever: they normalise with the statistics of
  the current batch, and an output depends on the other items of its batch;
* ``.to()`` / ``.cuda()`` would not move them either (see below).

Two deliberate deviations make the reproduction usable for comparisons, and
change nothing about the bug itself:

1. Deterministic hidden layers. A checkpoint holds only the 33 head parameters,
   so the list-held layers are built under ``torch.random.fork_rng()`` with
   ``torch.manual_seed(config.hidden_seed)``: a fresh model with the same config
   has the same hidden weights, and save/load reproduces outputs (for the same
   batch). The hidden draws neither consume nor depend on the global RNG; the
   registered head is initialised from the global RNG like any module.
2. ``_apply`` is overridden so ``.to(device)`` / ``.cuda()`` / ``.double()`` also
   move/cast the hidden modules (the original lacked this convenience and simply
   failed on GPU). ``.eval()`` / ``.train()`` do NOT go through ``_apply`` and are
   left broken, as published. The hidden running statistics are updated on every
   forward (BN in training mode) but never affect outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import UserError
from .base import Family, conv2d_flops
from .seed_unet import SeedUNetConfig, conv_block, final_activation, unet_forward, unet_receptive_field


@dataclass
class SeedBuggyConfig(SeedUNetConfig):
    # in_channels, out_channels, channels, final_activation: as in SeedUNetConfig.
    hidden_seed: int = 0  # torch seed for the unregistered (never trained, never saved) layers

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.hidden_seed, int) or isinstance(self.hidden_seed, bool):
            raise UserError(f"seed-buggy: hidden_seed must be an integer, got {self.hidden_seed!r}")


class SeedBuggyUNet(Family):
    """Published seed U-Net with its list-held (unregistered) blocks — deliberately broken.

    ``forward(x: Tensor[B, in_channels, H, W]) -> Tensor[B, out_channels, H, W]``; the
    output of an item depends on the whole batch (hidden BatchNorm stays in training mode).
    """

    kind = "seed"

    @property
    def context(self) -> int:
        return unet_receptive_field(3)

    def receptive_field(self, centred: bool = False) -> int:
        return unet_receptive_field(3, centred)

    def flops(self) -> int:
        return conv2d_flops(self, (self.config.in_channels, 112, 112))

    def summary(self) -> str:
        return "the published bug: encoder/decoder in plain lists, only the 1×1 head trains"

    def __init__(self, config: SeedBuggyConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SeedBuggyConfig()
        c1, c2, c3 = cfg.channels
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.hidden_seed)
            # THE BUG: plain lists, not nn.ModuleList -> invisible to nn.Module machinery.
            self.enc = [conv_block(cfg.in_channels, c1), conv_block(c1, c2), conv_block(c2, c3)]
            self.ups = [
                nn.ConvTranspose2d(c3, c2, 2, stride=2),
                nn.ConvTranspose2d(c2, c1, 2, stride=2),
            ]
            self.decs = [conv_block(2 * c2, c2), conv_block(2 * c1, c1)]
        # Registered (parameter-free) pool and the head: the only trained part.
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Conv2d(c1, cfg.out_channels, 1)
        self.act = final_activation(cfg.final_activation)

    def hidden_modules(self) -> list[nn.Module]:
        """The unregistered list-held blocks (for inspection, FLOP counting, tests)."""
        return [*self.enc, *self.ups, *self.decs]

    def _apply(self, fn, recurse: bool = True):  # convenience the original lacked, see docstring
        super()._apply(fn, recurse)
        for m in self.hidden_modules():
            m._apply(fn, recurse)
        return self

    def forward(self, x: Tensor) -> Tensor:
        """``Tensor[B, Cin, H, W] -> Tensor[B, Cout, H, W]`` (batch-dependent, see class doc)."""
        return unet_forward(x, self.enc, self.pool, self.ups, self.decs, self.head, self.act)
