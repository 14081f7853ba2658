"""The shipped speaker encoder: :class:`..models.speaker.SpeakerEncoder` with Resemblyzer's pretrained
weights (Apache-2.0; ``pretrained/LICENSE-resemblyzer``), stored int8 with a float32 scale per row.

:func:`speech` is what the encoder hears of a recording: the input resampled to 16 kHz, its silences
longer than 0.2 s cut out (an energy detector on 30-ms frames) and its level raised to −30 dBFS (never
lowered), as the encoder was trained.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..audio import resample
from ..checkpoint import dequantize
from ..errors import UserError
from ..models.speaker import SAMPLE_RATE, SpeakerEncoder
from ..pretrained import FOLDER

ENCODER_FILE = FOLDER / "voice-encoder.safetensors"
FRAME = 480  # 30 ms at 16 kHz
SPEECH_DB = 35.0  # a frame within this many dB of the loudest frames is speech
KEEP_SILENCE = 7  # frames of silence kept between speech (0.21 s)
TARGET_DBFS = -30.0


@functools.lru_cache(maxsize=1)
def speaker_encoder() -> SpeakerEncoder:
    """The shipped encoder, loaded once (eval mode, CPU)."""
    try:
        packed = load_file(str(ENCODER_FILE))
    except (FileNotFoundError, SafetensorError, OSError) as e:
        raise UserError(f"{ENCODER_FILE}: the speaker encoder of voice profiles is missing or damaged ({e}); "
                        "reinstall digit-denoise") from None
    enc = SpeakerEncoder()
    enc.load_state_dict(dequantize(packed))
    return enc.eval()


def speech(x: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """(what the encoder hears: the speech of mono ``x`` at 16 kHz, level-normalised; seconds of speech)."""
    w = resample(np.asarray(x, np.float32), sr, SAMPLE_RATE) if sr != SAMPLE_RATE else np.asarray(x, np.float32)
    n = len(w) // FRAME
    if n == 0:
        return np.zeros(0, np.float32), 0.0
    frames = w[:n * FRAME].reshape(n, FRAME)
    energy = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.percentile(energy, 95)
    voiced = (energy > loud - SPEECH_DB) & (energy > -70)  # -70 dBFS: digital near-silence is never speech
    keep = np.convolve(voiced.astype(float), np.ones(2 * KEEP_SILENCE + 1))[KEEP_SILENCE:KEEP_SILENCE + n] > 0
    out = frames[keep].reshape(-1)
    seconds = float(voiced.sum()) * FRAME / SAMPLE_RATE
    rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2))) if out.size else 0.0
    if rms > 0:
        out = out * max(1.0, 10 ** (TARGET_DBFS / 20) / rms)
    return out.astype(np.float32), seconds


def embed(x: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """(the embedding ``[256]`` of a mono recording, seconds of speech in it)."""
    w, seconds = speech(x, sr)
    if w.size < FRAME:
        return np.zeros(256, np.float32), 0.0
    return speaker_encoder().embed(torch.from_numpy(w)).numpy(), seconds
