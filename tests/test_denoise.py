"""Denoiser for waveform and seed models (chunked = whole, streams, kinds in → out), the shipped default,
the denoise command on folders (tree, formats, dry run, limiting, summary, exit codes) and the README example."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from model_files import save_seed_model, save_wave_model

from digit_denoise import Denoiser, pretrained
from digit_denoise.cli import main
from digit_denoise.errors import UserError

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"wave": save_wave_model(root / "wave"), "ident": save_wave_model(root / "ident", identity=True),
            "seed": save_seed_model(root / "seed")}


def _tones(channels: int, n: int, sr: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """``[channels, n]``: a different tone per channel (+ white noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = [0.3 * np.sin(2 * np.pi * (200 + 150 * c) * t) + noise * rng.standard_normal(n) for c in range(channels)]
    return np.asarray(x, np.float32)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _hidden(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".*")]


# ------------------------------------------------------------------------------ Denoiser
@pytest.mark.numerics
def test_wave_chunked_equals_whole(models):
    """Windows with the receptive field as context each side give the whole-input result (float rounding)."""
    x = _tones(2, 8000 * 7 + 13, 8000)
    whole = Denoiser.from_checkpoint(models["wave"], chunk_seconds=100).enhance(x, 8000)
    assert whole.shape == x.shape and whole.dtype == np.float32 and not np.allclose(whole, x, atol=1e-3)
    for chunk in (0.35, 1.0, 2.5):
        y = Denoiser.from_checkpoint(models["wave"], chunk_seconds=chunk).enhance(x, 8000)
        np.testing.assert_allclose(y, whole, atol=1e-5)
    # a stream of odd-sized blocks gives the same samples, block by block
    den = Denoiser.from_checkpoint(models["wave"], chunk_seconds=0.5)
    blocks = [x[:, i:i + 777] for i in range(0, x.shape[1], 777)]
    out = list(den.stream(blocks, 8000))
    assert len(out) > 3  # output comes out while input goes in
    np.testing.assert_allclose(np.concatenate(out, axis=1), whole, atol=1e-5)
    # at the model's own rate: exactly the model applied to the whole input
    x16 = _tones(1, 16000 * 3, 16000)
    model = Denoiser.from_checkpoint(models["wave"]).model
    with torch.no_grad():
        ref = model(torch.from_numpy(x16)).numpy()
    np.testing.assert_allclose(Denoiser.from_checkpoint(models["wave"], chunk_seconds=0.4).enhance(x16, 16000), ref,
                               atol=1e-5)


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 96000])
def test_identity_model_keeps_level_channels_and_alignment(models, sr):
    """A mask ≡ 1 model returns the input (up to resampling): no delay, no level change, channels in order."""
    x = _tones(3, int(1.3 * sr), sr, noise=0.0)  # noise near Nyquist would be filtered by the resampler
    y = Denoiser.from_checkpoint(models["ident"], chunk_seconds=0.5).enhance(x, sr)
    edge = int(0.01 * sr)  # the resampler's edge transient
    assert np.abs(y - x)[:, edge:-edge].max() < 1e-4


def test_kinds_in_kinds_out(models, tmp_path):
    den = Denoiser.from_checkpoint(models["wave"])
    x = _tones(2, 4000, 8000)
    y = den.enhance(x[0], 8000)
    assert isinstance(y, np.ndarray) and y.shape == (4000,) and y.dtype == np.float32
    yt = den.enhance(torch.from_numpy(x).double(), 8000)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float64 and yt.shape == (2, 4000)
    np.testing.assert_allclose(yt[0].float().numpy(), y, atol=1e-5)  # each channel on its own
    p = tmp_path / "in.flac"
    sf.write(str(p), x.T, 8000, subtype="PCM_24")
    yp, sr = den.enhance(p)
    assert sr == 8000 and yp.shape == (2, 4000)
    for n in (0, 1, 2, 37):
        assert den.enhance(np.zeros(n, np.float32) + 0.1, 8000).shape == (n,)
    assert den.enhance(np.zeros((3, 0), np.float32), 8000).shape == (3, 0)
    assert np.all(den.enhance(np.zeros((2, 999), np.float32), 22050) == 0)  # digital silence stays silent
    with pytest.raises(UserError, match="NaN"):
        den.enhance(np.array([0.0, np.nan, 0.0], np.float32), 8000)
    with pytest.raises(UserError, match="sample rate"):
        den.enhance(x, 0)


