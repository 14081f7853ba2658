"""MaskNet: a spectral-mask denoiser at native STFT resolution, waveform in, waveform out.

::

    wave[B, T] ──STFT (conv1d, √Hann 512/128 @16 kHz)──► X[B, 257, F] (complex)
                 log |X|² ─► 1×1 conv 257→C ─► R × residual block ─► 1×1 conv C→257·m ─► mask M
    Y = M ⊙ X  (magnitude mask: M ∈ [0, 1], noisy phase;  complex mask: |M| < 1 via tanh, phase too;
                polar mask: M = sigmoid(m) · e^{iφ}, φ from a unit vector: a magnitude mask plus a
                phase correction, which starts at 0 so a magnitude model's weights carry over exactly;
                filter: Y = M ⊙ X + Σ_τ H_τ ⊙ X(t − τ), a magnitude mask plus a complex filter over the
                ±taps neighbouring frames of each bin (deep filtering), which starts at 0)
    Y ──iSTFT (conv_transpose1d, same window, overlap-add)──► wave[B, T]

    residual block (dilation d):  h + conv1x1(PReLU(conv_k×1,dil d(PReLU(norm(h)))))  (conv1x1: unless mix=False)
    norm: none; "frame" (each frame's channels to zero mean / unit variance, then a per-channel
    scale and shift): local in time, so chunked inference still equals whole-file inference; or
    "utterance" (GroupNorm(1, C): one mean / variance over channels × frames of the whole input):
    a long file's windows are each normalised on their own (see ``Denoiser``).

The analysis/synthesis pair is exact (mask ≡ 1 reconstructs the input to float precision) and is
made of plain convolutions, so the whole model exports to ONNX and runs on any backend. The
receptive field is finite (``context_samples``): chunked overlap-add inference equals whole-file
inference away from chunk edges. All convolutions run over the whole frame sequence at once (big
GEMMs), which is what makes it fast on one CPU thread.

Pure model code: no file I/O, no printing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dictconfig import DictConfig
from ..errors import UserError
from .base import Family, check_bounds

MASKS = ("magnitude", "complex", "polar", "filter")
NORMS = ("none", "frame", "utterance")


@dataclass
class MaskNetConfig(DictConfig):
    sample_rate: int = 16000  # the rate the model runs at (audio is resampled to it)
    n_fft: int = 512  # STFT frame (32 ms at 16 kHz)
    hop: int = 128  # STFT hop (8 ms)
    channels: int = 128  # hidden channels of the frame network
    kernel: int = 3  # temporal kernel of each residual block (odd)
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)  # one residual block per entry
    mask: str = "magnitude"  # magnitude (noisy phase), complex (bounded complex ratio), polar (magnitude + phase), filter (magnitude + deep filter)
    floor: float = 1e-8  # added to |X|² before the log
    norm: str = "none"  # none, frame (per-frame channel norm) or utterance (channels × time) at the start of each block
    taps: int = 2  # filter mask: complex filter taps over ±taps frames of the same bin
    mix: bool = True  # a 1×1 conv after each block's dilated conv (False: 3/4 of the block's compute)
    voice: int = 0  # personalised: the size of the speaker embedding given with the audio (FiLM on every block); 0 = blind

    def __post_init__(self):
        self.dilations = tuple(int(d) for d in self.dilations)
        if self.mask not in MASKS:
            raise ValueError(f"mask {self.mask!r}: choose one of {', '.join(MASKS)}")
        if self.norm not in NORMS:
            raise ValueError(f"norm {self.norm!r}: choose one of {', '.join(NORMS)}")
        if self.n_fft % self.hop or self.n_fft // self.hop < 2:
            raise ValueError(f"n_fft {self.n_fft} must be a multiple (≥ 2) of hop {self.hop}")
        if self.kernel % 2 != 1 or self.kernel < 1:
            raise ValueError(f"kernel {self.kernel}: must be odd")
        if self.channels < 1 or not self.dilations or min(self.dilations) < 1:
            raise ValueError("channels and dilations must be positive")
        if not 0 <= self.taps <= 8:
            raise ValueError(f"taps {self.taps}: give 0 to 8")
        check_bounds(self, voice=(0, 1024), sample_rate=(4000, 384000), n_fft=(8, 8192), hop=(1, 4096), channels=(1, 4096),
                     kernel=(1, 63), blocks=(len(self.dilations), 256), dilation=(max(self.dilations), 65536))

    def head(self) -> int:
        """Head outputs per frequency bin."""
        return {"magnitude": 1, "complex": 2, "polar": 3, "filter": 1 + 2 * (2 * self.taps + 1)}[self.mask]


def sqrt_hann(n: int) -> Tensor:
    return torch.hann_window(n, periodic=True, dtype=torch.float64).sqrt()


class STFT(nn.Module):
    """Exact STFT / iSTFT pair built from conv1d / conv_transpose1d (ONNX-friendly).

    ``analysis(x[B, T]) -> (re, im)`` each ``[B, K, F]`` with ``K = n_fft/2 + 1``;
    ``synthesis(re, im, T) -> [B, T]``. Padding puts every sample under ``n_fft/hop`` frames, so
    ``synthesis(*analysis(x), T) == x`` (to float rounding) for any ``T ≥ 0``.
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.use_fft = True  # torch.fft while running; the conv form when exporting to ONNX
        if torch.empty(0).is_meta:  # a shape-only build (checkpoint.check_shapes): buffers without numbers
            self.ola = 1.0
            for name, shape in (("window", (n_fft,)), ("fwd", (n_fft + 2, 1, n_fft)), ("inv", (n_fft + 2, 1, n_fft))):
                self.register_buffer(name, torch.empty(shape), persistent=False)
            return
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        ang = 2 * math.pi * k * n / n_fft
        w = sqrt_hann(n_fft)
        fwd = torch.cat([torch.cos(ang) * w, -torch.sin(ang) * w])  # [2K, N]
        c = torch.full((n_fft // 2 + 1, 1), 2.0, dtype=torch.float64)
        c[0] = c[-1] = 1.0
        ola = (w ** 2).reshape(-1, hop).sum(0)  # Σ_j w²[n + j·hop]: constant for √Hann at hop ≤ n/2
        if float(ola.max() - ola.min()) > 1e-9:
            raise ValueError("window does not overlap-add to a constant")
        inv = torch.cat([c * torch.cos(ang), -c * torch.sin(ang)]) * w / n_fft / float(ola[0])  # [2K, N]
        self.ola = float(ola[0])
        self.register_buffer("window", w.float(), persistent=False)
        self.register_buffer("fwd", fwd.float()[:, None, :], persistent=False)
        self.register_buffer("inv", inv.float()[:, None, :], persistent=False)

    def pads(self, t: int) -> tuple[int, int]:
        left = self.n_fft - self.hop
        return left, left + (-t) % self.hop

    def _fft_path(self) -> bool:
        return self.use_fft and not torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing()

    def analysis(self, x: Tensor) -> tuple[Tensor, Tensor]:
        left, right = self.pads(x.shape[-1])
        xp = F.pad(x[:, None, :], (left, right))
        if self._fft_path():  # the same sums by FFT: O(N log N) per frame instead of O(N²)
            frames = xp[:, 0].unfold(-1, self.n_fft, self.hop) * self.window  # [B, F, N]
            spec = torch.fft.rfft(frames, dim=-1).transpose(1, 2)  # [B, K, F]
            return spec.real.contiguous(), spec.imag.contiguous()
        spec = F.conv1d(xp, self.fwd, stride=self.hop)
        return spec.chunk(2, dim=1)

    def synthesis(self, re: Tensor, im: Tensor, t: int) -> Tensor:
        left = self.n_fft - self.hop
        if self._fft_path():
            frames = torch.fft.irfft(torch.complex(re, im).transpose(1, 2), n=self.n_fft, dim=-1)  # [B, F, N]
            frames = frames * (self.window / self.ola)
            n_frames = frames.shape[1]
            length = (n_frames - 1) * self.hop + self.n_fft
            y = F.fold(frames.transpose(1, 2), output_size=(1, length), kernel_size=(1, self.n_fft),
                       stride=(1, self.hop))[:, 0, 0]
            return y[:, left:left + t]
        y = F.conv_transpose1d(torch.cat([re, im], 1), self.inv, stride=self.hop)[:, 0]
        return y[:, left:left + t]


class FrameNorm(nn.Module):
    """``[B, C, F] → [B, C, F]``: each frame's C channels to zero mean and unit variance, then scaled."""

    def __init__(self, c: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, c, 1))
        self.bias = nn.Parameter(torch.zeros(1, c, 1))

    def forward(self, h: Tensor) -> Tensor:
        mean = h.mean(1, keepdim=True)
        var = (h - mean).pow(2).mean(1, keepdim=True)
        return (h - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


def make_norm(kind: str, c: int) -> nn.Module:
    """``[B, C, F] → [B, C, F]``: none, per frame (:class:`FrameNorm`) or per utterance (``GroupNorm(1, C)``:
    one mean and variance over channels × frames, then a per-channel scale and shift)."""
    return {"frame": lambda: FrameNorm(c), "utterance": lambda: nn.GroupNorm(1, c)}.get(kind, nn.Identity)()


class Block(nn.Module):
    def __init__(self, c: int, k: int, d: int, norm: str = "none", mix: bool = True):
        super().__init__()
        self.norm = make_norm(norm, c)
        self.act1, self.act2 = nn.PReLU(c), nn.PReLU(c)
        self.conv = nn.Conv1d(c, c, k, dilation=d, padding=d * (k - 1) // 2)
        self.mix = nn.Conv1d(c, c, 1) if mix else nn.Identity()

    def forward(self, h: Tensor, film: Tensor | None = None) -> Tensor:
        """``h [B, C, F]``; ``film [B, 2C]``: a scale (1 + γ) and shift β of the normalised input per channel."""
        n = self.norm(h)
        if film is not None:
            gamma, beta = film[:, :, None].chunk(2, dim=1)
            n = n * (1 + gamma) + beta
        return h + self.mix(self.act2(self.conv(self.act1(n))))


class MaskNet(Family):
    """``forward(wave: Tensor[B, T]) -> Tensor[B, T]`` at ``config.sample_rate``."""

    kind = "wave"

    def __init__(self, config: MaskNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or MaskNetConfig()
        bins = cfg.n_fft // 2 + 1
        self.stft = STFT(cfg.n_fft, cfg.hop)
        self.inp = nn.Conv1d(bins, cfg.channels, 1)
        self.blocks = nn.Sequential(*(Block(cfg.channels, cfg.kernel, d, cfg.norm, cfg.mix) for d in cfg.dilations))
        self.out_act = nn.PReLU(cfg.channels)
        if cfg.voice:  # FiLM of every block from the speaker embedding; zero: a personalised model starts blind
            self.film = nn.Linear(cfg.voice, 2 * cfg.channels * len(cfg.dilations))
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.out = nn.Conv1d(cfg.channels, bins * cfg.head(), 1)
        if cfg.mask == "polar":  # the phase head starts at e^{i0}: a plain magnitude mask
            with torch.no_grad():
                self.out.weight[bins:].zero_()
                self.out.bias[bins:2 * bins].fill_(1.0)
                self.out.bias[2 * bins:].zero_()
        if cfg.mask == "filter":  # the filter starts at zero: a plain magnitude mask, which it then corrects
            with torch.no_grad():
                self.out.weight[bins:].zero_()
                self.out.bias[bins:].zero_()

    def adapt_state(self, state: dict) -> dict:
        """A blind model's weights fit a personalised one (its FiLM starts at zero: the same outputs at first).
        A magnitude model's weights fit a polar or filter one: its head becomes the magnitude part, the
        phase (or filter) part is this model's own zero start, so the new model first computes exactly what
        the magnitude one did."""
        if self.config.voice and "film.weight" not in state:  # a blind model's weights: FiLM starts at zero
            state = {**state, "film.weight": self.film.weight.detach().clone(), "film.bias": self.film.bias.detach().clone()}
        w, b = state.get("out.weight"), state.get("out.bias")
        bins = self.config.n_fft // 2 + 1
        if self.config.mask not in ("polar", "filter") or w is None or w.shape[0] != bins:
            return state
        phase_w, phase_b = self.out.weight.detach()[bins:], self.out.bias.detach()[bins:]
        return {**state, "out.weight": torch.cat([w, phase_w.to(w.dtype)]),
                "out.bias": torch.cat([b, phase_b.to(b.dtype)])}

    def flops(self) -> int:
        return flops_per_second(self)

    def summary(self) -> str:
        c = self.config
        extra = (f", per-{c.norm} norm" if c.norm != "none" else "") + (f", {c.n_fft}/{c.hop} STFT" if c.n_fft != 512 else "")
        if c.mask == "filter":
            extra += f", ±{c.taps}-frame complex filter"
        if c.voice:
            extra += f", personalised (FiLM from a {c.voice}-value voice embedding)"
        return f"{c.mask} mask, {c.channels} ch × {len(c.dilations)} blocks{extra}"

    @property
    def context_frames(self) -> int:
        """Frames of context each side that one output frame sees."""
        taps = self.config.taps if self.config.mask == "filter" else 0
        return sum(d * (self.config.kernel - 1) // 2 for d in self.config.dilations) + taps

    @property
    def context_samples(self) -> int:
        """Samples each side of an output sample that can influence it."""
        return (self.context_frames + 1) * self.config.hop + self.config.n_fft

    def mask(self, re: Tensor, im: Tensor, voice: Tensor | None = None) -> tuple[Tensor, ...]:
        """The head's output for a noisy spectrum ``[B, K, F]`` (and, personalised, a speaker embedding
        ``voice [B, E]``): (mask_re, mask_im) (mask_im is 0 for magnitude masks); for the filter mask also the
        filter taps ``[B, 2·taps+1, K, F]`` (re, im)."""
        feats = torch.log(re * re + im * im + self.config.floor)
        h = self.inp(feats * 0.1)
        films = self.film(voice).chunk(len(self.blocks), dim=1) if voice is not None else [None] * len(self.blocks)
        for block, film in zip(self.blocks, films):
            h = block(h, film)
        m = self.out(self.out_act(h))
        if self.config.mask == "magnitude":
            return torch.sigmoid(m), torch.zeros_like(re)
        if self.config.mask == "filter":
            bins, taps = re.shape[1], 2 * self.config.taps + 1
            g, f = m[:, :bins], m[:, bins:]
            f = torch.tanh(f).unflatten(1, (2, taps, bins))  # [B, 2, taps, K, F], each part in (−1, 1)
            return torch.sigmoid(g), torch.zeros_like(re), f[:, 0], f[:, 1]
        if self.config.mask == "polar":
            g, u, v = m.chunk(3, dim=1)
            scale = torch.sigmoid(g) * torch.rsqrt(u * u + v * v + 1e-8)
            return u * scale, v * scale
        mr, mi = m.chunk(2, dim=1)
        mag = torch.sqrt(mr * mr + mi * mi + 1e-12)
        scale = torch.tanh(mag) / mag
        return mr * scale, mi * scale

    def forward(self, wave: Tensor, voice: Tensor | None = None) -> Tensor:
        """``wave [B, T]`` (+ ``voice [B, E]``, the speaker embedding, for a personalised model) → ``[B, T]``."""
        if wave.dim() != 2:
            raise UserError(f"MaskNet expects Tensor[batch, samples], got shape {tuple(wave.shape)}")
        if bool(self.config.voice) != (voice is not None):
            raise UserError("this model is personalised: give a voice profile" if self.config.voice else
                            "this model is not personalised: it takes no voice profile")
        t = wave.shape[-1]
        re, im = self.stft.analysis(wave)
        mr, mi, *taps = self.mask(re, im, voice)
        yr, yi = re * mr - im * mi, re * mi + im * mr
        if taps:  # + Σ_τ H_τ(t, f) · X(t − τ, f): a complex filter over the neighbouring frames of each bin
            fr, fi = taps
            k = self.config.taps
            pr, pi = F.pad(re, (k, k)), F.pad(im, (k, k))
            n = re.shape[-1]
            for j in range(2 * k + 1):  # tap j looks at frame t + j − k
                xr, xi = pr[..., j:j + n], pi[..., j:j + n]
                yr = yr + fr[:, j] * xr - fi[:, j] * xi
                yi = yi + fr[:, j] * xi + fi[:, j] * xr
        return self.stft.synthesis(yr, yi, t)


def flops_per_second(model: MaskNet) -> int:
    """FLOPs (2 × multiply-adds) of the convolutions for one second of audio."""
    cfg = model.config
    frames = cfg.sample_rate / cfg.hop
    bins = cfg.n_fft // 2 + 1
    c = cfg.channels
    macs = 2 * bins * cfg.n_fft  # analysis
    macs += bins * c + len(cfg.dilations) * (c * c * cfg.kernel + c * c * cfg.mix) + c * model.out.out_channels
    macs += 2 * bins * cfg.n_fft  # synthesis
    return int(2 * macs * frames)
