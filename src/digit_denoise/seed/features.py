"""The seed representation (48 kHz mel dB image, 112x112) in batched torch (inverses: :mod:`.inversion`).

Forward (matches the seed project's librosa + OpenCV code, see ``tests/test_features.py``)::

    wave @ 48 kHz
      -> |STFT|^2   (n_fft 2048, hop 512, hann, centre=True, zero padding: frames = 1 + len // hop)
      -> mel power  (256 Slaney-scale bands, Slaney area norm, fmin 0, fmax sr/2)
      -> dB         (librosa.power_to_db(S, ref=np.max, amin=1e-10, top_db=80))
      -> [0, 1]     (per-clip min-max)
      -> 112 x 112  (cv2.resize(img, (112, 112), interpolation=cv2.INTER_AREA), reproduced exactly)

Every per-clip number (frame count, max, min, reference power) is taken over that clip's own
valid frames, so a padded batch gives the same images as one call per clip.

The OpenCV ``INTER_AREA`` rule (OpenCV ``imgproc/src/resize.cpp``, checked numerically against
``cv2`` in the tests): when the image shrinks (or keeps its size) along *both* axes, each output
pixel is the exact pixel-area-weighted mean of the input cells it covers. When it grows along
*either* axis, OpenCV uses a 2-tap linear rule on *both* axes, with ``sx = floor(dx * scale)``
and weight ``fx = (dx + 1) - (sx + 1) / scale`` (fractional part, 0 if <= 0), edges clamped.
Both are separable, so the resize is ``W_rows @ X @ W_cols^T`` with matrices cached per size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from .. import audio
from ..dictconfig import DictConfig
from ..mel import mel_filterbank

__all__ = [
    "SeedFeatureConfig",
    "SeedFeatures",
    "mel_filterbank",
    "area_resize_matrices",
    "area_resize",
    "wave_to_seed",
    "pad_batch",
    "wave_seed_images",
]


@dataclass(frozen=True)
class SeedFeatureConfig(DictConfig):
    """Settings of the seed representation (defaults are the seed project's)."""

    sample_rate: int = 48000  # every clip is resampled to this rate (Hz) first
    n_fft: int = 2048  # STFT size (and hann window length), samples
    hop: int = 512  # STFT hop, samples
    n_mels: int = 256  # mel bands (Slaney scale, Slaney norm, 0 .. sr/2)
    top_db: float = 80.0  # dB floor below each clip's maximum (power_to_db top_db)
    amin: float = 1e-10  # power floor before log10 (power_to_db amin)
    size: tuple[int, int] = (112, 112)  # output image (height = mel axis, width = time axis)

    def __post_init__(self):
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))  # frozen: lists from JSON → tuple

    @classmethod
    def from_dict(cls, d: dict | None, strict: bool = False) -> "SeedFeatureConfig":
        """Inverse of ``to_dict``; other keys (a model file's ``kind``) are ignored unless ``strict``."""
        return super().from_dict(d, strict=strict)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1


# --------------------------------------------------------------------------------------------
# mel filterbank (Slaney), written out so it needs no librosa at run time


# --------------------------------------------------------------------------------------------
# cv2.INTER_AREA as separable matrices


def _area_down_matrix(n_in: int, n_out: int) -> np.ndarray:
    """OpenCV ``computeResizeAreaTab`` weights (shrinking or same size) as ``[n_out, n_in]``."""
    scale = 1.0 / (n_out / n_in)  # as OpenCV: scale = 1 / inv_scale, inv_scale = out / in
    w = np.zeros((n_out, n_in), dtype=np.float64)
    for dx in range(n_out):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, n_in - fsx1)
        sx1 = math.ceil(fsx1)
        sx2 = min(math.floor(fsx2), n_in - 1)
        sx1 = min(sx1, sx2)
        if sx1 - fsx1 > 1e-3:
            w[dx, sx1 - 1] += np.float32((sx1 - fsx1) / cell)
        for sx in range(sx1, sx2):
            w[dx, sx] += np.float32(1.0 / cell)
        if fsx2 - sx2 > 1e-3:
            w[dx, sx2] += np.float32(min(min(fsx2 - sx2, 1.0), cell) / cell)
    return w


