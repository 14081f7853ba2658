"""Nasty inputs for ``digit-denoise denoise``: every case gets a clear one-line error (exit 2), a partial
failure report (exit 1) or a correct output (exit 0) — never a traceback, never a partial or temp file left
behind, and the originals are byte-for-byte untouched (sha256 before/after).

All inputs are generated on the fly. The default model is a near-identity MaskNet (mask ≈ 1), so a correct
output can be checked against the input itself (level, channels, alignment)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
from model_files import save_wave_model

from digit_denoise.cli import main

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ident(tmp_path_factory) -> Path:
    return save_wave_model(tmp_path_factory.mktemp("m") / "ident", identity=True)


def tone(n: int, sr: int, f: float = 440.0, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def close_to(y: np.ndarray, x: np.ndarray, sr: int, atol: float = 2e-3) -> None:
    """Output ≈ input (near-identity model) away from the resampler's 10-ms edge transients."""
    assert y.shape == x.shape
    e = max(1, int(0.01 * sr))
    if x.shape[0] > 2 * e:
        assert np.abs(y - x)[e:-e].max() < atol


@dataclass
class Case:
    """One nasty input: files made under ``root/in``, the CLI arguments and what must happen."""

    inputs: list[str]  # paths (relative to root) given to the command
    output: str  # -o (relative to root, or absolute)
    code: int  # expected exit status
    error: str | None = None  # exit 2: a piece of the one-line message
    check: Callable[[Path], None] | None = None  # exit 0/1: inspects root
    extra: list[str] = field(default_factory=list)  # more CLI options
    stderr: str | None = None  # a piece of stderr (summary lines)


def write(root: Path, name: str, x: np.ndarray, sr: int, **kw) -> str:
    p = root / "in" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(p), x.T if x.ndim == 2 else x, sr, **kw)
    return f"in/{name}"


def raw(root: Path, name: str, data: bytes) -> str:
    p = root / "in" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return f"in/{name}"


def out_audio(root: Path, rel: str = "out.wav", **kw) -> tuple[np.ndarray, sf._SoundFileInfo]:
    p = root / rel
    y, _ = sf.read(str(p), dtype="float32", **kw)
    return y, sf.info(str(p))


# --------------------------------------------------------------------------------- the cases
def c_empty_file(r):
    return Case([raw(r, "empty.wav", b"")], "out.wav", 2, "not a readable audio file")


def c_zero_samples(r):
    def check(r):
        assert sf.info(str(r / "out.wav")).frames == 0
    return Case([write(r, "zero.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")], "out.wav", 0, check=check)


def c_one_sample(r):
    def check(r):
        y, i = out_audio(r)
        assert (i.frames, i.samplerate, i.subtype) == (1, 8000, "PCM_16") and np.isfinite(y).all()
    return Case([write(r, "one.wav", np.array([0.5], np.float32), 8000, subtype="PCM_16")], "out.wav", 0,
                check=check)


def c_truncated_header(r):
    good = r / "tmp.wav"
    sf.write(str(good), tone(1000, 8000), 8000, subtype="PCM_16")
    data = good.read_bytes()[:20]
    good.unlink()
    return Case([raw(r, "truncated.wav", data)], "out.wav", 2, "not a readable audio file")


def c_text_named_wav(r):
    return Case([raw(r, "notes.wav", b"this is a text file, not audio\n" * 10)], "out.wav", 2,
                "not a readable audio file")


def c_unsupported_format(r):  # an MP4/AAC file: libsndfile cannot read it
    data = b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + bytes(200)
    return Case([raw(r, "voice.m4a", data)], "out.wav", 2, "not a readable audio file")


def c_all_zero(r):
    def check(r):
        y, i = out_audio(r)
        assert i.frames == 16000 and not y.any()  # digital silence stays digital silence
    return Case([write(r, "silence.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")], "out.wav", 0,
                check=check)


