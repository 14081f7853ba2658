"""TasNet: a small time-domain denoiser (Conv-TasNet-style), waveform in, waveform out.

::

    wave[B, T] ──learned encoder: conv1d 1→N, kernel L, stride hop, ReLU──► W[B, N, F]   (F ≈ T / hop)
               ChannelNorm ─► 1×1 N→Bn ─► R × separable block ─► PReLU ─► 1×1 Bn→N ─► sigmoid ─► mask M
    Y = M ⊙ W ──learned decoder: conv_transpose1d N→1, kernel L, stride hop (overlap-add)──► wave[B, T]

    separable block (dilation d):  h + 1×1 H→Bn(PReLU(norm(depthwise k, dil d(PReLU(norm(1×1 Bn→H(h)))))))

No phase to estimate and no fixed transform: the encoder/decoder pair is learned, with a 4 ms
frame (L = 64 samples, hop 32 at 16 kHz) instead of MaskNet's 32 ms STFT (Conv-TasNet's 2 ms frame
costs twice the frames; 4 ms keeps CPU training affordable). ``ChannelNorm``
normalises each frame over its channels (not over the whole clip as Conv-TasNet's gLN does), so
the receptive field is finite (``context_samples``) and chunked inference equals whole-file
inference away from chunk edges; it also makes the mask nearly independent of the input gain.
Plain convolutions only: exports to ONNX.

Pure model code: no file I/O, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dictconfig import DictConfig
from ..errors import UserError
from .base import Family, check_bounds


@dataclass
class TasNetConfig(DictConfig):
    sample_rate: int = 16000  # the rate the model runs at (audio is resampled to it)
    kernel: int = 64  # encoder/decoder frame length L, samples (4 ms at 16 kHz)
    hop: int = 32  # encoder stride, samples (L / 2)
    filters: int = 256  # encoder basis size N
    bottleneck: int = 64  # channels between blocks Bn
    hidden: int = 128  # channels inside a block H
    block_kernel: int = 3  # depthwise temporal kernel (odd)
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 1, 2, 4, 8, 16, 32, 64)

    def __post_init__(self):
        self.dilations = tuple(int(d) for d in self.dilations)
        if self.kernel % self.hop or self.kernel // self.hop < 1:
            raise ValueError(f"kernel {self.kernel} must be a multiple of hop {self.hop}")
        if self.block_kernel % 2 != 1:
            raise ValueError(f"block_kernel {self.block_kernel}: must be odd")
        if min(self.filters, self.bottleneck, self.hidden, self.hop) < 1 or not self.dilations \
                or min(self.dilations) < 1:
            raise ValueError("filters, bottleneck, hidden, hop and dilations must be positive")
        check_bounds(self, sample_rate=(4000, 384000), kernel=(1, 4096), hop=(1, 4096), filters=(1, 8192),
                     bottleneck=(1, 8192), hidden=(1, 8192), block_kernel=(1, 63), blocks=(len(self.dilations), 256),
                     dilation=(max(self.dilations), 65536))


class ChannelNorm(nn.Module):
    """Layer norm over channels, per frame: ``Tensor[B, C, F] -> Tensor[B, C, F]``."""

    def __init__(self, c: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, c, 1))
        self.bias = nn.Parameter(torch.zeros(1, c, 1))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).square().mean(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class SeparableBlock(nn.Module):
    def __init__(self, b: int, h: int, k: int, d: int):
        super().__init__()
        self.up = nn.Conv1d(b, h, 1)
        self.act1, self.norm1 = nn.PReLU(), ChannelNorm(h)
        self.depth = nn.Conv1d(h, h, k, dilation=d, padding=d * (k - 1) // 2, groups=h)
        self.act2, self.norm2 = nn.PReLU(), ChannelNorm(h)
        self.down = nn.Conv1d(h, b, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(self.act1(self.up(x)))
        h = self.norm2(self.act2(self.depth(h)))
        return x + self.down(h)


class TasNet(Family):
    """``forward(wave: Tensor[B, T]) -> Tensor[B, T]`` at ``config.sample_rate``."""

    kind = "wave"

    def __init__(self, config: TasNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or TasNetConfig()
        self.encoder = nn.Conv1d(1, cfg.filters, cfg.kernel, stride=cfg.hop, bias=False)
        self.norm = ChannelNorm(cfg.filters)
        self.inp = nn.Conv1d(cfg.filters, cfg.bottleneck, 1)
        self.blocks = nn.Sequential(*(SeparableBlock(cfg.bottleneck, cfg.hidden, cfg.block_kernel, d)
                                      for d in cfg.dilations))
        self.out_act = nn.PReLU()
        self.out = nn.Conv1d(cfg.bottleneck, cfg.filters, 1)
        self.decoder = nn.ConvTranspose1d(cfg.filters, 1, cfg.kernel, stride=cfg.hop, bias=False)

    def flops(self) -> int:
        return flops_per_second(self)

    def summary(self) -> str:
        c = self.config
        return f"time domain, {c.filters} filters × {len(c.dilations)} blocks"

    @property
    def context_frames(self) -> int:
        """Encoder frames of context each side that one output frame sees."""
        return sum(d * (self.config.block_kernel - 1) // 2 for d in self.config.dilations)

    @property
    def context_samples(self) -> int:
        """Samples each side of an output sample that can influence it."""
        return (self.context_frames + 1) * self.config.hop + self.config.kernel

    def forward(self, wave: Tensor) -> Tensor:
        if wave.dim() != 2:
            raise UserError(f"TasNet expects Tensor[batch, samples], got shape {tuple(wave.shape)}")
        cfg = self.config
        t = wave.shape[-1]
        left = cfg.kernel - cfg.hop  # every sample lies under kernel/hop frames
        x = F.pad(wave[:, None, :], (left, left + (-t) % cfg.hop))
        w = F.relu(self.encoder(x))  # [B, N, F]
        h = self.blocks(self.inp(self.norm(w)))  # [B, Bn, F]
        mask = torch.sigmoid(self.out(self.out_act(h)))  # [B, N, F]
        y = self.decoder(w * mask)[:, 0]  # [B, (F - 1) * hop + L]
        return y[:, left:left + t]


def flops_per_second(model: TasNet) -> int:
    """FLOPs (2 × multiply-adds) of the convolutions for one second of audio."""
    cfg = model.config
    frames = cfg.sample_rate / cfg.hop
    n, b, h = cfg.filters, cfg.bottleneck, cfg.hidden
    macs = 2 * n * cfg.kernel  # encoder + decoder
    macs += n * b + b * n  # in / out 1×1
    macs += len(cfg.dilations) * (b * h + h * cfg.block_kernel + h * b)
    return int(2 * macs * frames)