def _area_linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """OpenCV's INTER_AREA rule when the image grows on some axis, as ``[n_out, n_in]``."""
    inv_scale = n_out / n_in
    scale = 1.0 / inv_scale  # as OpenCV (not n_in / n_out: the last bit matters for floor)
    w = np.zeros((n_out, n_in), dtype=np.float64)
    for dx in range(n_out):
        sx = math.floor(dx * scale)
        fx = float(np.float32((dx + 1) - (sx + 1) * inv_scale))
        fx = 0.0 if fx <= 0 else fx - math.floor(fx)
        if sx >= n_in - 1:
            sx, fx = n_in - 1, 0.0
        w[dx, sx] += 1.0 - fx
        if fx:
            w[dx, sx + 1] += fx
    return w


@lru_cache(maxsize=1024)
def _area_matrices_np(in_hw: tuple[int, int], out_hw: tuple[int, int]
                      ) -> tuple[np.ndarray, np.ndarray]:
    (h_in, w_in), (h_out, w_out) = in_hw, out_hw
    if h_in >= h_out and w_in >= w_out:  # cv2: scale_x >= 1 && scale_y >= 1 -> true area
        return _area_down_matrix(h_in, h_out), _area_down_matrix(w_in, w_out)
    return _area_linear_matrix(h_in, h_out), _area_linear_matrix(w_in, w_out)