def c_full_scale_square(r):
    x = np.sign(np.sin(2 * np.pi * 200 * (np.arange(8000) + 0.5) / 8000)).astype(np.float32)

    def check(r):
        y, _ = out_audio(r)
        assert np.abs(y).max() <= 0.991  # the resampler's overshoot (~8 %) was limited, not clipped or wrapped
        assert np.corrcoef(y, x)[0, 1] > 0.95
    return Case([write(r, "square.wav", x, 8000, subtype="PCM_16")], "out.wav", 0, check=check,
                stderr="to avoid clipping")


def c_nan_in_float_wav(r):
    x = tone(8000, 8000)
    x[4000] = np.nan
    return Case([write(r, "nan.wav", x, 8000, subtype="FLOAT")], "out.wav", 2, "NaN or infinite samples")


def c_inf_in_float_wav(r):
    x = tone(8000, 8000)
    x[100] = -np.inf
    return Case([write(r, "inf.wav", x, 8000, subtype="FLOAT")], "out.wav", 2, "NaN or infinite samples")


def c_dc_offset(r):
    x = tone(16000, 16000, amp=0.2) + 0.5

    def check(r):
        y, i = out_audio(r)
        assert i.frames == 16000 and np.isfinite(y).all() and abs(float(y[1000:-1000].mean()) - 0.5) < 0.02
    return Case([write(r, "dc.wav", x, 16000, subtype="PCM_16")], "out.wav", 0, check=check)


def c_8bit_unsigned(r):
    x = tone(8000, 8000, amp=0.5)

    def check(r):
        y, i = out_audio(r)
        assert i.subtype == "PCM_U8"
        close_to(y, x, 8000, atol=0.02)  # 8-bit quantisation
    return Case([write(r, "u8.wav", x, 8000, subtype="PCM_U8")], "out.wav", 0, check=check)


def c_24bit(r):
    x = tone(44100, 44100)

    def check(r):
        y, i = out_audio(r)
        assert (i.subtype, i.samplerate) == ("PCM_24", 44100)
        close_to(y, x, 44100)
    return Case([write(r, "24.wav", x, 44100, subtype="PCM_24")], "out.wav", 0, check=check)


def c_float_over_one(r):
    x = tone(16000, 16000, amp=4.0)

    def check(r):
        y, i = out_audio(r)
        assert i.subtype == "FLOAT"
        close_to(y, x, 16000, atol=1e-3)  # float keeps the level, beyond ±1
    return Case([write(r, "hot.wav", x, 16000, subtype="FLOAT")], "out.wav", 0, check=check)


def c_float_over_one_to_pcm(r):
    x = tone(16000, 16000, amp=4.0)

    def check(r):
        y, i = out_audio(r, "out.flac")
        assert i.subtype == "PCM_24" and 0.98 < np.abs(y).max() <= 0.991
    return Case([write(r, "hot.wav", x, 16000, subtype="FLOAT")], "out.flac", 0, check=check,
                stderr="scaled by -12.1 dB to avoid clipping")


def c_stereo_one_silent(r):
    x = np.stack([tone(16000, 16000), np.zeros(16000, np.float32)])

    def check(r):
        y, i = out_audio(r)
        assert i.channels == 2 and not y[:, 1].any()
        close_to(y[:, 0], x[0], 16000)
    return Case([write(r, "stereo.wav", x, 16000, subtype="PCM_16")], "out.wav", 0, check=check)


def c_six_channels(r):
    x = np.stack([tone(8000, 16000, f=200 + 100 * c) for c in range(6)])

    def check(r):
        y, i = out_audio(r)
        assert i.channels == 6
        for c in range(6):  # channel order kept
            close_to(y[:, c], x[c], 16000)
    return Case([write(r, "six.wav", x, 16000, subtype="PCM_16")], "out.wav", 0, check=check)


def _rate_case(r, sr, n=None):
    x = tone(n or sr, sr)

    def check(r):
        y, i = out_audio(r)
        assert i.samplerate == sr
        close_to(y, x, sr)
    return Case([write(r, f"r{sr}.wav", x, sr, subtype="PCM_16")], "out.wav", 0, check=check)


