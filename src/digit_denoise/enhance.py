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

Seed-representation models (kind ``"seed"``) denoise clip by clip through :class:`.seed.infer.SeedInference`:
2-s windows cross-faded over 0.4 s, each normalised on its own, so chunked and whole-clip outputs
differ more than for waveform models (the model never saw 30-s clips squeezed into 112 frames anyway).

Attenuation limit (``atten_lim_db``, as DeepFilterNet's): the output is ``(1 − g)·model(x) + g·x`` with
``g = 10^(−dB/20)``, mixed at the input's rate, so no part of the input (above the model's band too) is
attenuated by more than ``dB``; 0 dB gives the input back. The mix is linear and sample by sample, so
chunked output still equals whole-input output. A model file may carry its own (``"atten_lim_db"`` in its
JSON; the shipped default has 25 dB); ``atten_lim_db=math.inf`` lifts it.
"""

from __future__ import annotations

import math
import numbers
import os
from collections import deque
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .audio import check_rate, info, read_blocks, resample_stream
from .checkpoint import load_model
from .errors import UserError
from .pretrained import packaged_path
from .seed.infer import SEED_WINDOW_S, SeedInference
from .voice.profile import load_voice

PHASES = ("noisy", "griffinlim")
KINDS = ("seed", "wave")
WAVE_CHUNK_S = 30.0  # waveform models: seconds of output per model call (plus context each side)


def atten_lim_share(atten_lim_db: float | None) -> float:
    """The share ``g`` of the input mixed back for an attenuation limit of ``atten_lim_db`` dB:
    ``10^(−dB/20)``; 0 for no limit (None or inf). Negative, NaN or non-numeric limits raise :class:`UserError`."""
    if atten_lim_db is None:
        return 0.0
    if isinstance(atten_lim_db, bool) or not isinstance(atten_lim_db, numbers.Real) or not atten_lim_db >= 0:
        raise UserError(f"attenuation limit {str(atten_lim_db)[:20]}: give a number of dB ≥ 0 (0: the input "
                        "unchanged) or none")
    # beyond ~6000 dB (inf, an int too large for a float) the share is 0 anyway
    return 0.0 if atten_lim_db > 6000 else 10.0 ** (-float(atten_lim_db) / 20.0)


def parse_atten_lim(text: str | None, name: str = "--atten-lim") -> float | None:
    """``--atten-lim`` (or the field ``name``): a number of dB ≥ 0, ``none`` (no limit: inf), or None (the
    model's own)."""
    if text is None:
        return None
    if text.strip().lower() in ("none", "off"):
        return math.inf
    try:
        value = float(text)  # "inf", "1e400": no limit
    except ValueError:
        value = math.nan
    if not value >= 0:
        raise UserError(f"{name} {text!r}: give a number of dB ≥ 0 (e.g. 20) or 'none'")
    return value


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
    """Iterates blocks ``[C, n]`` and counts their samples (``n``) and channels; ``done`` at the end.
    With ``keep``, the blocks are also kept until :meth:`take` hands them out (the output lags the input by
    at most a window, so that much is held)."""

    def __init__(self, blocks: Iterable[np.ndarray], keep: bool = False):
        self.blocks, self.n, self.channels, self.done = blocks, 0, None, False
        self.kept: deque[np.ndarray] | None = deque() if keep else None

    def take(self, m: int) -> np.ndarray:
        """The next ``m`` kept input samples ``[C, m]`` (zeros where none is kept)."""
        parts, need = [], m
        while need and self.kept:
            b = self.kept[0]
            if b.shape[1] <= need:
                parts.append(self.kept.popleft())
                need -= b.shape[1]
            else:
                parts.append(b[:, :need])
                self.kept[0], need = b[:, need:], 0
        if need:
            parts.append(np.zeros((self.channels or 1, need), np.float32))
        return np.concatenate(parts, axis=1)

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
                if self.kept is not None:
                    self.kept.append(b.copy())  # what the model's side does to b cannot change it
                yield b
        self.done = True


def _limit(y: np.ndarray, src: _Counted, mix: float) -> np.ndarray:
    """The attenuation limit on an output block: ``(1 − g)·y + g·x`` with the input samples it came from."""
    return y if mix == 0.0 else (1.0 - mix) * y + mix * src.take(y.shape[1])


# ------------------------------------------------------------------------------- Denoiser
class Denoiser:
    """A loaded model plus everything needed to turn audio into denoised audio.

    Args:
        model, meta: from :func:`checkpoint.load_model`.
        phase, gl_iters, seed: seed models only: output phase (``noisy`` or ``griffinlim``),
            Griffin-Lim iterations and its seed.
        chunk_seconds: seconds per model call (waveform: default 30; seed: default 2).
        voice: personalised models: the voice to keep (a :class:`.voice.profile.VoiceProfile`, a profile
            file, or recordings of the voice); ``enhance`` / ``stream`` may give another per call.
        atten_lim_db: attenuate nothing by more than this many dB (see the module docstring); None: the
            model's own (``meta["atten_lim_db"]``; the shipped default: 25 dB); ``math.inf``: no limit.
    """

    def __init__(self, model: torch.nn.Module, meta: dict, *, phase: str = "noisy", gl_iters: int = 32,
                 seed: int = 0, chunk_seconds: float | None = None, voice=None, atten_lim_db: float | None = None):
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
        self.seed_model = SeedInference(model, feats, phase, gl_iters, seed) if self.kind == "seed" else None
        self.personalised = getattr(model, "voice_dim", 0) > 0
        self.voice = self._voice(voice) if voice is not None else None
        lim = meta.get("atten_lim_db") if atten_lim_db is None else atten_lim_db
        self.mix = atten_lim_share(lim)  # share of the input in the output
        self.atten_lim_db = None if self.mix == 0.0 else -20.0 * math.log10(self.mix)

    def _voice(self, voice) -> torch.Tensor:
        """A voice as the model takes it: the profile's embedding ``[1, E]`` (refused by a blind model)."""
        if not self.personalised:
            raise UserError("this model is not personalised: it takes no voice profile (use a personalised "
                            "model, e.g. --model voice, or leave out --voice)")
        profile = load_voice(voice)
        return torch.from_numpy(profile.embedding)[None].to(self.device)
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "cpu", **kwargs) -> "Denoiser":
        """Load a run folder, checkpoint folder or .safetensors file (with its .json)."""
        model, meta = load_model(path, device=device)
        return cls(model, meta, **kwargs)

    @classmethod
    def default(cls, device: str = "cpu", **kwargs) -> "Denoiser":
        """The model shipped with this install as ``default`` (see :mod:`.pretrained`)."""
        path = packaged_path("default")
        if path is None:
            raise UserError("no default model shipped in this install; pass --model RUN "
                            "(a run folder, checkpoint folder or .safetensors file)")
        return cls.from_checkpoint(path, device=device, **kwargs)

    @property
    def sample_rate(self) -> int:
        """The rate the model runs at (inputs at any rate are resampled to it and back)."""
        return int(self.meta.get("sample_rate") or self.seed_model.feat.sample_rate)

    # ---------------------------------------------------------------- one window
    @torch.no_grad()
    def _wave_window(self, x: np.ndarray, voice: torch.Tensor | None = None) -> np.ndarray:
        """Waveform models: ``[C, L]`` at the model's rate → ``[C, L]`` (channels are the batch)."""
        wave = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
        y = self.model(wave) if voice is None else self.model(wave, voice.expand(wave.shape[0], -1))
        return y.float().cpu().numpy()

    # ---------------------------------------------------------------- streams
    def stream(self, blocks: Iterable[np.ndarray], sample_rate: int, voice=None,
               atten_lim_db: float | None = None) -> Iterator[np.ndarray]:
        """Denoise a stream: blocks ``[C, n_i]`` at ``sample_rate`` in, float32 blocks ``[C, m_j]`` out.

        The output has the same rate, channels and total length as the input. Blocks may have any
        size; samples must be finite (see :func:`audio.read_blocks`). Memory stays bounded by the
        window size (``chunk_seconds``), whatever the input's length. The rate must be within
        ``audio.MIN_RATE``…``audio.MAX_RATE`` (a UserError otherwise: resampling 1 Hz audio costs without bound).
        A personalised model keeps ``voice`` (or the Denoiser's own); the embedding is computed once.
        ``atten_lim_db``: this call's attenuation limit (None: the Denoiser's own; ``math.inf``: none).
        """
        mix = self.mix if atten_lim_db is None else atten_lim_share(atten_lim_db)
        sr = int(sample_rate)
        check_rate(sr)
        v = self._voice(voice) if voice is not None else self.voice
        if self.personalised and v is None:
            raise UserError("this model is personalised: give a voice profile (--voice me.voice; make one with "
                            "'digit-denoise voice enroll')")
        src = _Counted(blocks, keep=mix > 0)  # the limit mixes the input back in: keep it until then
        if self.kind == "wave":
            rate = self.sample_rate
            hop = int(getattr(self.model.config, "hop", 1) or 1)
            ctx = -(-int(self.model.context) // hop) * hop  # rounded up to hops
            fade = 4 * hop
            overlap = 2 * ctx + fade
            stride = max(-(-round(self.chunk_seconds * rate) // hop) * hop, -(-overlap // hop) * hop)
            out = resample_stream(overlap_add(resample_stream(src, sr, rate), lambda x: self._wave_window(x, v),
                                              window=stride + overlap, discard=ctx, fade=fade), rate, sr)
        else:
            window, discard, fade = self.seed_model.windows(self.chunk_seconds, sr)

            def per_channel(x: np.ndarray) -> np.ndarray:
                return np.stack([self.seed_model.enhance_mono(c, sr) for c in x])

            out = overlap_add(src, per_channel, window=window, discard=discard, fade=fade)
        emitted = 0
        for y in out:  # resampling back may give a sample more or less than the input: fit exactly
            if src.done:
                y = y[:, :max(0, src.n - emitted)]
            emitted += y.shape[1]
            if y.shape[1]:
                yield _limit(y.astype(np.float32, copy=False), src, mix)
        if emitted < src.n:
            yield _limit(np.zeros((src.channels, src.n - emitted), np.float32), src, mix)

    # ---------------------------------------------------------------- public API
    def enhance(self, audio, sample_rate: int | None = None, voice=None, atten_lim_db: float | None = None):
        """Denoise a path, a numpy array or a tensor; returns the same kind.

        Arrays/tensors: ``[T]`` or ``[channels, T]`` at ``sample_rate`` → same shape and rate
        (float32 numpy; tensors keep their dtype and device). Values are not limited: a float result
        may exceed ±1 where the input did.
        A path (any format libsndfile reads) returns ``(array[channels, T], sample_rate)`` of the file.
        ``voice``: for a personalised model, the voice to keep (see the class; default: the Denoiser's own).
        ``atten_lim_db``: this call's attenuation limit (see :meth:`stream`).
        """
        if isinstance(audio, (str, os.PathLike)):
            hdr = info(audio)
            blocks = list(self.stream(read_blocks(audio), hdr.sample_rate, voice, atten_lim_db))
            y = np.concatenate(blocks, axis=1) if blocks else np.zeros((hdr.channels, 0), np.float32)
            return y, hdr.sample_rate
        if sample_rate is None or int(sample_rate) <= 0:
            raise UserError("enhance(audio, sample_rate): give the sample rate of the array")
        if isinstance(audio, torch.Tensor):
            y = self._enhance_array(audio.detach().cpu().float().numpy(), int(sample_rate), voice, atten_lim_db)
            return torch.from_numpy(y).to(audio.device, audio.dtype)
        return self._enhance_array(np.asarray(audio), int(sample_rate), voice, atten_lim_db)

    def _enhance_array(self, x: np.ndarray, sr: int, voice=None, atten_lim_db: float | None = None) -> np.ndarray:
        if x.ndim not in (1, 2):
            raise UserError(f"audio must be [samples] or [channels, samples], got shape {x.shape}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise UserError("audio contains NaN or infinite samples")
        x2 = x[None] if x.ndim == 1 else x
        if x2.shape[0] == 0 or x2.shape[1] == 0:
            return np.zeros(x.shape, np.float32)
        y = np.concatenate(list(self.stream([x2], sr, voice, atten_lim_db)), axis=1)
        return y[0] if x.ndim == 1 else y
