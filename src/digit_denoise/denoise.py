"""``digit-denoise denoise``: files and folders in, denoised files out; originals are never touched.

Plan first, then work (:func:`plan`): every input must exist; a folder is walked recursively (hidden
files and folders, and the output folder itself, are left out) and its tree is kept under ``-o``.
Files whose name is not an audio extension are skipped; ones whose header libsndfile cannot read
fail. Usage mistakes stop everything before any work (exit 2): a missing input, an output that
would be an input, two inputs writing the same output.

Each file (:func:`denoise_file`) is streamed block by block through :meth:`Denoiser.stream` (any
length in bounded memory) into a raw float32 scratch file beside the output, while its peak is
measured; then it is written in the output format, scaled down if it would clip (integer and lossy
formats only), to a temp name that is renamed into place. On any error both temp files are
removed, so no partial output is ever left behind.

Output format follows the input (format, subtype, rate, channels, length) unless ``--format``; an
input whose format libsndfile cannot write (e.g. MP3 without LAME support) is written as FLAC.

Exit status: 0 everything done (or skipped because the output exists), 1 some files failed (the
others are done), 2 a usage mistake (with one input file, any failure is reported like this too).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from .audio import (
    AUDIO_FORMATS,
    FORMATS,
    AudioInfo,
    NotRegularFile,
    atomic_path,
    check_input,
    check_rate,
    info,
    read_blocks,
    write_blocks,
)
from .enhance import Denoiser
from .errors import UserError
from .pretrained import PERSONALISED, packaged_path
from .progress import progress, say

# --format NAME → (libsndfile format, subtype or None for "the input's if it fits", file extension)
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # can hold values beyond ±1: never limited
HIGH_RES = ("PCM_24", "PCM_32", "FLOAT", "DOUBLE")
LIMIT = 0.99  # peak after limiting (-0.09 dBFS)
BLOCK = 1 << 16  # frames per read / write
SUMMARY_LINES = 20  # failed / skipped files listed by name in the summary (per kind)


@dataclass
class Job:
    """One input file and what will happen to it."""

    src: Path
    dst: Path | None = None
    format: str = ""  # libsndfile format of the output
    subtype: str = ""  # libsndfile subtype of the output
    status: str = "todo"  # todo → done, or skipped / failed
    reason: str = ""  # why skipped / failed
    note: str = ""  # e.g. a format change or limiting


# --------------------------------------------------------------------------------- planning
def _walk(folder: Path, recursive: bool, exclude: Path | None) -> Iterator[Path]:
    """Files under ``folder`` (sorted), without hidden names, symlinked folders or ``exclude``."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (exclude is None or
                                                                        _resolved(Path(root) / d) != exclude))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name
        if not recursive:
            return


def output_format(hdr: AudioInfo, fmt: str | None, dst_suffix: str | None) -> tuple[str, str, str, str]:
    """(format, subtype, extension, note) of the output of an input with header ``hdr``.

    ``fmt``: a :data:`FORMATS` name (``--format``); ``dst_suffix``: the extension of an explicit
    ``-o FILE``. Neither: the input's own format and subtype, or FLAC if libsndfile cannot write it.
    The subtype follows the input's where the format allows it.
    """
    note = ""
    if fmt is None and dst_suffix:
        fmt = next((k for k, v in FORMATS.items() if v[2] == dst_suffix), None)
        if fmt is None:
            known = AUDIO_FORMATS.get(dst_suffix)
            if known != hdr.format:
                raise UserError(f"output extension '{dst_suffix}': use .wav, .flac, .ogg, .opus, .mp3 or .aiff "
                                "(or the input's own extension)")
    if fmt is None:
        format, subtype, ext = hdr.format, hdr.subtype, None
        if not sf.check_format(format, subtype):
            format, subtype, ext = "FLAC", "", ".flac"
            note = f"written as FLAC ({hdr.format}/{hdr.subtype} cannot be written by this libsndfile)"
    else:
        if fmt not in FORMATS:
            raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
        format, subtype, ext = FORMATS[fmt]
        subtype = subtype or ""
    if not subtype:
        subtype = hdr.subtype if sf.check_format(format, hdr.subtype) else ""
    if not subtype:
        subtype = "PCM_24" if format in ("FLAC", "AIFF", "WAV") and hdr.subtype in HIGH_RES else \
            sf.default_subtype(format)
    if not sf.check_format(format, subtype):
        raise UserError(f"output format {format}/{subtype} cannot be written by this libsndfile; try --format wav")
    return format, subtype, ext or "", note


def _resolved(p: Path) -> Path:
    """``p`` with its links followed, or as far as they go: a link loop is not an error here (Path.resolve
    raises on one), it fails later as that file's own error."""
    return Path(os.path.realpath(p))


