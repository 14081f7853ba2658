"""UL-UNAS: ultra-lightweight U-Net found by architecture search (Rong et al., 2025), waveform in/out.

Written from the paper and the tensor layout of the authors' published DNS3 checkpoint
(``../shared/pretrained/ul-unas-dns3.safetensors``, MIT): every parameter name and shape matches it, so
those weights load with ``strict=True`` and reproduce the reference outputs (parity fixtures).
It reuses GTCRN's ERB band merge and grouped dual-path RNN (:mod:`.gtcrn`); its convolution blocks are
new: the three cells of the search space, each with an affine PReLU and time-frequency attention.

::

    wave[B, T] ─STFT (512/256, Hann, centred)─► X[B, 257, F] complex
      log10 |X| [B, 1, F, 257] ─ERB band merge (65 low bins kept, 192 → 64 ERB bands)─► [B, 1, F, 129]
      encoder (channels, kernel time×freq, frequency stride):
        XConv  1 → 12, 3×3, /2  ─► [B, 12, F, 65]
        XMB   12 → 24, 2×3, /2  ─► [B, 24, F, 33]
        XDWS  24 → 24, 2×3      ─► [B, 24, F, 33]
        XMB   24 → 32, 1×5      ─► [B, 32, F, 33]
        XDWS  32 → 16, 1×5      ─► [B, 16, F, 33]
      2 × grouped dual-path RNN (bidirectional across the 33 bands, unidirectional across time frames)
      decoder: the mirror (transposed depthwise convolutions), the encoder outputs added as skips:
        XDWS 16 → 32, XMB 32 → 24, XDWS 24 → 24, XMB 24 → 12 (×2), XConv 12 → 1 (×2)  ─► [B, 1, F, 129]
      sigmoid ─ERB band split─► real mask [B, 1, F, 257];  Y = M · X  ─iSTFT─► wave[B, T]

    cells (every convolution causal in time: (kernel − 1) frames of the past, none of the future)
      XConv:  conv → BN → affine PReLU → TFA [→ channel shuffle when grouped]
      XDWS:   grouped 1×1 conv → BN → affine PReLU [→ shuffle];  depthwise conv → BN → affine PReLU → TFA
      XMB:    grouped 1×1 conv → BN → affine PReLU [→ shuffle];  depthwise conv → BN → affine PReLU;
              grouped 1×1 conv → BN → TFA  (+ input when the shapes agree)  [→ shuffle]
      affine PReLU:  y = a[c, f] · x + b[c, f] + PReLU(x)  (a scale and offset per channel and band)
      TFA (time-frequency attention): a GRU over time on each channel's band-mean energy gates the
           channels; a bidirectional GRU across frequency (bands in groups of 4) on the channel-mean
           energy gates the bands; y = x · σ(time gate) · σ(frequency gate)

Causal as published (streaming). The reference's output ends at the last full hop: the last
``T mod 256`` samples come back as zeros (kept here, for exact parity with the published model).

Pure model code: no file I/O, no printing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import Family
from .gtcrn import DPGRNN, ERB, PublishedSTFTConfig, published_stft


@dataclass
class ULUNASConfig(PublishedSTFTConfig):
    """16 kHz, 512/256 STFT: the published model's, checked by :class:`.gtcrn.PublishedSTFTConfig`."""


# the searched architecture (the published model): one row per encoder cell, input side first;
# cell, output channels, kernel (time, frequency), frequency stride, groups of the 1×1 convolutions,
# frequency width at the cell's output
CELLS = (
    ("xconv", 12, (3, 3), 2, 1, 65),
    ("xmb", 24, (2, 3), 2, 2, 33),
    ("xdws", 24, (2, 3), 1, 2, 33),
    ("xmb", 32, (1, 5), 1, 2, 33),
    ("xdws", 16, (1, 5), 1, 2, 33),
)
LOW_BINS, ERB_BANDS = 65, 64  # ERB band merge: 257 bins → 65 + 64 = 129
MERGED = LOW_BINS + ERB_BANDS


