"""Audio and pictures of the API: uploads checked from their header before a sample is decoded, WAV
answers, spectrogram PNGs and a download name any browser can take.

The work a request causes is bounded by what it sent: a sample rate outside ``audio.MIN_RATE`` …
``audio.MAX_RATE`` is refused (a 1 Hz file would be resampled 16,000×), and so is more audio than
``max_seconds`` × 48,000 samples (duration × channels, rates above 48 kHz counting proportionally),
both read from the header. A format whose header does not tell its length is decoded block by block
and refused as soon as it passes the same bound.
"""

from __future__ import annotations

import io
import re
import unicodedata
from urllib.parse import quote

import numpy as np
import soundfile as sf

from ..audio import MAX_RATE, MIN_RATE
from ..figures import subplots

TRUNCATED = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
BUDGET_RATE = 48000  # --max-seconds counts samples at this rate (× channels)
BLOCK = 1 << 16  # frames decoded at a time


class BadRequest(Exception):
    """A request the client can fix: ``status`` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _open(data: bytes, name: str) -> sf.SoundFile:
    try:
        return sf.SoundFile(io.BytesIO(data))
    except Exception as e:  # libsndfile: not audio, unknown format, truncated header
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        msg = re.sub(r"^Error opening .*?: ", "", msg)[:120]  # libsndfile names the in-memory buffer
        raise BadRequest(415, f"{name}: not a readable audio file ({msg})") from None


def read_upload(data: bytes, name: str, max_seconds: float = 300.0) -> tuple[np.ndarray, int, str]:
    """(audio [channels, samples] float32, rate, subtype) of uploaded bytes; a :class:`BadRequest` if they are
    empty, not audio, at an unsupported rate, longer than the budget, truncated or not finite."""
    if not data:
        raise BadRequest(400, f"{name}: the upload is empty")
    budget = int(max_seconds * BUDGET_RATE)  # samples × channels
    with _open(data, name) as f:
        rate, subtype, frames, channels = f.samplerate, f.subtype, f.frames, f.channels
        if not MIN_RATE <= rate <= MAX_RATE:
            raise BadRequest(422, f"{name}: sample rate {rate} Hz is outside the supported {MIN_RATE}–{MAX_RATE} Hz")
        if not 1 <= channels <= 64:
            raise BadRequest(422, f"{name}: {channels} channels; at most 64 are accepted")
        known = 0 < frames < 1 << 40
        if known and frames * channels > budget:
            raise BadRequest(413, f"{name}: {frames / rate:.0f} s × {channels} channel(s) of audio is more than this "
                                  f"server takes ({max_seconds:g} s at up to 48 kHz); split the file")
        short = TRUNCATED.search(f.extra_info or "")  # libsndfile: "data : 16000 (should be 7978)"
        blocks, total = [], 0
        try:
            while True:
                block = f.read(BLOCK, dtype="float32", always_2d=True)
                if not len(block):
                    break
                total += block.size
                if total > budget:
                    raise BadRequest(413, f"{name}: more audio than this server takes ({max_seconds:g} s at up to "
                                          "48 kHz); split the file")
                blocks.append(block)
        except BadRequest:
            raise
        except Exception as e:  # libsndfile, mid-file
            raise BadRequest(422, f"{name}: unreadable audio ({str(e).strip()[:100]})") from None
    x = np.concatenate(blocks).T if blocks else np.zeros((channels, 0), np.float32)
    if x.shape[1] == 0:
        raise BadRequest(400, f"{name}: the audio has no samples")
    if short or (known and x.shape[1] < frames):
        said = f" ({short.group(2)} of {short.group(1)} bytes of audio)" if short else ""
        raise BadRequest(422, f"{name}: the file is truncated{said}; upload the whole file")
    if not np.isfinite(x).all():
        raise BadRequest(422, f"{name}: the audio holds NaN or infinite samples")
    return np.ascontiguousarray(x), rate, subtype


def wav_bytes(x: np.ndarray, rate: int, subtype: str) -> bytes:
    """``[channels, samples]`` → WAV bytes; integer outputs are scaled down as a whole if they would clip."""
    if subtype not in ("FLOAT", "DOUBLE", "PCM_16", "PCM_24", "PCM_32", "PCM_U8"):
        subtype = "PCM_16"
    peak = float(np.abs(x).max()) if x.size else 0.0
    if subtype not in ("FLOAT", "DOUBLE") and peak > 0.99:
        x = x * (0.99 / peak)
    buf = io.BytesIO()
    sf.write(buf, np.ascontiguousarray(x.T), rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def spectrogram_png(x: np.ndarray, rate: int, title: str) -> bytes:
    """A small log-magnitude spectrogram (first channel) as PNG."""
    fig, ax = subplots(figsize=(6, 2.6), dpi=80)
    mono = x[0] if x.shape[1] >= 64 else np.pad(x[0], (0, 64 - x.shape[1]))
    ax.specgram(mono, NFFT=512 if rate > 12000 else 256, Fs=rate, noverlap=384 if rate > 12000 else 192,
                cmap="magma", vmin=-120)
    ax.set_title(title)
    ax.set_xlabel("s")
    ax.set_ylabel("Hz")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def attachment(filename: str) -> str:
    """A ``Content-Disposition`` for any file name: an ASCII fallback (letters, digits, ``.-_`` only) and the
    UTF-8 name (RFC 6266 / 5987), so ``漢字.wav`` and ``a"b.wav`` both come back intact and well-formed."""
    def plain(text: str) -> str:
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")

    stem, dot, ext = filename.rpartition(".") if "." in filename else (filename, "", "")
    fallback = (plain(stem)[:80] or "audio") + ("." + plain(ext)[:10] if plain(ext) else "")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename[:100], safe='')}"