def _file_id(p: Path) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        st = p.stat()
        return st.st_dev, st.st_ino
    return None


def plan(inputs: list[str], output: str, *, fmt: str | None = None, recursive: bool = True,
         overwrite: bool = False) -> list[Job]:
    """The jobs for ``inputs`` → ``output`` (nothing is written).

    One input file: ``output`` is the output file (or a folder that exists / ends with ``/``).
    Otherwise ``output`` is a folder: input files go to ``output/NAME``, a folder's files to
    ``output/<path inside that folder>``. Raises :class:`UserError` for usage mistakes.
    """
    if not inputs:
        raise UserError("give at least one input file or folder")
    ins = [Path(p) for p in inputs]
    for p in ins:
        if not p.is_dir():
            check_input(p)  # a missing file, a link loop, a FIFO...: a usage mistake for a named input
    out = Path(output)
    single = len(ins) == 1 and ins[0].is_file()
    to_file = single and not (out.is_dir() or output.endswith(("/", os.sep)))
    if to_file and fmt in FORMATS and out.suffix and out.suffix.lower() != FORMATS[fmt][2]:
        raise UserError(f"-o {out} does not end in {FORMATS[fmt][2]} but --format is {fmt}; make them agree")
    if not to_file and out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; with several inputs or a folder, -o must be a folder")

    found: list[tuple[Path, Path]] = []  # (source, output path before the format's extension)
    for p in ins:
        if p.is_dir():
            exclude = _resolved(out) if _resolved(out) != _resolved(p) else None
            found += [(f, out / f.relative_to(p)) for f in _walk(p, recursive, exclude)]
        else:
            found.append((p, out if to_file else out / p.name))

    jobs = []
    for src, dst in found:
        job = Job(src)
        jobs.append(job)
        if not single and src.suffix.lower() not in AUDIO_FORMATS:
            job.status, job.reason = "skipped", f"not an audio file name ('{src.suffix or src.name}')"
            continue
        try:
            hdr = info(src)  # regular files only: a FIFO, socket or device is refused, never opened
            check_rate(hdr.sample_rate, str(src))
            job.format, job.subtype, ext, job.note = output_format(hdr, fmt, dst.suffix.lower() if to_file else None)
        except NotRegularFile as e:
            job.status, job.reason = "skipped", str(e).split(": ", 1)[-1]
            continue
        except UserError as e:
            if single:
                raise
            job.status, job.reason = "failed", str(e)
            continue
        job.dst = dst.with_suffix(ext) if ext and not to_file else dst

    sources = {_resolved(j.src) for j in jobs} | {_file_id(j.src) for j in jobs}  # paths and (device, inode)s
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.dst is None:
            continue
        if _resolved(job.dst) in sources or (job.dst.exists() and _file_id(job.dst) in sources):
            raise UserError(f"{job.dst}: output would overwrite an input; choose another -o")
        key = _resolved(job.dst)
        if key in seen:
            raise UserError(f"{job.dst}: inputs {seen[key]} and {job.src} would both be written there "
                            "(same file name); denoise them into different folders")
        seen[key] = job.src
        if job.dst.exists() and not overwrite:
            if single:
                raise UserError(f"{job.dst}: already exists; pass --overwrite or choose another -o")
            job.status, job.reason = "skipped", "output exists (pass --overwrite to replace it)"
    return jobs


# --------------------------------------------------------------------------------- one file
@contextlib.contextmanager
def _scratch(beside: Path) -> Iterator[Path]:
    """A hidden temp file beside ``beside`` (removed afterwards, whatever happens)."""
    fd, name = tempfile.mkstemp(prefix=f".{beside.name}.", suffix=".f32", dir=beside.parent)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def denoise_file(den, src: Path, dst: Path, *, format: str, subtype: str, overwrite: bool = False) -> str:
    """Denoise ``src`` into ``dst`` (atomically); returns a note ("" or what was limited).

    Pass 1 streams the denoised audio into a raw float32 scratch file and measures its peak;
    pass 2 writes ``dst`` in ``format``/``subtype``, scaled to a peak of :data:`LIMIT` if it would
    otherwise clip (not for float subtypes, which hold any level).
    """
    hdr = info(src)
    with atomic_path(dst, overwrite=overwrite) as tmp, _scratch(tmp) as scratch:
        peak, frames = 0.0, 0
        try:
            with open(scratch, "wb") as f:
                for y in den.stream(read_blocks(src, BLOCK), hdr.sample_rate):
                    if not np.isfinite(y).all():
                        raise UserError(f"{src}: the model produced NaN/Inf output; is the model file damaged?")
                    peak = max(peak, float(np.abs(y).max()))
                    f.write(np.ascontiguousarray(y.T, dtype="<f4").tobytes())
                    frames += y.shape[1]
        except OSError as e:
            raise UserError(f"{dst}: could not write a temp file beside it ({e.strerror or e}); "
                            "check the free space") from None
        gain, note = 1.0, ""
        if peak > 1.0 and subtype not in FLOAT_SUBTYPES:
            gain = LIMIT / peak
            note = f"scaled by {20 * np.log10(gain):.1f} dB to avoid clipping (peak was {peak:.2f})"
        def blocks():
            with open(scratch, "rb") as f:
                for start in range(0, frames, BLOCK):
                    n = min(BLOCK, frames - start)
                    block = np.frombuffer(f.read(4 * n * hdr.channels), dtype="<f4").reshape(n, hdr.channels)
                    yield block * np.float32(gain) if gain != 1.0 else block

        try:
            write_blocks(tmp, blocks(), hdr.sample_rate, hdr.channels, subtype=subtype, format=format)
        except UserError as e:
            hint = "" if "free space" in str(e) else "; try --format wav"
            raise UserError(str(e).replace(str(tmp), str(dst)) + hint) from None
    return note


