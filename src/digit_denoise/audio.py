"""Audio I/O at the edges: read any file libsndfile reads, resample with soxr, write atomically.

Arrays are float32 shaped ``(channels, samples)``. Nothing here knows about models or manifests.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

from .errors import UserError

# File extensions taken as audio (in folders, corpora, noise folders and for output names) and the
# libsndfile format each one means: the one list of audio extensions in the package.
AUDIO_FORMATS = {
    ".wav": "WAV", ".wave": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".opus": "OGG", ".mp3": "MP3",
    ".aif": "AIFF", ".aiff": "AIFF", ".aifc": "AIFF", ".au": "AU", ".snd": "AU", ".caf": "CAF", ".w64": "W64",
    ".rf64": "RF64", ".voc": "VOC", ".sd2": "SD2", ".ircam": "IRCAM", ".sf": "IRCAM", ".nist": "NIST",
    ".sph": "NIST", ".avr": "AVR", ".htk": "HTK", ".paf": "PAF", ".pvf": "PVF", ".xi": "XI", ".mat": "MAT5",
    ".svx": "SVX", ".8svx": "SVX", ".wve": "WVE", ".mpc": "MPC2K",
}
AUDIO_EXTENSIONS = tuple(AUDIO_FORMATS)

# output formats of `denoise --format`: name → (libsndfile format, subtype or None for its default, extension)
FORMATS = {
    "wav": ("WAV", None, ".wav"),
    "flac": ("FLAC", None, ".flac"),
    "ogg": ("OGG", "VORBIS", ".ogg"),
    "opus": ("OGG", "OPUS", ".opus"),
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3"),
    "aiff": ("AIFF", None, ".aiff"),
}


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says."""

    frames: int
    sample_rate: int
    channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


MIN_RATE, MAX_RATE = 4000, 384000  # sample rates accepted (Hz): outside them, resampling costs without bound


def check_rate(rate: int, name: str = "audio") -> None:
    """Refuse a sample rate outside ``MIN_RATE``…``MAX_RATE`` (a 1 Hz file would be resampled 16,000×)."""
    if not MIN_RATE <= int(rate) <= MAX_RATE:
        raise UserError(f"{name}: sample rate {rate} Hz is outside the supported {MIN_RATE}–{MAX_RATE} Hz; "
                        "resample or re-export the file")


class NotRegularFile(UserError):
    """A FIFO, socket or device where an audio file was expected: skipped, never opened."""


def check_input(path: Path) -> None:
    """A regular file (or a link to one): never a folder, FIFO, device or socket, whose reading could block."""
    try:
        st = path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{path}: a loop of symbolic links; fix the link") from None
        if path.is_symlink():
            raise UserError(f"{path}: a broken symbolic link (its target does not exist)") from None
        raise UserError(f"{path}: no such file or folder; check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path}: is a folder, expected an audio file")
    if not stat.S_ISREG(st.st_mode):
        kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
        raise NotRegularFile(f"{path}: is a {kind}, not a regular file; only regular files are read")


def info(path: str | os.PathLike) -> AudioInfo:
    """Read an audio file's header. Raises :class:`UserError` if it is not readable audio."""
    path = Path(path)
    check_input(path)
    try:
        i = sf.info(str(path))
    except Exception as e:  # libsndfile's errors are RuntimeError / LibsndfileError
        raise UserError(f"{path}: not a readable audio file ({_short(e)})") from None
    return AudioInfo(i.frames, i.samplerate, i.channels, i.format, i.subtype)


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return msg[:160]


def load_mono(path: str | os.PathLike, sr: int) -> np.ndarray:
    """A file as mono float32 ``[samples]`` at ``sr``: the package's one clip loader (see :func:`load_audio`)."""
    audio, _ = load_audio(path, sr=sr, mono=True)
    return np.ascontiguousarray(audio[0], dtype=np.float32)