# ---------------------------------------------------------------------------------------- blocks
class AffinePReLU(nn.Module):
    """``y = a ⊙ x + b + PReLU(x)`` with ``a, b`` per (channel, band) and one PReLU slope per channel."""

    def __init__(self, c: int, width: int, slope: float = 0.25):
        super().__init__()
        self.affine_weight = nn.Parameter(torch.ones(c, width))
        self.affine_bias = nn.Parameter(torch.zeros(c, width))
        self.slope_weight = nn.Parameter(torch.full((c,), slope))

    def forward(self, x: Tensor) -> Tensor:  # [B, C, T, W]
        scaled = self.affine_weight[:, None] * x + self.affine_bias[:, None]
        return scaled + torch.where(x > 0, x, self.slope_weight[:, None, None] * x)


class BandAttention(nn.Module):
    """Frequency half of TFA: ``[B, C, T, W] → [B, T, W]`` logits from the channel-mean energy, a
    bidirectional GRU running across the bands in groups of ``group`` (zero-padded to a multiple)."""

    def __init__(self, width: int, group: int = 4):
        super().__init__()
        self.group = group
        self.steps = -(-width // group)  # ⌈W / group⌉ GRU steps
        self.gru = nn.GRU(group, group, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * group, group)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, w = x.shape
        energy = x.pow(2).mean(1)  # [B, T, W]
        energy = nn.functional.pad(energy, (0, self.steps * self.group - w))
        seq = energy.reshape(b * t, self.steps, self.group)  # [B·T, steps, group]
        logits = self.fc(self.gru(seq)[0])  # [B·T, steps, group]
        return logits.reshape(b, t, self.steps * self.group)[..., :w]


class TFA(nn.Module):
    """Causal time-frequency attention: ``x · σ(time gate)[B, C, T, 1] · σ(band gate)[B, 1, T, W]``."""

    def __init__(self, c: int, width: int):
        super().__init__()
        self.ta_gru = nn.GRU(c, 2 * c, 1, batch_first=True)
        self.ta_fc = nn.Linear(2 * c, c)
        self.fa = BandAttention(width)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, T, W]
        energy = x.pow(2).mean(-1).transpose(1, 2)  # [B, T, C]
        time_gate = torch.sigmoid(self.ta_fc(self.ta_gru(energy)[0])).transpose(1, 2)  # [B, C, T]
        band_gate = torch.sigmoid(self.fa(x))  # [B, T, W]
        return time_gate[..., None] * x * band_gate[:, None]


class ChannelShuffle(nn.Module):
    """Interleave the two channel halves: ``[a0 … an, b0 … bn] → [a0 b0 a1 b1 …]``."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, w = x.shape
        return x.reshape(b, 2, c // 2, t, w).transpose(1, 2).reshape(b, c, t, w)


class PastPad(nn.Module):
    """Zero frames in front of the time axis of ``[B, C, T, W]`` (what makes the convolutions causal)."""

    def __init__(self, frames: int):
        super().__init__()
        self.frames = frames

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.pad(x, (0, 0, self.frames, 0)) if self.frames else x


def causal_conv(cin: int, cout: int, kernel: tuple[int, int], stride: int, groups: int, deconv: bool) -> nn.Module:
    """The (transposed) convolution that follows a :class:`PastPad` of ``kernel[0] − 1`` frames: T frames in,
    T out. Frequency: stride ``stride`` with centred padding (down-sampling, or up-sampling when ``deconv``)."""
    kt, kf = kernel
    if deconv:  # the transposed conv's time padding crops what the front padding added
        return nn.ConvTranspose2d(cin, cout, kernel, stride=(1, stride), padding=(kt - 1, kf // 2), groups=groups)
    return nn.Conv2d(cin, cout, kernel, stride=(1, stride), padding=(0, kf // 2), groups=groups)


def input_width(width: int, stride: int, deconv: bool) -> int:
    """Frequency width entering a cell whose (transposed) conv gives ``width`` at frequency stride ``stride``."""
    if stride == 1:
        return width
    return width // 2 + 1 if deconv else 2 * width - 1


class XConv(nn.Module):
    """Plain convolution cell (the first encoder and the last decoder cell)."""

    def __init__(self, cin: int, cout: int, width: int, kernel, stride: int, groups: int,
                 deconv: bool = False, last: bool = False):
        super().__init__()
        self.ops = nn.Sequential(
            PastPad(kernel[0] - 1),
            causal_conv(cin, cout, kernel, stride, groups, deconv),
            nn.BatchNorm2d(cout),
            nn.Identity() if last else AffinePReLU(cout, width),
            TFA(cout, width),
            ChannelShuffle() if groups == 2 and not last else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        return self.ops(x)


def pointwise(cin: int, cout: int, width: int, stride: int, groups: int, deconv: bool) -> nn.Sequential:
    """Grouped 1×1 conv → BN → affine PReLU [→ channel shuffle]: the first stage of XDWS and XMB."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 1, groups=groups),
        nn.BatchNorm2d(cout),
        AffinePReLU(cout, input_width(width, stride, deconv)),
        ChannelShuffle() if groups == 2 else nn.Identity())