# --------------------------------------------------------------------------------- the command
def _reason(job: Job) -> str:
    prefix = f"{job.src}: "
    return job.reason[len(prefix):] if job.reason.startswith(prefix) else job.reason


def summarize(jobs: list[Job], dry_run: bool = False) -> None:
    """Status lines on stderr: counts, then the failed and skipped files with reasons, then notes."""
    count = {s: sum(j.status == s for j in jobs) for s in ("done", "todo", "skipped", "failed")}
    if not jobs:
        say("no files found in the input folder(s)")
    if dry_run:
        say(f"dry run: {count['todo']} to denoise, {count['skipped']} to skip, {count['failed']} would fail")
    else:
        say(f"denoised {count['done']} file(s), skipped {count['skipped']}, failed {count['failed']}")
    for status in ("failed", "skipped"):
        listed = [j for j in jobs if j.status == status]
        for j in listed[:SUMMARY_LINES]:
            say(f"  {status}: {j.src}: {_reason(j)}")
        if len(listed) > SUMMARY_LINES:
            say(f"  ... and {len(listed) - SUMMARY_LINES} more {status}")
    for j in jobs:
        if j.note and j.status in ("done", "todo"):
            say(f"  note: {j.src}: {j.note}")


def denoise_paths(inputs: list[str], output: str, *, model: str | None = None, phase: str = "noisy",
                  gl_iters: int = 32, overwrite: bool = False, fmt: str | None = None, dry_run: bool = False,
                  recursive: bool = True, voice: str | None = None, atten_lim_db: float | None = None) -> int:
    """Denoise files and folders; returns the exit status (0 all done, 1 some failed, 2 see UserError).

    ``model``: a run folder, checkpoint folder or .safetensors file; None: the shipped default (with
    ``voice``, the shipped personalised model). ``voice``: a profile file or recordings of the voice to keep.
    ``atten_lim_db``: see :class:`.enhance.Denoiser` (None: the model's own).
    """
    jobs = plan(inputs, output, fmt=fmt, recursive=recursive, overwrite=overwrite)
    single = len(inputs) == 1 and Path(inputs[0]).is_file()
    if model is None and voice is not None:
        model = PERSONALISED
        if packaged_path(model) is None:
            raise UserError("--voice: no personalised model is shipped in this install; pass --model RUN (a "
                            "personalised model you trained)")
    den = Denoiser.from_checkpoint(model, phase=phase, gl_iters=gl_iters, voice=voice, atten_lim_db=atten_lim_db) \
        if model else Denoiser.default(phase=phase, gl_iters=gl_iters, atten_lim_db=atten_lim_db)
    if dry_run:
        for j in jobs:
            what = f"→ {j.dst}" if j.status == "todo" else f"{j.status}: {_reason(j)}"
            print(f"{j.src} {what}" + (f"  ({j.note})" if j.note and j.status == "todo" else ""))
        summarize(jobs, dry_run=True)
        return 1 if any(j.status == "failed" for j in jobs) else 0
    todo = [j for j in jobs if j.status == "todo"]
    for job in progress(todo, desc="denoise", unit="file"):
        try:
            note = denoise_file(den, job.src, job.dst, format=job.format, subtype=job.subtype, overwrite=overwrite)
            job.status, job.note = "done", "; ".join(n for n in (job.note, note) if n)
        except UserError as e:
            if single:
                raise
            job.status, job.reason = "failed", str(e)
        except Exception as e:  # a bug or a system error on one file must not lose the rest of a batch
            if single:
                raise
            job.status, job.reason = "failed", f"unexpected error ({type(e).__name__}: {str(e)[:160]})"
    summarize(jobs)
    return 1 if any(j.status == "failed" for j in jobs) else 0
