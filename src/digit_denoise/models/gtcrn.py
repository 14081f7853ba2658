"""GTCRN: grouped temporal convolutional recurrent network (Rong et al., ICASSP 2024), waveform in/out.

Written from the paper and the tensor layout of the authors' published DNS3 checkpoint
(``../shared/pretrained/gtcrn-dns3.safetensors``, MIT): every parameter name and shape matches it, so
those weights load with ``strict=True`` (``load_pretrained``) and reproduce the reference outputs.

::

    wave[B, T] ─STFT (512/256, √Hann, centred)─► X[B, 257, F] complex
      features (|X|, Re, Im)[B, 3, F, 257] ─ERB band merge (65 low bins kept, 192 → 64 ERB bands)─► [B, 3, F, 129]
      ─SFE (each band with its two neighbours)─► [B, 9, F, 129]
      encoder: conv(1×5, /2 in frequency) → grouped conv(1×5, /2) → 3 GT-conv blocks (dilation 1, 2, 5 in time)
               ─► [B, 16, F, 33]
      2 × grouped dual-path RNN (bidirectional across the 33 bands, unidirectional across time frames)
      decoder: the mirror (transposed convolutions), with the encoder outputs added as skips ─► [B, 2, F, 129]
      ERB band split ─► complex ratio mask [B, 2, F, 257];  Y = M ⊙ X  ─iSTFT─► wave[B, T]

    GT-conv block (input C):  split channels in halves x1, x2;  x1 → SFE → 1×1 conv → BN → PReLU → causal
    depthwise 3×3 (dilated in time) → BN → PReLU → 1×1 conv → BN → temporal recurrent attention (a GRU
    over each channel's per-frame energy gates the channels); output = channel shuffle of (x1', x2).

Causal as published (streaming). ``causal=False`` makes the time RNN of both dual-path blocks
bidirectional: the backward direction starts as a copy of the forward weights and the output layer
starts with zeros for it (:func:`noncausal_state`), so a non-causal model initialised from the
published weights gives exactly the causal outputs before fine-tuning.

Pure model code: no file I/O, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..dictconfig import DictConfig
from .base import Family


@dataclass
class PublishedSTFTConfig(DictConfig):
    """The STFT the published DNS3 models (GTCRN, UL-UNAS) were trained with; nothing else fits their weights."""

    sample_rate: int = 16000  # the rate the model runs at (fixed by the published weights)
    n_fft: int = 512  # STFT frame (32 ms)
    hop: int = 256  # STFT hop (16 ms)

    def __post_init__(self):
        name = type(self).__name__.removesuffix("Config")
        if self.sample_rate != 16000:
            raise ValueError(f"{name} runs at 16000 Hz (its ERB bands are fixed by the published weights)")
        if (self.n_fft, self.hop) != (512, 256):
            raise ValueError(f"{name} is built for n_fft 512 and hop 256 (its ERB bands and widths depend on them)")


@dataclass
class GTCRNConfig(PublishedSTFTConfig):
    causal: bool = True  # False: bidirectional time RNNs (offline use; see the module docstring)


# ---------------------------------------------------------------------------------------- blocks
def erb_filterbank(low_bins: int = 65, bands: int = 64, n_fft: int = 512, sr: int = 16000) -> Tensor:
    """``[bands, n_fft/2 + 1 - low_bins]`` triangular ERB filters above the first ``low_bins`` bins."""
    def hz2erb(f):
        return 21.4 * np.log10(0.00437 * f + 1)

    def erb2hz(e):
        return (10 ** (e / 21.4) - 1) / 0.00437

    points = np.linspace(hz2erb(low_bins / n_fft * sr), hz2erb(sr / 2), bands)
    bins = np.round(erb2hz(points) / sr * n_fft).astype(int)
    fb = np.zeros((bands, n_fft // 2 + 1), np.float32)

    def rising(lo, hi):
        return (np.arange(lo, hi) - lo + 1e-12) / (hi - lo + 1e-12)

    def falling(lo, hi):
        return (hi - np.arange(lo, hi) + 1e-12) / (hi - lo + 1e-12)

    fb[0, bins[0]:bins[1]] = falling(bins[0], bins[1])
    for i in range(1, bands - 1):  # triangles: up from the previous edge, down to the next
        fb[i, bins[i - 1]:bins[i]] = rising(bins[i - 1], bins[i])
        fb[i, bins[i]:bins[i + 1]] = falling(bins[i], bins[i + 1])
    fb[-1, bins[-2]:bins[-1] + 1] = 1 - fb[-2, bins[-2]:bins[-1] + 1]
    return torch.from_numpy(np.abs(fb[:, low_bins:]))


class ERB(nn.Module):
    """Band merge ``[..., 257] → [..., 129]`` and split back; the 65 lowest bins pass unchanged."""

    def __init__(self, low_bins: int = 65, bands: int = 64, n_fft: int = 512):
        super().__init__()
        self.low_bins = low_bins
        fb = erb_filterbank(low_bins, bands, n_fft)
        self.erb_fc = nn.Linear(fb.shape[1], bands, bias=False)
        self.ierb_fc = nn.Linear(bands, fb.shape[1], bias=False)
        self.erb_fc.weight = nn.Parameter(fb, requires_grad=False)
        self.ierb_fc.weight = nn.Parameter(fb.T.contiguous(), requires_grad=False)

    def merge(self, x: Tensor) -> Tensor:
        return torch.cat([x[..., :self.low_bins], self.erb_fc(x[..., self.low_bins:])], -1)

    def split(self, x: Tensor) -> Tensor:
        return torch.cat([x[..., :self.low_bins], self.ierb_fc(x[..., self.low_bins:])], -1)


def subband_features(x: Tensor, k: int = 3) -> Tensor:
    """SFE: ``[B, C, T, F] → [B, C·k, T, F]``, each band stacked with its (k−1)/2 neighbours each side."""
    b, c, t, f = x.shape
    pad = nn.functional.pad(x, ((k - 1) // 2, (k - 1) // 2))
    return pad.unfold(-1, k, 1).permute(0, 1, 4, 2, 3).reshape(b, c * k, t, f)


class TRA(nn.Module):
    """Temporal recurrent attention: a GRU over each frame's channel energies gates the channels."""

    def __init__(self, c: int):
        super().__init__()
        self.att_gru = nn.GRU(c, 2 * c, 1, batch_first=True)
        self.att_fc = nn.Linear(2 * c, c)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, T, F]
        energy = x.pow(2).mean(-1).transpose(1, 2)  # [B, T, C]
        gate = torch.sigmoid(self.att_fc(self.att_gru(energy)[0])).transpose(1, 2)  # [B, C, T]
        return x * gate[..., None]