class XDWS(nn.Module):
    """Depthwise-separable cell: grouped 1×1 conv, then a depthwise conv carrying the frequency stride."""

    def __init__(self, cin: int, cout: int, width: int, kernel, stride: int, groups: int,
                 deconv: bool = False, last: bool = False):
        super().__init__()
        self.pconv = pointwise(cin, cout, width, stride, groups, deconv)
        self.dconv = nn.Sequential(
            PastPad(kernel[0] - 1),
            causal_conv(cout, cout, kernel, stride, cout, deconv),
            nn.BatchNorm2d(cout),
            nn.Identity() if last else AffinePReLU(cout, width),
            TFA(cout, width))

    def forward(self, x: Tensor) -> Tensor:
        return self.dconv(self.pconv(x))


class XMB(nn.Module):
    """Inverted-bottleneck cell: 1×1 expand, depthwise conv, 1×1 project with TFA, residual when shapes agree."""

    def __init__(self, cin: int, cout: int, width: int, kernel, stride: int, groups: int,
                 deconv: bool = False, last: bool = False):
        super().__init__()
        self.pconv1 = pointwise(cin, cout, width, stride, groups, deconv)
        self.dconv = nn.Sequential(
            PastPad(kernel[0] - 1),
            causal_conv(cout, cout, kernel, stride, cout, deconv),
            nn.BatchNorm2d(cout),
            AffinePReLU(cout, width))
        self.pconv2 = nn.Sequential(
            nn.Conv2d(cout, cout, 1, groups=groups),
            nn.BatchNorm2d(cout),
            TFA(cout, width))
        self.residual = cin == cout and stride == 1
        self.shuffle = ChannelShuffle() if groups == 2 and not last else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.pconv2(self.dconv(self.pconv1(x)))
        return self.shuffle(h + x if self.residual else h)


CELL_TYPES = {"xconv": XConv, "xdws": XDWS, "xmb": XMB}