def area_resize_matrices(in_hw: tuple[int, int], out_hw: tuple[int, int],
                         dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_rows[h_out, h_in], W_cols[w_out, w_in])`` so that ``W_rows @ X @ W_cols.T`` equals
    ``cv2.resize(X, (w_out, h_out), interpolation=cv2.INTER_AREA)`` (cached per size pair, dtype and
    device: shared tensors, not to be modified in place)."""
    return _area_matrices((int(in_hw[0]), int(in_hw[1])), (int(out_hw[0]), int(out_hw[1])), dtype,
                          torch.device(device) if device is not None else torch.device("cpu"))


@lru_cache(maxsize=1024)
def _area_matrices(in_hw: tuple[int, int], out_hw: tuple[int, int], dtype: torch.dtype,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    wr, wc = _area_matrices_np(in_hw, out_hw)
    return (torch.as_tensor(wr, dtype=dtype, device=device),
            torch.as_tensor(wc, dtype=dtype, device=device))


def area_resize(x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """cv2 ``INTER_AREA`` resize of ``Tensor[..., H, W]`` to ``Tensor[..., h_out, w_out]``."""
    wr, wc = area_resize_matrices(tuple(x.shape[-2:]), out_hw, x.dtype, x.device)
    return wr @ x @ wc.transpose(0, 1)


# --------------------------------------------------------------------------------------------
# forward


MEL_GROUPS = 16  # blocks of consecutive mel filters in SeedFeatures.mel_power


@lru_cache(maxsize=8)
def _mel_blocks(cfg: "SeedFeatureConfig") -> tuple[tuple[int, int, int, int], ...]:
    """``(m0, m1, k0, k1)``: mels ``m0:m1`` are zero outside FFT bins ``k0:k1``."""
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)
    blocks = []
    for g in range(MEL_GROUPS):
        m0, m1 = g * cfg.n_mels // MEL_GROUPS, (g + 1) * cfg.n_mels // MEL_GROUPS
        if m1 <= m0:
            continue
        nz = (fb[m0:m1] != 0).any(dim=0).nonzero().flatten()
        k0, k1 = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 1)
        blocks.append((m0, m1, k0, k1))
    return tuple(blocks)


class SeedFeatures(torch.nn.Module):
    """Batched seed features: ``wave Tensor[B, T] @ cfg.sample_rate -> Tensor[B, 1, 112, 112]``.

    Buffers: ``window`` (hann, periodic, ``Tensor[n_fft]``) and ``mel_fb``
    (``Tensor[n_mels, n_fft // 2 + 1]``). No parameters.
    """

    def __init__(self, cfg: SeedFeatureConfig | None = None):
        super().__init__()
        self.cfg = cfg or SeedFeatureConfig()
        c = self.cfg
        self.register_buffer("window", torch.hann_window(c.n_fft, periodic=True), persistent=False)
        self.register_buffer("mel_fb", mel_filterbank(c.sample_rate, c.n_fft, c.n_mels),
                             persistent=False)
        # each weight twice, for re² and im² of the interleaved real view (see mel_power)
        self.register_buffer("mel_fb_ri", self.mel_fb.repeat_interleave(2, dim=1), persistent=False)

    def mel_power(self, wave: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, T] -> Tensor[B, n_mels, 1 + T // hop]`` mel power (librosa melspectrogram)."""
        return self._mel_frames(wave).transpose(1, 2)

    def _mel_frames(self, wave: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, T] -> Tensor[B, 1 + T // hop, n_mels]``: mel power, frame-major.

        The mel filters are triangles over a few contiguous FFT bins, so the filterbank is applied
        as :data:`MEL_GROUPS` dense blocks (consecutive mels × the bins they touch) on the
        frame-major power ``[B, F, K]``: ~8× fewer FLOPs than the dense ``[M, K]`` product and
        no strided pass over the complex spectrum.
        """
        c = self.cfg
        spec = torch.stft(wave, c.n_fft, hop_length=c.hop, win_length=c.n_fft,
                          window=self.window.to(wave.dtype), center=True, pad_mode="constant",
                          return_complex=True)
        # [B, F, K] complex is the FFT's own (contiguous) layout; as reals [B, F, 2K] (re, im, re, ...)
        # squared, and each filter weight repeated for re² and im², one product sums |X|² per mel
        sq = torch.view_as_real(spec.transpose(1, 2))
        sq = sq.mul_(sq).flatten(-2)  # in place: the spectrum is not needed afterwards
        fb = self.mel_fb_ri.to(sq.dtype)  # [M, 2K]
        return torch.cat([sq[..., 2 * k0:2 * k1] @ fb[m0:m1, 2 * k0:2 * k1].T
                          for m0, m1, k0, k1 in _mel_blocks(self.cfg)], dim=-1)

    @torch.no_grad()  # data preparation: normalised in place, so not differentiable
    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Seed images of a (zero-padded) batch (no gradients flow through it).

        Args:
            wave: ``Tensor[B, T]`` (or ``Tensor[T]``) float audio at ``cfg.sample_rate``.
            lengths: ``Tensor[B]`` valid samples per clip (None: all ``T``). Samples past a
                clip's length are ignored (treated as zeros, as librosa's constant padding does).
        Returns:
            ``(img Tensor[B, 1, H, W], stats)`` with per-clip ``stats``:
            ``frames`` long[B] (1 + length // hop), ``lengths`` long[B] (samples),
            ``db_min``/``db_max`` float[B] (dB relative to the clip's max mel power, i.e. the
            values mapped to 0 and 1), ``ref_power`` float[B] (that max mel power, absolute).

        ``power_to_db(ref=max)`` puts every clip's maximum at exactly 0 dB, so ``db_max`` is 0,
        ``db_min`` is the quietest cell's dB floored at ``-top_db``, and both follow from the
        min and max of the *power*: the full-size array gets one log and one affine pass, in
        place, per group of clips with the same frame count (one group in a length-sorted batch).
        """
        c = self.cfg
        if wave.dim() == 1:
            wave = wave[None]
        b, t = wave.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if bool((lengths > t).any()) or bool((lengths < 0).any()):
            raise ValueError(f"lengths must lie in [0, {t}], got {lengths.tolist()}")
        if any(bool(wave[i, n:].any()) for i, n in enumerate(lengths.tolist()) if n < t):
            # zero everything past each clip's end (a copy: the caller's tensor is left alone)
            idx = torch.arange(t, device=wave.device)
            wave = wave.masked_fill(idx[None, :] >= lengths.to(wave.device)[:, None], 0.0)
        mel = self._mel_frames(wave)  # [B, F_all, M]
        frames = 1 + lengths // c.hop
        h, w = c.size
        img = mel.new_empty((b, 1, h, w))
        ref_power, db_min = mel.new_empty(b), mel.new_empty(b)
        for n in torch.unique(frames).tolist():
            sel = (frames == n).nonzero().flatten()
            lo_i, hi_i = int(sel[0]), int(sel[-1]) + 1
            sel = sel.to(mel.device)
            # a run of neighbours (always, in a sorted batch) is a view: normalised in place
            x = mel[lo_i:hi_i, :n] if hi_i - lo_i == len(sel) else mel[sel, :n]
            lo, hi = torch.aminmax(x.flatten(1), dim=1)  # [k] min / max power over the clip
            ref_db = 10.0 * torch.log10(hi.clamp_min(c.amin))
            floor = (10.0 * torch.log10(lo.clamp_min(c.amin)) - ref_db).clamp_min(-c.top_db)
            flat = floor == 0  # silent or constant clip: an all-zero image
            scale = torch.where(flat, 0.0, -10.0 / torch.where(flat, 1.0, floor))  # 10 / (0 - floor)
            shift = (ref_db + floor) * scale / 10.0
            x.clamp_min_(c.amin).log10_().mul_(scale[:, None, None]).sub_(shift[:, None, None]).clamp_(0.0, 1.0)
            wr, wc = area_resize_matrices((c.n_mels, n), (h, w), x.dtype, x.device)
            img[sel, 0] = wr @ x.transpose(1, 2) @ wc.T
            ref_power[sel], db_min[sel] = hi, floor
        stats = {"frames": frames, "lengths": lengths, "db_min": db_min.detach(),
                 "db_max": torch.zeros_like(db_min), "ref_power": ref_power.detach()}
        return img, stats


@lru_cache(maxsize=8)
def _module(cfg: SeedFeatureConfig) -> SeedFeatures:
    return SeedFeatures(cfg)


def _as_clip_list(wave) -> list[np.ndarray]:
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    if isinstance(wave, np.ndarray):
        if wave.ndim == 1:
            return [wave.astype(np.float32, copy=False)]
        if wave.ndim == 2:
            return [row.astype(np.float32, copy=False) for row in wave]
        raise ValueError(f"expected a 1-D clip or a 2-D [B, T] batch, got shape {wave.shape}")
    clips = []
    for w in wave:
        w = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
        if w.ndim == 2 and w.shape[0] == 1:
            w = w[0]
        if w.ndim != 1:
            raise ValueError(f"each clip must be 1-D (mono), got shape {w.shape}")
        clips.append(w.astype(np.float32, copy=False))
    return clips


def pad_batch(clips: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad 1-D clips into ``(Tensor[B, T_max], lengths long[B])``."""
    lengths = torch.tensor([len(c) for c in clips], dtype=torch.long)
    out = torch.zeros((len(clips), int(lengths.max()) if len(clips) else 0), dtype=torch.float32)
    for i, c in enumerate(clips):
        out[i, :len(c)] = torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32))
    return out, lengths


def wave_to_seed(wave, sr: int, cfg: SeedFeatureConfig | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Seed images of one or many clips at any rate.

    ``wave``: a 1-D clip, a 2-D ``[B, T]`` array/tensor, or a list of 1-D clips (any lengths),
    all at ``sr`` Hz. Each clip is resampled to ``cfg.sample_rate`` with :func:`audio.resample`
    (soxr HQ), zero-padded into a batch and passed to :class:`SeedFeatures`.
    Returns ``(img Tensor[B, 1, H, W], stats)``; ``stats["lengths"]`` is in 48 kHz samples.
    """
    cfg = cfg or SeedFeatureConfig()
    clips = [audio.resample(c, int(sr), cfg.sample_rate) for c in _as_clip_list(wave)]
    batch, lengths = pad_batch(clips)
    with torch.no_grad():
        return _module(cfg)(batch, lengths)




def wave_seed_images(waves: list[np.ndarray], sr: int, batch: int = 64) -> torch.Tensor:
    """Seed images ``Tensor[B, 1, 112, 112]`` of many mono clips at ``sr``, ``batch`` clips per call."""
    out = [wave_to_seed(waves[i:i + batch], sr)[0] for i in range(0, len(waves), batch)]
    return torch.cat(out) if out else torch.zeros((0, 1, 112, 112))