def test_seed_model_long_input_is_windowed(models):
    """Seed models: ≤ 2 s is one clip (as trained); longer inputs are cross-faded 2-s windows, close to the
    whole-clip result but not equal (each window has its own level normalisation)."""
    x = _tones(1, int(4.5 * 8000), 8000)[0]
    den = Denoiser.from_checkpoint(models["seed"])
    y = den.enhance(x, 8000)
    assert y.shape == x.shape and np.isfinite(y).all() and np.abs(y).max() > 0
    short = x[:12000]
    np.testing.assert_array_equal(den.enhance(short, 8000), den.seed_model.enhance_mono(short, 8000))
    whole = Denoiser.from_checkpoint(models["seed"], chunk_seconds=100).enhance(x, 8000)
    assert np.corrcoef(whole, y)[0, 1] > 0.8


def test_default_model(models, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "FOLDER", tmp_path / "none")
    with pytest.raises(UserError, match="no default model shipped.*--model"):
        Denoiser.default()
    src = tmp_path / "in.wav"
    sf.write(str(src), _tones(1, 4000, 8000)[0], 8000)
    assert main(["denoise", str(src), "-o", str(tmp_path / "out.wav")]) == 2
    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    for ext in ("safetensors", "json"):
        (shipped / f"default.{ext}").write_bytes((models["wave"] / f"model.{ext}").read_bytes())
    monkeypatch.setattr(pretrained, "FOLDER", shipped)
    assert Denoiser.default().kind == "wave"
    assert main(["denoise", str(src), "-o", str(tmp_path / "out.wav")]) == 0
    assert sf.info(str(tmp_path / "out.wav")).frames == 4000


def test_package_data_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert '"pretrained/*.json"' in text and '"pretrained/*.safetensors"' in text


# ------------------------------------------------------------------------------ the command
def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "rec"
    (src / "day 1").mkdir(parents=True)
    (src / ".hidden").mkdir()
    sf.write(str(src / "a.wav"), _tones(1, 4000, 8000)[0], 8000, subtype="PCM_16")
    sf.write(str(src / "day 1" / "b.flac"), _tones(2, 5000, 16000).T, 16000, subtype="PCM_24")
    sf.write(str(src / "day 1" / "c.ogg"), _tones(1, 6000, 22050)[0], 22050, format="OGG", subtype="VORBIS")
    sf.write(str(src / ".hidden" / "d.wav"), _tones(1, 100, 8000)[0], 8000)
    (src / "notes.txt").write_text("not audio\n")
    return src