# ----------------------------------------------------------------------------------------- model
class ULUNAS(Family):
    """``forward(wave: Tensor[B, T]) -> Tensor[B, T]`` at 16 kHz (the STFT is inside the model)."""

    kind = "wave"

    def __init__(self, config: ULUNASConfig | None = None):
        super().__init__()
        self.config = cfg = config or ULUNASConfig()
        self.erb = ERB(LOW_BINS, ERB_BANDS, cfg.n_fft)
        self.encoder = nn.Module()
        cells, cin = [], 1
        for kind, cout, kernel, stride, groups, width in CELLS:
            cells.append(CELL_TYPES[kind](cin, cout, width, kernel, stride, groups))
            cin = cout
        self.encoder.en_convs = nn.ModuleList(cells)
        last_c, last_w = CELLS[-1][1], CELLS[-1][5]
        self.dpgrnn = nn.Sequential(DPGRNN(last_c, last_w), DPGRNN(last_c, last_w))
        # decoder: cell i of the encoder, mirrored (its kernel, stride and groups), maps back to cell i−1's
        # channels and width; the first cell's mirror ends at one channel, the merged 129 bands
        cells = []
        for i in range(len(CELLS) - 1, -1, -1):
            kind, cin, kernel, stride, groups, _ = CELLS[i]
            cout, width = (CELLS[i - 1][1], CELLS[i - 1][5]) if i else (1, MERGED)
            cells.append(CELL_TYPES[kind](cin, cout, width, kernel, stride, groups, deconv=True, last=i == 0))
        self.decoder = nn.Module()
        self.decoder.de_convs = nn.ModuleList(cells)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)

    def flops(self) -> int:
        return flops_per_second(self)

    def summary(self) -> str:
        return "causal UL-UNAS, ERB-band real mask, 512/256 STFT"

    @property
    def context_frames(self) -> int:
        return self.context_samples // self.config.hop

    @property
    def context_samples(self) -> int:
        """Samples of context each side used when a long file is processed in windows. The time RNNs
        (dual-path RNN and every attention gate) see the whole window, so windowed output only
        approximates whole-file output: 2 s of context warm them up, as for GTCRN."""
        return 2 * self.config.sample_rate

    def mask(self, spec: Tensor) -> Tensor:
        """``[B, 2, F, 257]`` noisy STFT (real, imag) → the real mask ``[B, 1, F, 257]`` in (0, 1)."""
        feat = torch.log10(torch.linalg.vector_norm(spec, dim=1, keepdim=True).clamp(min=1e-12))
        feat = self.erb.merge(feat)  # [B, 1, F, 129]
        skips = []
        for cell in self.encoder.en_convs:
            feat = cell(feat)
            skips.append(feat)
        feat = self.dpgrnn(feat)  # [B, 16, F, 33]
        for cell, skip in zip(self.decoder.de_convs, reversed(skips)):
            feat = cell(feat + skip)
        return self.erb.split(torch.sigmoid(feat))

    def forward(self, wave: Tensor) -> Tensor:
        cfg, t = self.config, wave.shape[-1]
        _, spec = published_stft(wave, cfg, self.window)
        spec = torch.view_as_real(spec).permute(0, 3, 2, 1)  # [B, 2, F, 257]
        enhanced = (spec * self.mask(spec)).permute(0, 3, 2, 1)  # [B, 257, F, 2]
        # as the reference: up to the last full hop ((F − 1) · hop samples), then zeros
        out = torch.istft(torch.view_as_complex(enhanced.contiguous()), cfg.n_fft, cfg.hop, cfg.n_fft,
                          self.window, center=True)
        return nn.functional.pad(out, (0, max(0, t - out.shape[-1])))[:, :t]


def flops_per_second(model: ULUNAS) -> int:
    """Approximate FLOPs per second of audio: 2 × multiply-adds of the convolutions, GRUs and linear
    layers (ERB merge and split included), counted with forward hooks on one second of silence."""
    m = copy.deepcopy(model).eval()
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        x = inp[0]
        if isinstance(mod, nn.ConvTranspose2d):
            macs += x.numel() * mod.weight[0].numel()  # each input value meets Cout/groups · kh · kw weights
        elif isinstance(mod, nn.Conv2d):
            macs += out.numel() * mod.weight[0].numel()
        elif isinstance(mod, nn.GRU):
            per_step = sum(p.numel() for n, p in mod.named_parameters() if n.startswith("weight"))
            macs += x.shape[0] * x.shape[1] * per_step  # batch_first: sequences × steps
        elif isinstance(mod, nn.Linear):
            macs += x.numel() // mod.in_features * mod.weight.numel()

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.GRU, nn.Linear)
    handles = [mod.register_forward_hook(hook) for mod in m.modules() if isinstance(mod, kinds)]
    try:
        sr = model.config.sample_rate
        p = next(m.parameters())
        with torch.no_grad():
            m(torch.zeros(1, sr, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
    frames = sr // model.config.hop + 1  # centred STFT frames of one second
    return int(2 * macs * (sr / model.config.hop) / frames)