def c_8khz(r):
    return _rate_case(r, 8000)


def c_96khz(r):
    return _rate_case(r, 96000)


def c_44k1_flac(r):
    x = tone(44100, 44100)

    def check(r):
        y, i = out_audio(r, "out.flac")
        assert (i.format, i.samplerate) == ("FLAC", 44100)
        close_to(y, x, 44100)
    return Case([write(r, "music.flac", x, 44100, subtype="PCM_16")], "out.flac", 0, check=check)


def c_mp3(r):
    x = tone(16000, 16000)

    def check(r):
        y, i = out_audio(r, "out.mp3")
        assert i.format == "MP3" and i.channels == 1 and np.abs(y).max() > 0.1
    return Case([write(r, "phone.mp3", x, 16000, format="MP3", subtype="MPEG_LAYER_III")], "out.mp3", 0,
                check=check)


def c_ogg_opus(r):
    x = tone(48000, 48000)

    def check(r):
        y, i = out_audio(r, "out.opus")
        assert (i.format, i.subtype) == ("OGG", "OPUS") and np.abs(y).max() > 0.1
    return Case([write(r, "voice.opus", x, 48000, format="OGG", subtype="OPUS")], "out.opus", 0, check=check)


def c_very_short(r):
    return _rate_case(r, 16000, n=800)  # 0.05 s


def c_unicode_and_spaces(r):
    name = "Aufnahme ü 声音 1.wav"
    x = tone(8000, 8000)

    def check(r):
        y, _ = out_audio(r, f"out dir/sub ç/{name}")
        close_to(y, x, 8000)
    write(r, f"my recordings é/sub ç/{name}", x, 8000, subtype="PCM_16")
    return Case(["in/my recordings é"], "out dir", 0, check=check)


def c_read_only_output_folder(r):
    x = tone(8000, 8000)
    if os.geteuid() == 0:  # root writes into chmod-555 folders; /sys refuses new files even to root
        out = "/sys/digit-denoise-test.wav"
    else:
        (r / "ro").mkdir()
        os.chmod(r / "ro", 0o555)
        out = "ro/out.wav"
    return Case([write(r, "in.wav", x, 8000)], out, 2, "cannot write there")


def c_output_is_input(r):
    p = write(r, "same.wav", tone(8000, 8000), 8000)
    return Case([p], p, 2, "output would overwrite an input", extra=["--overwrite"])


def c_output_is_input_via_link(r):
    p = write(r, "same.wav", tone(8000, 8000), 8000)
    os.link(r / p, r / "in" / "hardlink.wav")
    return Case([p], "in/hardlink.wav", 2, "output would overwrite an input", extra=["--overwrite"])


def c_missing_input(r):
    return Case(["in/does-not-exist.wav"], "out.wav", 2, "no such file or folder")


def c_existing_output(r):
    (r / "out.wav").write_bytes(b"keep me")
    return Case([write(r, "in.wav", tone(800, 8000), 8000)], "out.wav", 2, "already exists; pass --overwrite",
                check=lambda r: None)


def c_mixed_folder(r):
    x = tone(8000, 8000)
    write(r, "batch/good.wav", x, 8000, subtype="PCM_16")
    write(r, "batch/deeper/good2.flac", x, 8000)
    raw(r, "batch/text.wav", b"not audio\n")
    raw(r, "batch/deeper/cut.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ")
    xn = x.copy()
    xn[10] = np.nan
    write(r, "batch/nan.wav", xn, 8000, subtype="FLOAT")
    raw(r, "batch/readme.txt", b"hello\n")

    def check(r):
        got = sorted(str(p.relative_to(r / "out")) for p in (r / "out").rglob("*") if p.is_file())
        assert got == ["deeper/good2.flac", "good.wav"]
        close_to(out_audio(r, "out/good.wav")[0], x, 8000)
    return Case(["in/batch"], "out", 1, check=check, stderr="denoised 2 file(s), skipped 1, failed 3")


