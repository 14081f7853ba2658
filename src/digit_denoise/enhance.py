"""``Denoiser``: a trained model behind one call, ``enhance(audio, sample_rate)``.

>>> from digit_denoise import Denoiser                       # doctest: +SKIP
>>> den = Denoiser.from_checkpoint("runs/fast")              # doctest: +SKIP
>>> clean = den.enhance(noisy_array, 8000)                   # doctest: +SKIP

Any length, any rate, any number of channels; every channel is denoised on its own (channels are
one batch). Long inputs go through the model in overlapping windows (:func:`overlap_add`), so memory
is bounded and :meth:`Denoiser.stream` can denoise an hour-long file block by block.

Waveform models (features kind ``"wave"``, e.g. MaskNet): audio → soxr (streaming, HQ) to the
model's rate → windows of ``chunk_seconds`` (30 s) plus the model's receptive field
(``context_samples``, rounded up to whole STFT hops) on each side → model → the centre of each
window kept, short cross-fades inside the discarded context → soxr back to the input's rate.
Because every kept sample saw its whole receptive field and windows start on the hop grid, the
chunked output equals whole-input processing to float rounding (tested at 1e-5).

Seed-representation models (kind ``"seed"``): one window = one clip → 48 kHz → 112×112 image →
model → image → mel power at the clip's own frame count and absolute level (see
:func:`inversion.seed_to_mel_power`) → linear magnitude → waveform with the noisy input's phase
(default; much better SI-SDR) or Griffin-Lim → back to the input's rate and length. The seed
representation is per clip (min-max normalised, resized to 112 frames), so windows are kept close
to the training clips' length: inputs up to ``SEED_WINDOW_S`` (2 s) are one clip; longer ones are 2 s windows cross-faded over 0.4 s. Each window has its own level
normalisation, so chunked and whole-clip outputs differ more than for waveform models (the model
never saw 30-s clips squeezed into 112 frames anyway).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .audio import read_blocks, resample, resample_stream
from .checkpoint import load_model
from .errors import UserError
from .features import SeedFeatureConfig, wave_to_seed
from .inversion import seed_invert

PHASES = ("noisy", "griffinlim")
KINDS = ("seed", "wave")
WAVE_CHUNK_S = 30.0  # waveform models: seconds of output per model call (plus context each side)
SEED_WINDOW_S = 2.0  # seed models: seconds per clip (inputs this short are one clip)
SEED_FADE_S = 0.4  # seed models: cross-fade between windows
SEED_DISCARD_S = 0.1  # seed models: edge of each window that is not used at all (STFT edge effects)


def clean_level_stats(stats: dict, feat: SeedFeatureConfig) -> dict:
    """How a predicted [0, 1] image is mapped back to absolute levels.

    The model predicts the *clean* clip's normalised image. Clean clips span the full floor:
    measured on FSDD test clips, every clean image's dB range is exactly [-top_db, 0] = [-80, 0]
    (the floor of ``power_to_db``), while noisy images span only about [-63, 0]. So a predicted
    value v maps to ``dB = -top_db·(1 - v)`` relative to the reference power, and the reference
    (the clip's peak mel power) is the noisy input's (median 0.9 dB above the clean peak at -8 dB).
    """
    out = dict(stats)
    out["db_min"] = torch.full_like(torch.as_tensor(stats["db_min"], dtype=torch.float32), -feat.top_db)
    out["db_max"] = torch.zeros_like(out["db_min"])
    return out


# ------------------------------------------------------------------------------- streaming
def fade_weights(n: int, *, first: bool, last: bool, discard: int, fade: int) -> np.ndarray:
    """Weights ``[n]`` of one window's output in :func:`overlap_add`.

    Not the first window: 0 over the first ``discard`` samples, a sin² ramp up over ``fade``, then 1.
    Not the last: the mirror image at the end. Consecutive windows overlapping by
    ``2·discard + fade`` samples have weights summing to exactly 1.
    """
    w = np.ones(n, np.float32)
    ramp = (np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / max(fade, 1)) ** 2).astype(np.float32)
    if not first:
        w[:discard] = 0.0
        w[discard:discard + fade] = ramp
    if not last:
        w[n - discard - fade:n - discard] = ramp[::-1]
        w[n - discard:] = 0.0
    return w


def overlap_add(blocks: Iterable[np.ndarray], fn: Callable[[np.ndarray], np.ndarray], *, window: int,
                discard: int, fade: int) -> Iterator[np.ndarray]:
    """Run ``fn`` over overlapping windows of a stream; yield the combined output block by block.

    Args:
        blocks: input blocks ``[C, n_i]`` (any sizes, same C).
        fn: ``[C, L] -> [C, L]`` (the model on one window).
        window: samples per window; consecutive windows overlap by ``2·discard + fade`` and start
            ``window - overlap`` samples apart (the stride; it must be ≥ the overlap).
        discard, fade: see :func:`fade_weights`.
    Yields:
        output blocks ``[C, m_j]`` whose lengths add up to the input's. An input no longer than
        ``window`` is one call ``fn(whole input)``. At most about ``window`` + one block of input is
        held in memory.
    """
    overlap = 2 * discard + fade
    stride = window - overlap
    if stride < max(overlap, 1):
        raise ValueError(f"window {window} must be at least twice the overlap {overlap}")
    parts: list[np.ndarray] = []
    have = 0
    tail = None  # the previous window's weighted output over the next window's first `overlap` samples
    for block in blocks:
        parts.append(block)
        have += block.shape[-1]
        if have < window:
            continue
        buf = np.concatenate(parts, axis=-1)
        while buf.shape[-1] >= window:
            y = fn(buf[:, :window]) * fade_weights(window, first=tail is None, last=False, discard=discard,
                                                   fade=fade)
            if tail is not None:
                y[:, :overlap] += tail
            yield y[:, :stride]
            tail = y[:, stride:]
            buf = buf[:, stride:]
        parts, have = [buf], buf.shape[-1]
    if not have:
        return
    buf = np.concatenate(parts, axis=-1)
    y = fn(buf) * fade_weights(buf.shape[-1], first=tail is None, last=True, discard=discard, fade=fade)
    if tail is not None:
        y[:, :overlap] += tail
    yield y


class _Counted:
    """Iterates blocks ``[C, n]`` and counts their samples (``n``) and channels; ``done`` at the end."""

    def __init__(self, blocks: Iterable[np.ndarray]):
        self.blocks, self.n, self.channels, self.done = blocks, 0, None, False

    def __iter__(self) -> Iterator[np.ndarray]:
        for b in self.blocks:
            b = np.asarray(b, np.float32)
            if b.ndim != 2:
                raise UserError(f"audio blocks must be [channels, samples], got shape {b.shape}")
            if self.channels is None:
                self.channels = b.shape[0]
            elif b.shape[0] != self.channels:
                raise UserError(f"audio blocks changed from {self.channels} to {b.shape[0]} channels")
            self.n += b.shape[1]
            if b.shape[1]:
                yield b
        self.done = True


# ------------------------------------------------------------------------------- pretrained
def pretrained_dir():
    """The package's ``pretrained/`` folder (an ``importlib.resources`` Traversable)."""
    from importlib.resources import files

    return files("digit_denoise") / "pretrained"


def default_model_path() -> Path | None:
    """``pretrained/default.safetensors`` (with ``default.json``) of this install, or None if not shipped."""
    res = pretrained_dir() / "default.safetensors"
    if not res.is_file():
        return None
    return Path(str(res))  # package data lives on disk (pip / editable installs); zipped installs: unsupported


# ------------------------------------------------------------------------------- Denoiser
class Denoiser:
    """A loaded model plus everything needed to turn audio into denoised audio.

    Args:
        model, meta: from :func:`checkpoint.load_model`.
        phase, gl_iters, seed: seed models only: output phase (``noisy`` or ``griffinlim``),
            Griffin-Lim iterations and its seed.
        chunk_seconds: seconds per model call (waveform: default 30; seed: default 2).
    """

    def __init__(self, model: torch.nn.Module, meta: dict, *, phase: str = "noisy", gl_iters: int = 32,
                 seed: int = 0, chunk_seconds: float | None = None):
        if phase not in PHASES:
            raise UserError(f"--phase {phase!r}: choose one of {', '.join(PHASES)}")
        if chunk_seconds is not None and not (chunk_seconds > 0 and math.isfinite(chunk_seconds)):
            raise UserError(f"chunk_seconds {chunk_seconds}: must be a positive number of seconds")
        self.model = model.eval()
        self.meta = meta
        self.phase = phase
        self.gl_iters = gl_iters
        self.seed = seed
        feats = dict(meta.get("features") or {})
        self.kind = feats.pop("kind", None)
        if self.kind not in KINDS:
            raise UserError(f"model uses features '{self.kind}', which this version of digit-denoise cannot run; "
                            "upgrade digit-denoise")
        self.chunk_seconds = chunk_seconds or (WAVE_CHUNK_S if self.kind == "wave" else SEED_WINDOW_S)
        self.device = next(iter(model.parameters())).device
        if self.kind == "seed":
            feats = {k: tuple(v) if isinstance(v, list) else v for k, v in feats.items()}
            self.feat = SeedFeatureConfig.from_dict(feats)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "cpu", **kwargs) -> "Denoiser":
        """Load a run folder, checkpoint folder or .safetensors file (with its .json)."""
        model, meta = load_model(path, device=device)
        return cls(model, meta, **kwargs)

    @classmethod
    def default(cls, device: str = "cpu", **kwargs) -> "Denoiser":
        """The model shipped with this install (``digit_denoise/pretrained/default.*``)."""
        path = default_model_path()
        if path is None:
            raise UserError("no default model shipped in this install; pass --model RUN "
                            "(a run folder, checkpoint folder or .safetensors file)")
        return cls.from_checkpoint(path, device=device, **kwargs)

    @property
    def sample_rate(self) -> int:
        """The rate the model runs at (inputs at any rate are resampled to it and back)."""
        return int(self.meta.get("sample_rate") or self.feat.sample_rate)

    # ---------------------------------------------------------------- one window
    @torch.no_grad()
    def enhance_mono(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Seed models: denoise one channel ``[T]`` at ``sr`` as one clip; returns ``[T]`` float32 at ``sr``."""
        n = x.shape[-1]
        if n == 0:
            return np.zeros(0, np.float32)
        rate = self.feat.sample_rate
        x48 = resample(np.asarray(x, np.float32), sr, rate)
        img, stats = wave_to_seed(x48, rate, self.feat)
        pred = self.model(img.to(self.device)).clamp(0.0, 1.0).cpu()
        stats = clean_level_stats(stats, self.feat)
        method = "noisy-phase" if self.phase == "noisy" else "griffinlim"
        y48 = seed_invert(pred, stats, method=method, noisy_wave=[x48], n_iter=self.gl_iters, seed=self.seed,
                          cfg=self.feat)[0]
        y = resample(y48, rate, sr)
        return np.pad(y, (0, max(0, n - y.size)))[:n].astype(np.float32)

    @torch.no_grad()
    def _wave_window(self, x: np.ndarray) -> np.ndarray:
        """Waveform models: ``[C, L]`` at the model's rate → ``[C, L]`` (channels are the batch)."""
        y = self.model(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device))
        return y.float().cpu().numpy()

    # ---------------------------------------------------------------- streams
    def stream(self, blocks: Iterable[np.ndarray], sample_rate: int) -> Iterator[np.ndarray]:
        """Denoise a stream: blocks ``[C, n_i]`` at ``sample_rate`` in, float32 blocks ``[C, m_j]`` out.

        The output has the same rate, channels and total length as the input. Blocks may have any
        size; samples must be finite (see :func:`audio.read_blocks`). Memory stays bounded by the
        window size (``chunk_seconds``), whatever the input's length.
        """
        sr = int(sample_rate)
        src = _Counted(blocks)
        if self.kind == "wave":
            rate = self.sample_rate
            hop = int(getattr(self.model.config, "hop", 1) or 1)
            ctx = -(-int(self.model.context) // hop) * hop  # rounded up to hops
            fade = 4 * hop
            overlap = 2 * ctx + fade
            stride = max(-(-round(self.chunk_seconds * rate) // hop) * hop, -(-overlap // hop) * hop)
            out = resample_stream(overlap_add(resample_stream(src, sr, rate), self._wave_window,
                                              window=stride + overlap, discard=ctx, fade=fade), rate, sr)
        else:
            window = max(2, round(self.chunk_seconds * sr))
            discard, fade = round(SEED_DISCARD_S * sr), round(SEED_FADE_S * sr)
            if window < 2 * (2 * discard + fade):  # a short chunk_seconds: overlap a quarter of each window
                discard, fade = 0, window // 4

            def per_channel(x: np.ndarray) -> np.ndarray:
                return np.stack([self.enhance_mono(c, sr) for c in x])

            out = overlap_add(src, per_channel, window=window, discard=discard, fade=fade)
        emitted = 0
        for y in out:  # resampling back may give a sample more or less than the input: fit exactly
            if src.done:
                y = y[:, :max(0, src.n - emitted)]
            emitted += y.shape[1]
            if y.shape[1]:
                yield y.astype(np.float32, copy=False)
        if emitted < src.n:
            yield np.zeros((src.channels, src.n - emitted), np.float32)

    # ---------------------------------------------------------------- public API
    def enhance(self, audio, sample_rate: int | None = None):
        """Denoise a path, a numpy array or a tensor; returns the same kind.

        Arrays/tensors: ``[T]`` or ``[channels, T]`` at ``sample_rate`` → same shape and rate
        (float32 numpy; tensors keep their dtype and device). Values are not limited: a float result
        may exceed ±1 where the input did.
        A path (any format libsndfile reads) returns ``(array[channels, T], sample_rate)`` of the file.
        """
        if isinstance(audio, (str, os.PathLike)):
            from .audio import info

            hdr = info(audio)
            blocks = list(self.stream(read_blocks(audio), hdr.sample_rate))
            y = np.concatenate(blocks, axis=1) if blocks else np.zeros((hdr.channels, 0), np.float32)
            return y, hdr.sample_rate
        if sample_rate is None or int(sample_rate) <= 0:
            raise UserError("enhance(audio, sample_rate): give the sample rate of the array")
        if isinstance(audio, torch.Tensor):
            y = self._enhance_array(audio.detach().cpu().float().numpy(), int(sample_rate))
            return torch.from_numpy(y).to(audio.device, audio.dtype)
        return self._enhance_array(np.asarray(audio), int(sample_rate))

    def _enhance_array(self, x: np.ndarray, sr: int) -> np.ndarray:
        if x.ndim not in (1, 2):
            raise UserError(f"audio must be [samples] or [channels, samples], got shape {x.shape}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise UserError("audio contains NaN or infinite samples")
        x2 = x[None] if x.ndim == 1 else x
        if x2.shape[0] == 0 or x2.shape[1] == 0:
            return np.zeros(x.shape, np.float32)
        y = np.concatenate(list(self.stream([x2], sr)), axis=1)
        return y[0] if x.ndim == 1 else y