def resample_stream(blocks: Iterable[np.ndarray], sr_in: int, sr_out: int) -> Iterator[np.ndarray]:
    """soxr (HQ) streaming resampler over blocks ``[C, n]``: the package's one resampler. The
    output of all blocks is that of the whole signal (length ``round(n_total · sr_out / sr_in)``)."""
    if sr_in == sr_out:
        yield from blocks
        return
    stream, channels = None, 0
    for block in blocks:
        if stream is None:
            channels = block.shape[0]
            stream = soxr.ResampleStream(sr_in, sr_out, channels, dtype="float32", quality="HQ")
        y = stream.resample_chunk(np.ascontiguousarray(block.T, dtype=np.float32), last=False)
        if len(y):
            yield np.ascontiguousarray(y.T)
    if stream is not None:
        y = stream.resample_chunk(np.zeros((0, channels), np.float32), last=True)
        if len(y):
            yield np.ascontiguousarray(y.T)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``(channels, samples)`` or ``(samples,)`` float audio (:func:`resample_stream` in one block)."""
    x = np.asarray(audio, np.float32)
    if sr_in == sr_out:
        return x
    x2 = x[None] if x.ndim == 1 else x
    parts = list(resample_stream([x2], sr_in, sr_out))
    y = np.concatenate(parts, axis=-1) if parts else np.zeros((x2.shape[0], 0), np.float32)
    return np.ascontiguousarray(y[0] if x.ndim == 1 else y, dtype=np.float32)


def load_audio(path: str | os.PathLike, sr: int | None = None, mono: bool = False,
               start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 ``(channels, samples)``, optionally resampled to ``sr``.

    Args:
        path: any file libsndfile reads (WAV, FLAC, OGG, MP3, ...).
        sr: target sample rate; None keeps the file's rate.
        mono: average channels into one.
        start, frames: read only part of the file (in the file's own samples).
    Returns:
        (audio, sample_rate). Non-finite samples raise :class:`UserError`.
    """
    path = Path(path)
    check_input(path)
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True, start=start,
                                frames=frames)
    except Exception as e:
        raise UserError(f"{path}: not a readable audio file ({_short(e)})") from None
    audio = np.ascontiguousarray(data.T)  # (channels, samples)
    if not np.isfinite(audio).all():
        raise UserError(f"{path}: contains NaN or infinite samples; repair or re-export the file")
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True)
    if sr is not None and sr != file_sr:
        audio = resample(audio, file_sr, sr)
        file_sr = sr
    return audio, int(file_sr)


_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    Nothing half-written is ever left at ``path``: on error the temp file is removed.
    With ``overwrite=False`` an existing ``path`` raises :class:`UserError` first.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise UserError(f"{path}: already exists; pass --overwrite or choose another output")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise UserError(f"{path}: cannot write there ({e.strerror}); choose a writable folder") from None
    os.close(fd)
    tmp = Path(tmp)
    with contextlib.suppress(OSError):  # mkstemp makes private 0600 files; use the usual umask mode
        os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_blocks(path: str | os.PathLike, blocks: Iterable[np.ndarray], sr: int, channels: int, *,
                 subtype: str | None = None, format: str = "WAV") -> None:
    """Write blocks ``[samples, channels]`` to ``path`` as they come (not atomic: give it a temp path, see
    :func:`atomic_path`). A format/subtype/rate combination libsndfile refuses is a :class:`UserError`."""
    path = Path(path)
    try:
        with sf.SoundFile(str(path), "w", sr, channels, subtype, format=format) as out:
            for block in blocks:
                out.write(block)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise UserError(f"{path}: cannot write {format}/{subtype or 'default'} at {sr} Hz, {channels} "
                        f"channel(s) ({_short(e)})") from None
    except OSError as e:
        raise UserError(f"{path}: could not write ({e.strerror or e}); check the free space and permissions") \
            from None


def write_audio(path: str | os.PathLike, audio: np.ndarray, sr: int, *, subtype: str | None = None,
                format: str | None = None, overwrite: bool = False) -> Path:
    """Write ``(channels, samples)`` or ``(samples,)`` float audio atomically (temp + rename).

    The format follows the file extension unless ``format`` is given (libsndfile names: WAV,
    FLAC, OGG, MP3...). ``subtype`` e.g. PCM_16, PCM_24, FLOAT; None takes the format's default.
    """
    path = Path(path)
    data = np.asarray(audio, dtype=np.float32)
    data = data.T if data.ndim == 2 else data[:, None]
    if format is None:
        format = AUDIO_FORMATS.get(path.suffix.lower())
        if format is None:
            raise UserError(f"{path}: unknown output extension '{path.suffix}'; use .wav, .flac, .ogg or .mp3")
    if subtype is not None and not sf.check_format(format, subtype):
        subtype = None
    with atomic_path(path, overwrite=overwrite) as tmp:
        try:
            write_blocks(tmp, [data], sr, data.shape[1], subtype=subtype, format=format)
        except UserError as e:
            raise UserError(str(e).replace(str(tmp), str(path))) from None
    return path


def read_blocks(path: str | os.PathLike, block: int = 1 << 16) -> Iterator[np.ndarray]:
    """Stream ``path`` as float32 blocks ``(channels, ≤ block)`` (bounded memory for any length).

    Read errors (also ones found mid-file) and non-finite samples raise :class:`UserError` naming the
    file and the time of the bad block. The file is closed when the generator ends or is closed.
    """
    path = Path(path)
    check_input(path)
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:
        raise UserError(f"{path}: not a readable audio file ({_short(e)})") from None
    with f:
        pos = 0
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except Exception as e:
                raise UserError(f"{path}: unreadable audio at {pos / f.samplerate:.2f} s ({_short(e)})") from None
            if not len(data):
                return
            finite = np.isfinite(data).all(axis=1)
            if not finite.all():
                at = (pos + int(np.argmin(finite))) / f.samplerate
                raise UserError(f"{path}: contains NaN or infinite samples (first at {at:.3f} s); "
                                "repair or re-export the file")
            pos += len(data)
            yield np.ascontiguousarray(data.T)