class ConvBlock(nn.Module):
    """(transposed) conv → BN → PReLU (Tanh for the last decoder block)."""

    def __init__(self, cin: int, cout: int, groups: int = 1, deconv: bool = False, last: bool = False):
        super().__init__()
        conv = nn.ConvTranspose2d if deconv else nn.Conv2d
        self.conv = conv(cin, cout, (1, 5), stride=(1, 2), padding=(0, 2), groups=groups)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.Tanh() if last else nn.PReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class GTConvBlock(nn.Module):
    """Grouped temporal convolution block (see the module docstring); ``[B, 16, T, 33]`` in and out."""

    def __init__(self, c: int, hidden: int, dilation: int, deconv: bool = False):
        super().__init__()
        conv = nn.ConvTranspose2d if deconv else nn.Conv2d
        self.pad = 2 * dilation  # causal: (kernel − 1) · dilation frames of the past
        self.point_conv1 = conv(c // 2 * 3, hidden, 1)
        self.point_bn1 = nn.BatchNorm2d(hidden)
        self.point_act = nn.PReLU()
        # a transposed conv with padding 2d crops what the front padding added: T frames in, T out
        self.depth_conv = conv(hidden, hidden, (3, 3), stride=1, padding=(2 * dilation if deconv else 0, 1),
                               dilation=(dilation, 1), groups=hidden)
        self.depth_bn = nn.BatchNorm2d(hidden)
        self.depth_act = nn.PReLU()
        self.point_conv2 = conv(hidden, c // 2, 1)
        self.point_bn2 = nn.BatchNorm2d(c // 2)
        self.tra = TRA(c // 2)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        h = self.point_act(self.point_bn1(self.point_conv1(subband_features(x1))))
        h = nn.functional.pad(h, (0, 0, self.pad, 0))
        h = self.depth_act(self.depth_bn(self.depth_conv(h)))
        h = self.tra(self.point_bn2(self.point_conv2(h)))
        b, c, t, f = h.shape
        return torch.stack([h, x2], dim=2).reshape(b, 2 * c, t, f)  # channel shuffle: h0, x0, h1, x1, ...


class GroupedGRU(nn.Module):
    """Two GRUs, each on one half of the features (``hidden`` is the total output width per direction)."""

    def __init__(self, size: int, hidden: int, bidirectional: bool):
        super().__init__()
        self.rnn1 = nn.GRU(size // 2, hidden // 2, 1, batch_first=True, bidirectional=bidirectional)
        self.rnn2 = nn.GRU(size // 2, hidden // 2, 1, batch_first=True, bidirectional=bidirectional)

    def forward(self, x: Tensor) -> Tensor:  # [N, L, size] → [N, L, hidden · directions]
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([self.rnn1(x1)[0], self.rnn2(x2)[0]], -1)  # bidirectional: [fwd1 bwd1 fwd2 bwd2]


class DPGRNN(nn.Module):
    """Grouped dual-path RNN over ``[B, C, T, W]``: across bands (bidirectional), then across frames."""

    def __init__(self, c: int, width: int, causal: bool = True):
        super().__init__()
        self.intra_rnn = GroupedGRU(c, c // 2, bidirectional=True)
        self.intra_fc = nn.Linear(c, c)
        self.intra_ln = nn.LayerNorm((width, c), eps=1e-8)
        self.inter_rnn = GroupedGRU(c, c, bidirectional=not causal)
        self.inter_fc = nn.Linear(c if causal else 2 * c, c)
        self.inter_ln = nn.LayerNorm((width, c), eps=1e-8)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, w = x.shape
        x = x.permute(0, 2, 3, 1)  # [B, T, W, C]
        intra = self.intra_fc(self.intra_rnn(x.reshape(b * t, w, c))).reshape(b, t, w, c)
        x = x + self.intra_ln(intra)
        inter = x.permute(0, 2, 1, 3).reshape(b * w, t, c)  # [B·W, T, C]
        inter = self.inter_fc(self.inter_rnn(inter)).reshape(b, w, t, c).permute(0, 2, 1, 3)
        x = x + self.inter_ln(inter)
        return x.permute(0, 3, 1, 2)  # [B, C, T, W]


# ----------------------------------------------------------------------------------------- model
class GTCRN(Family):
    """``forward(wave: Tensor[B, T]) -> Tensor[B, T]`` at 16 kHz; ``enhance_spec`` works on STFTs."""

    kind = "wave"

    def __init__(self, config: GTCRNConfig | None = None):
        super().__init__()
        self.config = cfg = config or GTCRNConfig()
        self.erb = ERB(65, 64, cfg.n_fft)
        self.encoder = nn.Module()
        self.encoder.en_convs = nn.ModuleList([
            ConvBlock(9, 16), ConvBlock(16, 16, groups=2),
            GTConvBlock(16, 16, 1), GTConvBlock(16, 16, 2), GTConvBlock(16, 16, 5)])
        self.dpgrnn1 = DPGRNN(16, 33, cfg.causal)
        self.dpgrnn2 = DPGRNN(16, 33, cfg.causal)
        self.decoder = nn.Module()
        self.decoder.de_convs = nn.ModuleList([
            GTConvBlock(16, 16, 5, deconv=True), GTConvBlock(16, 16, 2, deconv=True),
            GTConvBlock(16, 16, 1, deconv=True), ConvBlock(16, 16, groups=2, deconv=True),
            ConvBlock(16, 2, deconv=True, last=True)])
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True).sqrt(), persistent=False)

    def flops(self) -> int:
        return flops_per_second(self)

    def summary(self) -> str:
        return f"{'causal' if self.config.causal else 'non-causal'} GTCRN, complex ratio mask, 512/256 STFT"

    def adapt_state(self, state: dict) -> dict:
        """The published (causal) weights fit the non-causal variant through :func:`noncausal_state`."""
        if not self.config.causal and not any(k.endswith("_reverse") and ".inter_rnn." in k for k in state):
            return noncausal_state(state)
        return state

    @property
    def context_frames(self) -> int:
        return self.context_samples // self.config.hop

    @property
    def context_samples(self) -> int:
        """Samples of context each side used when a long file is processed in windows. The time RNNs
        see the whole window, so windowed output only approximates whole-file output: 2 s of
        context warm them up."""
        return 2 * self.config.sample_rate

    def enhance_spec(self, spec: Tensor) -> Tensor:
        """``[B, 257, F, 2]`` noisy STFT (real, imag) → enhanced STFT, the same layout."""
        re, im = spec[..., 0].transpose(1, 2), spec[..., 1].transpose(1, 2)  # [B, F, 257]
        mag = torch.sqrt(re * re + im * im + 1e-12)
        feat = subband_features(self.erb.merge(torch.stack([mag, re, im], 1)))  # [B, 9, F, 129]
        skips = []
        for block in self.encoder.en_convs:
            feat = block(feat)
            skips.append(feat)
        feat = self.dpgrnn2(self.dpgrnn1(feat))
        for block, skip in zip(self.decoder.de_convs, reversed(skips)):
            feat = block(feat + skip)
        mask = self.erb.split(feat)  # [B, 2, F, 257]
        out_re = re * mask[:, 0] - im * mask[:, 1]
        out_im = im * mask[:, 0] + re * mask[:, 1]
        return torch.stack([out_re, out_im], -1).transpose(1, 2)

    def forward(self, wave: Tensor) -> Tensor:
        cfg, t = self.config, wave.shape[-1]
        x, spec = published_stft(wave, cfg, self.window)
        y = self.enhance_spec(torch.view_as_real(spec))
        out = torch.istft(torch.view_as_complex(y.contiguous()), cfg.n_fft, cfg.hop, cfg.n_fft, self.window,
                          center=True, length=x.shape[-1])
        return out[:, :t]


def published_stft(wave: Tensor, cfg: PublishedSTFTConfig, window: Tensor) -> tuple[Tensor, Tensor]:
    """(the input as analysed, its centred STFT ``[B, 257, F]``), as the published models compute it; inputs of
    n_fft/2 samples or fewer are zero-padded first (reflect padding needs more)."""
    x = wave
    if wave.shape[-1] <= cfg.n_fft // 2:
        x = nn.functional.pad(wave, (0, cfg.n_fft // 2 + 1 - wave.shape[-1]))
    return x, torch.stft(x, cfg.n_fft, cfg.hop, cfg.n_fft, window, center=True, return_complex=True)


def noncausal_state(causal: dict[str, Tensor]) -> dict[str, Tensor]:
    """A causal GTCRN state dict → the state dict of ``causal=False`` with the same outputs.

    Each time GRU's backward direction is a copy of its forward weights; the time RNN's output layer
    gets zero columns for the backward features, so fine-tuning starts from the published model.
    """
    out = dict(causal)
    for k, v in causal.items():
        if ".inter_rnn." in k:
            out[k + "_reverse"] = v.clone()
        if k.endswith("inter_fc.weight"):  # inputs [fwd1 fwd2] → [fwd1 bwd1 fwd2 bwd2], backward columns 0
            f1, f2 = v.chunk(2, dim=1)
            out[k] = torch.cat([f1, torch.zeros_like(f1), f2, torch.zeros_like(f2)], 1)
    return out


def flops_per_second(model: GTCRN) -> int:
    """Approximate FLOPs per second of audio (2 × multiply-adds of convolutions, linear layers and GRUs)."""
    frames = model.config.sample_rate / model.config.hop
    macs = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            k = m.weight.numel()
            width = 129 if m in (model.encoder.en_convs[0].conv, model.decoder.de_convs[-1].conv) else 33
            macs += k * (width // (2 if isinstance(m, nn.Conv2d) and m.stride[1] == 2 else 1))
        elif isinstance(m, nn.GRU):
            macs += sum(p.numel() for n, p in m.named_parameters() if "weight" in n) * 33
        elif isinstance(m, nn.Linear) and m.weight.requires_grad:
            macs += m.weight.numel() * 33
    return int(2 * macs * frames)