def _model_case(r, edit: Callable[[Path], None], error: str) -> Case:
    m = save_wave_model(r / "model")
    edit(m)
    return Case([write(r, "in.wav", tone(800, 8000), 8000)], "out.wav", 2, error, extra=["--model", str(m)])


def _edit_json(m: Path, **changes) -> None:
    meta = json.loads((m / "model.json").read_text())
    meta.update(changes)
    (m / "model.json").write_text(json.dumps(meta))


def c_corrupt_model(r):
    def edit(m):
        (m / "model.safetensors").write_bytes((m / "model.safetensors").read_bytes()[:100])
    return _model_case(r, edit, "corrupt or not a safetensors file")


def c_wrong_shape_model(r):
    def edit(m):
        other = save_wave_model(r / "bigger", config={"channels": 16})
        (m / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    return _model_case(r, edit, "weights do not match the model")


def c_model_for_another_rate(r):  # the JSON says 8 kHz, the network was built for 16 kHz
    return _model_case(r, lambda m: _edit_json(m, sample_rate=8000), "different sample rates")


def c_model_at_8khz_runs(r):  # a consistent 8-kHz model is fine: audio is resampled to its rate
    m = save_wave_model(r / "model8k", identity=True, config={"sample_rate": 8000, "n_fft": 256, "hop": 64})
    x = tone(16000, 16000)

    def check(r):
        close_to(out_audio(r)[0], x, 16000)
    return Case([write(r, "in.wav", x, 16000, subtype="PCM_16")], "out.wav", 0, check=check,
                extra=["--model", str(m)])


def c_model_newer_version(r):
    return _model_case(r, lambda m: _edit_json(m, format_version=99), "newer than this digit-denoise")


def c_model_unknown_family(r):
    return _model_case(r, lambda m: _edit_json(m, model="transformer-xl"), "unknown model 'transformer-xl'")


def c_model_json_garbage(r):
    return _model_case(r, lambda m: (m / "model.json").write_text("{not json"), "not valid JSON")


def c_model_pickle_file(r):  # a pickle renamed .safetensors is never unpickled
    def edit(m):
        import pickle

        (m / "model.safetensors").write_bytes(pickle.dumps({"a": 1}))
    return _model_case(r, edit, "corrupt or not a safetensors file")


def c_fifo_in_a_folder(r):  # a FIFO is skipped with its reason, never opened (opening one blocks forever)
    write(r, "good.wav", tone(800, 8000), 8000)
    os.mkfifo(r / "in" / "x.wav")

    def check(r):
        assert (r / "out" / "good.wav").is_file() and not (r / "out" / "x.wav").exists()
    return Case(["in"], "out", 0, check=check, stderr="x.wav: is a FIFO, not a regular file")


def c_fifo_dry_run(r):
    write(r, "good.wav", tone(800, 8000), 8000)
    os.mkfifo(r / "in" / "x.wav")
    return Case(["in"], "out", 0, extra=["--dry-run"], stderr="is a FIFO")


def c_fifo_as_the_input(r):
    (r / "in").mkdir()
    os.mkfifo(r / "in" / "x.wav")
    return Case(["in/x.wav"], "out.wav", 2, "is a FIFO, not a regular file")


def c_symlink_loop(r):  # a per-file error; the other files are denoised
    write(r, "good.wav", tone(800, 8000), 8000)
    os.symlink("b.wav", r / "in" / "a.wav")
    os.symlink("a.wav", r / "in" / "b.wav")

    def check(r):
        assert (r / "out" / "good.wav").is_file()
    return Case(["in"], "out", 1, check=check, stderr="a loop of symbolic links")


def c_sample_rate_1_hz(r):  # would be resampled 16,000× to the model's rate: a per-file error, at once
    write(r, "good.wav", tone(800, 8000), 8000)
    write(r, "r1.wav", (0.1 * np.random.default_rng(0).standard_normal(1000)).astype(np.float32), 1,
          subtype="PCM_16")

    def check(r):
        assert (r / "out" / "good.wav").is_file() and not (r / "out" / "r1.wav").exists()
    return Case(["in"], "out", 1, check=check, stderr="sample rate 1 Hz is outside the supported 4000–384000 Hz")


CASES = {name[2:]: fn for name, fn in sorted(globals().items()) if name.startswith("c_")}


@pytest.mark.parametrize("name", list(CASES))
def test_nasty_input(name, tmp_path, ident, capsys):
    case = CASES[name](tmp_path)
    originals = {p: sha(p) for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(tmp_path / "out")
                 and p.name != "out.wav"}
    out_before = sha(tmp_path / "out.wav") if (tmp_path / "out.wav").is_file() else None
    output = case.output if os.path.isabs(case.output) else str(tmp_path / case.output)
    args = ["denoise", *(str(tmp_path / p) for p in case.inputs), "-o", output, "--threads", "1"]
    if "--model" not in case.extra:
        args += ["--model", str(ident)]
    code = main(args + case.extra)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code == case.code, err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("digit-denoise: error: "), err
        assert case.error in lines[0], lines[0]
    if case.stderr:
        assert case.stderr in err, err
    if case.check:
        case.check(tmp_path)
    # originals untouched, an existing output untouched on error, no temp files anywhere
    assert {p: sha(p) for p in originals} == originals
    if out_before is not None and code == 2:
        assert sha(tmp_path / "out.wav") == out_before
    assert [str(p) for p in tmp_path.rglob(".*")] == []
    if code == 2 and out_before is None:
        assert not (tmp_path / "out.wav").exists() and not (tmp_path / "out").exists()


def test_enough_cases():
    assert len(CASES) >= 25


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc (Linux)")
@pytest.mark.parametrize("rate, model", [(8000, "ident"), (16000, "default")])
def test_one_hour_file_streams_in_bounded_memory(tmp_path, ident, rate, model):
    """A 1-hour file (generated in blocks) is denoised in a subprocess: peak RSS < 1 GiB and it grows by far
    less than the decoded audio would take (1 h at 16 kHz: 230 MB as float32). At 8 kHz the file is
    resampled to the model's 16 kHz and back; at 16 kHz it runs the shipped default model as is."""
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, soundfile as sf, torch
        torch.set_num_threads(1)
        from digit_denoise.cli import main
        src, out = {str(tmp_path / "hour.wav")!r}, {str(tmp_path / "out" / "hour.wav")!r}
        rng = np.random.default_rng(0)
        with sf.SoundFile(src, "w", {rate}, 1, "PCM_16") as f:
            for _ in range(60):
                f.write((0.01 * rng.standard_normal({rate} * 60)).astype(np.float32))
        sf.write({str(tmp_path / "warm.wav")!r}, 0.01 * rng.standard_normal({rate} * 70), {rate})  # full windows
        args = {["--model", str(ident)] if model == "ident" else []!r} + ["--threads", "1"]
        assert main(["denoise", {str(tmp_path / "warm.wav")!r}, "-o", {str(tmp_path / "warm-out.wav")!r}, *args]) == 0
        def hwm():  # this process's peak RSS in KiB (ru_maxrss would include the forking parent's)
            return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
        base = hwm()
        code = main(["denoise", src, "-o", out, *args])
        peak = hwm()
        print(json.dumps({{"code": code, "growth_mb": (peak - base) / 1024, "peak_mb": peak / 1024}}))
    """)
    env = {**os.environ, "DIGIT_DENOISE_QUIET": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"1 h at {rate} Hz, model {model}: {stats}")
    assert stats["code"] == 0
    i = sf.info(str(tmp_path / "out" / "hour.wav"))
    assert (i.frames, i.samplerate, i.channels, i.subtype) == (3600 * rate, rate, 1, "PCM_16")
    # measured: 8 kHz/ident ≈ 40 MB growth; 16 kHz/default ≈ 400 MB peak (the process with torch ≈ 250 MB)
    assert stats["growth_mb"] < 100 and stats["peak_mb"] < 1024, stats
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["hour.wav"]