def test_folder_keeps_tree_formats_and_reruns(models, tmp_path, capsys):
    src = _tree(tmp_path)
    before = {p: _sha(p) for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    args = ["denoise", str(src), "-o", str(out), "--model", str(models["wave"]), "--threads", "1"]
    assert main([*args, "--dry-run"]) == 0
    cap = capsys.readouterr()
    assert "a.wav →" in cap.out and "notes.txt skipped" in cap.out and not out.exists()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "denoised 3 file(s), skipped 1, failed 0" in err and "not an audio file name" in err
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == ["a.wav", "day 1/b.flac", "day 1/c.ogg"]  # tree kept, hidden folder and non-audio left out
    for rel, (fmt, sub, sr, ch, n) in {"a.wav": ("WAV", "PCM_16", 8000, 1, 4000),
                                       "day 1/b.flac": ("FLAC", "PCM_24", 16000, 2, 5000),
                                       "day 1/c.ogg": ("OGG", "VORBIS", 22050, 1, 6000)}.items():
        i = sf.info(str(out / rel))
        assert (i.format, i.subtype, i.samplerate, i.channels) == (fmt, sub, sr, ch), rel
        assert abs(i.frames - n) <= (0 if fmt != "OGG" else 1024)
    stamp = (out / "a.wav").stat().st_mtime_ns
    # a rerun skips what exists (exit 0); --overwrite redoes it
    assert main(args) == 0
    assert "skipped 4" in capsys.readouterr().err and (out / "a.wav").stat().st_mtime_ns == stamp
    assert main([*args, "--overwrite", "--no-recursive"]) == 0
    assert "denoised 1 file(s)" in capsys.readouterr().err
    # --format: every output as FLAC (extension changed, float/24-bit inputs → PCM_24)
    assert main([*args, "-o", str(tmp_path / "flac"), "--format", "flac"]) == 0
    assert sorted(p.name for p in (tmp_path / "flac").rglob("*.flac")) == ["a.flac", "b.flac", "c.flac"]
    assert sf.info(str(tmp_path / "flac" / "day 1" / "b.flac")).subtype == "PCM_24"
    assert {p: _sha(p) for p in src.rglob("*") if p.is_file()} == before
    assert _hidden(tmp_path / "out") == [] and _hidden(tmp_path / "flac") == []


def test_output_folder_inside_input_folder_is_not_walked(models, tmp_path, capsys):
    src = _tree(tmp_path)
    args = ["denoise", str(src), "-o", str(src / "clean"), "--model", str(models["wave"]), "--threads", "1"]
    assert main(args) == 0
    assert main(args) == 0  # the second run must not denoise rec/clean/* into rec/clean/clean/
    assert not (src / "clean" / "clean").exists()
    assert main(["denoise", str(src), "-o", str(src), "--model", str(models["wave"])]) == 2
    assert "overwrite an input" in capsys.readouterr().err


@pytest.mark.numerics
@pytest.mark.parametrize("kind", ["wave", "seed"])
def test_attenuation_limit_mixes_the_input_back_in_every_window(models, kind, tmp_path):
    """``atten_lim_db``: (1 − g)·y + g·x with g = 10^(−dB/20) at the input's rate (not the model's), so 0 dB gives
    the input back exactly, above the model's band too; chunked and streamed output still equal whole-input
    output; a model file's own limit is used unless the call lifts it (inf)."""
    import json
    import math
    import shutil

    sr = 44100  # not the model's rate: the mix must use the input itself, not its resampled copy
    x = _tones(2, sr * 3 + 7, sr)
    x[1] += 0.2 * np.sin(2 * np.pi * 15000 * np.arange(x.shape[1]) / sr)  # above any model's band
    plain = Denoiser.from_checkpoint(models[kind]).enhance(x, sr)
    assert not np.allclose(plain, x, atol=1e-2)
    np.testing.assert_allclose(Denoiser.from_checkpoint(models[kind], atten_lim_db=0).enhance(x, sr), x, atol=1e-6)
    lim20 = Denoiser.from_checkpoint(models[kind], atten_lim_db=20).enhance(x, sr)
    np.testing.assert_allclose(lim20, 0.9 * plain + 0.1 * x, atol=1e-6)
    den = Denoiser.from_checkpoint(models[kind], atten_lim_db=20, chunk_seconds=0.7)
    streamed = np.concatenate(list(den.stream((x[:, i:i + 9999] for i in range(0, x.shape[1], 9999)), sr)), axis=1)
    np.testing.assert_allclose(streamed, den.enhance(x, sr), atol=1e-6)
    if kind == "wave":  # waveform models: windows equal the whole input (seed models normalise each window)
        whole = Denoiser.from_checkpoint(models[kind], atten_lim_db=20, chunk_seconds=100).enhance(x, sr)
        np.testing.assert_allclose(streamed, whole, atol=1e-5)
    own = tmp_path / "own"
    shutil.copytree(models[kind], own)
    for js in own.rglob("*.json"):
        meta = json.loads(js.read_text())
        if meta.get("format") == "digit-denoise-model":
            js.write_text(json.dumps({**meta, "atten_lim_db": 20}))
    den = Denoiser.from_checkpoint(own)
    assert den.atten_lim_db == pytest.approx(20)
    np.testing.assert_allclose(den.enhance(x, sr), lim20, atol=1e-6)
    np.testing.assert_allclose(Denoiser.from_checkpoint(own, atten_lim_db=math.inf).enhance(x, sr), plain, atol=1e-6)
    assert Denoiser.from_checkpoint(models[kind], atten_lim_db=np.float32(20)).mix == pytest.approx(0.1)
    assert Denoiser.from_checkpoint(models[kind], atten_lim_db=10 ** 400).mix == 0.0  # no limit in practice
    for bad in (-1, math.nan, "20", True, -10 ** 400):
        with pytest.raises(UserError, match="attenuation limit"):
            Denoiser.from_checkpoint(models[kind], atten_lim_db=bad)


def test_single_file_outputs_and_format_choices(models, tmp_path, capsys):
    src = tmp_path / "in.wav"
    sf.write(str(src), _tones(2, 3000, 8000).T, 8000, subtype="FLOAT")
    m = ["--model", str(models["wave"]), "--threads", "1"]
    assert main(["denoise", str(src), "-o", str(tmp_path / "x.flac"), *m]) == 0  # format from -o's extension
    assert sf.info(str(tmp_path / "x.flac")).subtype == "PCM_24"
    assert main(["denoise", str(src), "-o", str(tmp_path / "dir") + os.sep, *m]) == 0  # a path ending in /
    assert sf.info(str(tmp_path / "dir" / "in.wav")).subtype == "FLOAT"
    assert main(["denoise", str(src), "-o", str(tmp_path / "y.wav"), "--format", "flac", *m]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["denoise", str(src), "-o", str(tmp_path / "y.xyz"), *m]) == 2
    assert "extension" in capsys.readouterr().err
    assert main(["denoise", str(src), "-o", str(tmp_path / "y.mp3"), *m]) == 0
    assert sf.info(str(tmp_path / "y.mp3")).format == "MP3"


def test_float_over_full_scale_is_kept_in_float_and_limited_in_pcm(models, tmp_path, capsys):
    src = tmp_path / "hot.wav"
    x = 10.0 * _tones(1, 8000, 16000, noise=0.0)[0]
    sf.write(str(src), x, 16000, subtype="FLOAT")
    m = ["--model", str(models["ident"]), "--threads", "1"]
    assert main(["denoise", str(src), "-o", str(tmp_path / "f.wav"), *m]) == 0
    y, _ = sf.read(str(tmp_path / "f.wav"), dtype="float32")
    assert np.abs(y - x).max() < 1e-3  # float output: the level is the input's, beyond ±1
    capsys.readouterr()
    assert main(["denoise", str(src), "-o", str(tmp_path / "p.wav"), "--format", "wav", *m]) == 0
    assert main(["denoise", str(src), "-o", str(tmp_path / "l.flac"), *m]) == 0
    err = capsys.readouterr().err
    assert re.search(r"note: .*hot\.wav: scaled by -\d+\.\d dB to avoid clipping", err)
    z, _ = sf.read(str(tmp_path / "l.flac"), dtype="float32")
    assert 0.98 < np.abs(z).max() <= 0.991
    np.testing.assert_allclose(z, x * (0.99 / np.abs(x).max()), atol=2e-3)  # scaled, not clipped


def test_atten_lim_flag(models, tmp_path, capsys):
    src = tmp_path / "in.wav"
    sr = Denoiser.from_checkpoint(models["wave"]).sample_rate  # no resampling: 0 dB gives the input exactly
    x = _tones(1, sr // 2, sr)[0]
    sf.write(str(src), x, sr, subtype="FLOAT")
    m = ["--model", str(models["wave"]), "--threads", "1"]
    assert main(["denoise", str(src), "-o", str(tmp_path / "zero.wav"), "--atten-lim", "0", *m]) == 0
    np.testing.assert_allclose(sf.read(str(tmp_path / "zero.wav"), dtype="float32")[0], x, atol=1e-5)
    assert main(["denoise", str(src), "-o", str(tmp_path / "none.wav"), "--atten-lim", "none", *m]) == 0
    assert not np.allclose(sf.read(str(tmp_path / "none.wav"), dtype="float32")[0], x, atol=1e-2)
    capsys.readouterr()
    for bad in ("-3", "loud", "nan"):
        assert main(["denoise", str(src), "-o", str(tmp_path / "bad.wav"), "--atten-lim", bad, *m]) == 2
        err = capsys.readouterr().err
        assert "--atten-lim" in err and "Traceback" not in err
    assert not (tmp_path / "bad.wav").exists()


def test_exit_codes_partial_failure_and_summary(models, tmp_path, capsys):
    src = tmp_path / "mixed"
    src.mkdir()
    sf.write(str(src / "good.wav"), _tones(1, 2000, 8000)[0], 8000)
    (src / "bad.wav").write_text("text\n")
    sf.write(str(src / "nan.wav"), np.array([0.0, np.nan, 0.5], np.float32), 8000, subtype="FLOAT")
    out = tmp_path / "out"
    assert main(["denoise", str(src), "-o", str(out), "--model", str(models["wave"]), "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "denoised 1 file(s), skipped 0, failed 2" in err
    assert re.search(r"failed: .*bad\.wav: not a readable audio file", err)
    assert re.search(r"failed: .*nan\.wav: contains NaN", err)
    assert sorted(p.name for p in out.iterdir()) == ["good.wav"]
    assert main(["denoise", str(src / "good.wav"), str(tmp_path / "missing.wav"), "-o", str(out),
                 "--model", str(models["wave"])]) == 2
    assert main(["denoise", str(src), "-o", str(src / "good.wav"), "--model", str(models["wave"])]) == 2
    assert "must be a folder" in capsys.readouterr().err


def test_interrupted_denoise_leaves_nothing(models, tmp_path, monkeypatch, capsys):
    """Ctrl-C (or any error) in the middle of a file: no output, no temp or scratch file, exit 130."""
    src = tmp_path / "in.wav"
    sf.write(str(src), _tones(1, 16000, 16000)[0], 16000)

    def stream(self, blocks, sr):
        yield next(iter(blocks))
        raise KeyboardInterrupt

    monkeypatch.setattr(Denoiser, "stream", stream)
    out = tmp_path / "out"
    assert main(["denoise", str(src), "-o", str(out / "x.wav"), "--model", str(models["wave"])]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_empty_folder(models, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["denoise", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--model", str(models["wave"])]) == 0
    assert "no files found" in capsys.readouterr().err


# ------------------------------------------------------------------------------ README
def test_readme_example_runs(models, tmp_path, monkeypatch):
    """The Python block of README's "Python API" section, run as written."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)
    assert code, "README: no python example in 'Python API'"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    save_wave_model(tmp_path / "runs" / "fast")
    sf.write("noisy.wav", _tones(2, 8000, 16000).T, 16000, subtype="PCM_16")
    shipped = tmp_path / "pretrained"
    save_wave_model(shipped / "tmp")
    shipped.mkdir(exist_ok=True)
    for ext in ("safetensors", "json"):
        (shipped / f"default.{ext}").write_bytes((shipped / "tmp" / f"model.{ext}").read_bytes())
    monkeypatch.setattr(pretrained, "FOLDER", shipped)
    for block in code:
        exec(compile(block, "README.md", "exec"), {})
