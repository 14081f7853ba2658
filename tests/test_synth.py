"""Synthetic spoken digits (espeak-ng): layout, audibility, distinct speakers, determinism."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("espeakng_loader")

from digit_denoise.data import synth  # noqa: E402
from digit_denoise.errors import UserError  # noqa: E402

SPEAKERS, TAKES = 4, 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    summary = synth.synthesize_corpus(out, speakers=SPEAKERS, takes=TAKES, seed=3)
    assert summary["speakers"] == SPEAKERS
    assert summary["files"] == SPEAKERS * TAKES * 10
    assert summary["sample_rate"] == 22050
    assert summary["out_dir"] == str(out)
    assert 0.2 * summary["files"] < summary["total_seconds"] < 2.0 * summary["files"]
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _load(corpus: Path) -> dict[tuple[str, int, int], np.ndarray]:
    clips = {}
    for p in sorted(corpus.glob("*/*.wav")):
        x, sr = sf.read(p, dtype="float32")
        assert sr == 22050
        d, s, t = p.stem.split("_")
        clips[(s, int(d), int(t))] = x
    return clips


def _band_spectrum(x: np.ndarray, sr: int = 22050) -> np.ndarray:
    """Mean log power in 32 log-spaced bands over the non-silent frames, level-independent."""
    n, hop = 512, 256
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energy = power.sum(1)
    power = power[energy > energy.max() * 1e-3]
    freqs = np.fft.rfftfreq(n, 1 / sr)
    edges = np.geomspace(80, sr / 2, 33)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(1)
                      for lo, hi in zip(edges[:-1], edges[1:])], 1)
    logb = np.log10(bands + 1e-10).mean(0)
    return logb - logb.mean()


def _f0(x: np.ndarray, sr: int = 22050) -> float:
    """Median autocorrelation pitch (Hz) over loud, clearly periodic frames."""
    n, hop, out = 1024, 512, []
    lo, hi = int(sr / 400), int(sr / 60)
    for i in range(0, len(x) - n, hop):
        fr = x[i:i + n]
        if np.sqrt(np.mean(fr ** 2)) < 0.02 * np.abs(x).max():
            continue
        ac = np.correlate(fr, fr, "full")[n - 1:]
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.3 * ac[0]:
            out.append(sr / k)
    return float(np.median(out)) if out else float("nan")


def test_layout_and_meta(corpus):
    meta = json.loads((corpus / "audioMNIST_meta.txt").read_text())
    ids = [f"{i:02d}" for i in range(1, SPEAKERS + 1)]
    assert sorted(meta) == ids
    assert sorted(p.name for p in corpus.iterdir()) == ids + ["audioMNIST_meta.txt"]
    keys = {"accent", "age", "gender", "native speaker", "origin", "recording date", "recording room"}
    for sid in ids:
        m = meta[sid]
        assert keys <= set(m)
        assert m["gender"] in ("male", "female")
        assert 18 <= int(m["age"]) <= 70
        assert re.fullmatch(r"\d\d-\d\d-\d\d-\d\d-\d\d-\d\d", m["recording date"])
        variant = m["synth"]["variant"]
        assert variant in (synth.FEMALE_VARIANTS if m["gender"] == "female" else synth.MALE_VARIANTS)
        names = sorted(p.name for p in (corpus / sid).iterdir())
        assert names == sorted(f"{d}_{sid}_{t}.wav" for d in range(10) for t in range(TAKES))
        assert all(re.fullmatch(rf"\d_{sid}_\d+\.wav", n) for n in names)
    assert {meta[s]["gender"] for s in ids} == {"male", "female"}  # genders alternate
    info = sf.info(str(corpus / "01" / "0_01_0.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    assert not list(corpus.parent.glob(".*partial*"))  # temp folder renamed away


def test_digits_audible(corpus):
    clips = _load(corpus)
    assert len(clips) == SPEAKERS * TAKES * 10
    for key, x in clips.items():
        dur = len(x) / 22050
        assert 0.2 <= dur <= 2.0, (key, dur)
        assert np.sqrt(np.mean(x ** 2)) > 0.01, key
        peak = np.abs(x).max()
        assert 10 ** (-12.5 / 20) <= peak < 0.99, (key, peak)  # per-speaker level, no clipping
        # trimmed: the ~50 ms padding at each end is quiet compared with the word
        edge = int(0.03 * 22050)
        assert np.abs(x[:edge]).max() < 0.5 * peak and np.abs(x[-edge:]).max() < 0.5 * peak, key


def test_speakers_differ_more_than_takes(corpus):
    clips = _load(corpus)
    feats = {k: _band_spectrum(x) for k, x in clips.items()}
    ids = sorted({k[0] for k in clips})
    within = [np.linalg.norm(feats[(s, d, 0)] - feats[(s, d, 1)]) for s in ids for d in range(10)]
    between = [np.linalg.norm(feats[(a, d, 0)] - feats[(b, d, 0)])
               for a, b in itertools.combinations(ids, 2) for d in range(10)]
    assert np.mean(between) > 3 * np.mean(within), (np.mean(between), np.mean(within))
    # takes differ too (per-take jitter), but only a little
    assert all(not np.array_equal(clips[(s, d, 0)], clips[(s, d, 1)]) for s in ids for d in range(10))
    # every pair of speakers is told apart on average over the digits
    for a, b in itertools.combinations(ids, 2):
        pair = np.mean([np.linalg.norm(feats[(a, d, 0)] - feats[(b, d, 0)]) for d in range(10)])
        assert pair > 1.5 * np.mean(within), (a, b, pair)


def test_gender_matches_pitch(corpus):
    meta = json.loads((corpus / "audioMNIST_meta.txt").read_text())
    clips = _load(corpus)
    f0 = {s: np.nanmedian([_f0(x) for k, x in clips.items() if k[0] == s]) for s in meta}
    female = [f0[s] for s in meta if meta[s]["gender"] == "female"]
    male = [f0[s] for s in meta if meta[s]["gender"] == "male"]
    assert min(female) > max(male), f0


def test_digits_differ(corpus):
    clips = _load(corpus)
    feats = {k: _band_spectrum(x) for k, x in clips.items()}
    for s in sorted({k[0] for k in clips}):
        within = np.mean([np.linalg.norm(feats[(s, d, 0)] - feats[(s, d, 1)]) for d in range(10)])
        for a, b in itertools.combinations(range(10), 2):
            assert not np.array_equal(clips[(s, a, 0)], clips[(s, b, 0)])
            assert np.linalg.norm(feats[(s, a, 0)] - feats[(s, b, 0)]) > within, (s, a, b)


def test_deterministic(corpus, tmp_path):
    again = tmp_path / "again"
    synth.synthesize_corpus(again, speakers=SPEAKERS, takes=TAKES, seed=3)
    assert _hashes(again) == _hashes(corpus)
    # a speaker does not depend on how many others are made (nor on later takes)
    fewer = tmp_path / "fewer"
    synth.synthesize_corpus(fewer, speakers=2, takes=1, seed=3)
    h = _hashes(corpus)
    for name, digest in _hashes(fewer).items():
        if name.endswith(".wav"):
            assert h[name] == digest, name
    # another seed gives other speakers
    other = tmp_path / "other"
    synth.synthesize_corpus(other, speakers=2, takes=1, seed=4, digits=[5])
    assert _hashes(other)["01/5_01_0.wav"] != h["01/5_01_0.wav"]


def test_existing_out_dir(corpus, tmp_path):
    before = _hashes(corpus)
    with pytest.raises(UserError, match="not empty") as e:
        synth.synthesize_corpus(corpus, speakers=1, takes=1, digits=[0])
    assert "\n" not in str(e.value)
    assert _hashes(corpus) == before
    # an empty folder is fine, and overwrite replaces a non-empty one
    empty = tmp_path / "empty"
    empty.mkdir()
    synth.synthesize_corpus(empty, speakers=1, takes=1, digits=[0])
    (empty / "stray.txt").write_text("x")
    synth.synthesize_corpus(empty, speakers=1, takes=1, digits=[0, 1], overwrite=True)
    assert sorted(_hashes(empty)) == ["01/0_01_0.wav", "01/1_01_0.wav", "audioMNIST_meta.txt"]


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = synth.write_audio

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(synth, "write_audio", flaky)
    with pytest.raises(KeyboardInterrupt):
        synth.synthesize_corpus(tmp_path / "out", speakers=2, takes=1)
    assert list(tmp_path.iterdir()) == []


def test_missing_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import raises ImportError
    with pytest.raises(UserError, match=r"pip install 'digit-denoise\[synth\]'"):
        synth.synthesize_corpus(tmp_path / "out", speakers=1, takes=1)
    assert not (tmp_path / "out").exists()


def test_espeak_low_level():
    es = synth.get_espeak()
    assert synth.get_espeak() is es
    assert es.sample_rate == 22050
    assert {f"m{i}" for i in range(1, 8)} | {f"f{i}" for i in range(1, 6)} <= set(es.variants)
    x = es.synth("seven", voice="en-us", variant="f2", rate=160, pitch=60)
    assert x.dtype == np.float32 and x.ndim == 1 and 0.3 < len(x) / es.sample_rate < 2.0
    fast = es.synth("seven", voice="en-us", variant="f2", rate=300, pitch=60)
    assert len(fast) < 0.8 * len(x)  # every parameter is applied on every call
    with pytest.raises(ValueError):
        es.synth("one", variant="no-such-variant")
    with pytest.raises(ValueError):
        es.synth("one", voice="xx-nowhere")
