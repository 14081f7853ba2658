"""compare: identical noisy inputs per condition, per-clip CSV, summary, local-only HTML, CLI."""

from __future__ import annotations

import csv
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from digit_denoise import metrics
from digit_denoise.audio import resample
from digit_denoise.compare import core as cmp
from digit_denoise.compare import peers
from digit_denoise.data.manifest import load_manifest, prepare, select, with_noise
from digit_denoise.data.noise import NoiseConfig
from digit_denoise.data.pairs import BabblePool, make_pair
from digit_denoise.errors import UserError

SR = 8000
SPEAKERS = {"alice": 190.0, "bob": 115.0, "carol": 235.0}
METHODS = ["noisy", "wiener", "oracle-irm", "seed-ceiling"]
NOISE, SNR, SEED, LIMIT = "white,pink", "-5,0", 3, 4
CONDITIONS = ["white@-5dB", "white@0dB", "pink@-5dB", "pink@0dB"]


def speechlike(f0: float, digit: int, take: int, sr: int = SR) -> np.ndarray:
    """0.5–0.8 s voiced clip: gliding f0 harmonics shaped by two digit-dependent formants."""
    dur = 0.5 + 0.3 * ((digit + take) % 4) / 3
    t = np.arange(int(sr * dur)) / sr
    f = f0 * (1 + 0.15 * np.sin(2 * np.pi * t / dur + digit))  # intonation
    phase = 2 * np.pi * np.cumsum(f) / sr
    f1, f2 = 450 + 60 * digit, 1300 + 110 * digit
    x = np.zeros_like(t)
    for h in range(1, 30):
        fh = h * f
        amp = np.exp(-((fh - f1) / 220) ** 2) + 0.6 * np.exp(-((fh - f2) / 350) ** 2) + 0.03
        x += amp * np.sin(h * phase + 0.3 * h * take) * (fh < sr / 2)
    ramp = np.minimum(1.0, np.minimum(t, dur - t) / 0.04)  # 40 ms fades
    x *= ramp * (0.7 + 0.3 * np.sin(2 * np.pi * 3 * t / dur) ** 2)  # syllable-ish envelope
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def make_manifest(root: Path) -> Path:
    rec = root / "corpus" / "recordings"
    rec.mkdir(parents=True)
    for name, f0 in SPEAKERS.items():
        for d in range(10):
            for i in range(2):
                sf.write(str(rec / f"{d}_{name}_{i}.wav"), speechlike(f0, d, i), SR, subtype="PCM_16")
    out = root / "manifest.csv"
    prepare(root / "corpus", out, layout="fsdd", test_speakers="1", val_fraction=0.5, seed=0,
            noise=NoiseConfig.parse("white", "0"))
    return out


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return make_manifest(tmp_path_factory.mktemp("cmp"))


@pytest.fixture(scope="module")
def result(manifest):
    out = manifest.parent / "report"
    s = cmp.compare(manifest, out, split="test", methods=",".join(METHODS), noise=NOISE, snr=SNR, seed=SEED,
                    limit=LIMIT, workers=0, examples=2, command="test")
    return s, out


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_output_files_and_shape(result):
    s, out = result
    for name in ("per_clip.csv", "summary.json", "report.html"):
        assert (out / name).is_file()
    rows = read_csv(out / "per_clip.csv")
    assert len(rows) == len(METHODS) * len(CONDITIONS) * LIMIT
    assert set(cmp.CSV_COLUMNS) <= set(rows[0])
    assert {r["method"] for r in rows} == set(METHODS)
    assert {r["condition"] for r in rows} == set(CONDITIONS)
    assert {r["is_oracle"] for r in rows if r["method"] in ("oracle-irm", "seed-ceiling")} == {"1"}
    summary = json.loads((out / "summary.json").read_text())  # strict JSON (no NaN)
    for key in ("command", "versions", "methods", "conditions", "rtf", "results", "overall", "by_digit",
                "by_speaker", "by_gender"):
        assert key in summary
    assert summary["command"] == "test"
    assert set(summary["rtf"]) == set(METHODS) and all(v >= 0 for v in summary["rtf"].values())
    assert set(summary["results"]) == set(METHODS)
    cell = summary["results"]["wiener"]["white@-5dB"]
    assert set(cmp.METRICS) <= set(cell)
    for f in ("mean", "median", "ci95_low", "ci95_high", "n", "n_failed"):
        assert f in cell["si_sdr"]
    assert cell["si_sdr"]["n"] == LIMIT
    assert cell["stoi"]["n"] == LIMIT  # the clips are long enough for STOI
    assert [m["name"] for m in summary["methods"] if m["is_oracle"]] == ["oracle-irm", "seed-ceiling"]


def test_oracle_beats_noisy_and_noisy_imp_is_zero(result):
    s, out = result
    rows = read_csv(out / "per_clip.csv")
    for cond in CONDITIONS:
        res = s["results"]
        assert res["oracle-irm"][cond]["si_sdr"]["mean"] > res["noisy"][cond]["si_sdr"]["mean"] + 5
        assert res["seed-ceiling"][cond]["mse"]["mean"] < res["noisy"][cond]["mse"]["mean"]
    for r in rows:
        if r["method"] == "noisy":
            assert float(r["si_sdr_imp"]) == 0.0 and float(r["pesq_imp"]) == 0.0
            assert float(r["si_sdr"]) == float(r["si_sdr_noisy"])
    by = {(r["method"], r["condition"], r["id"]): float(r["si_sdr"]) for r in rows}
    wins = sum(by[("oracle-irm", c, i)] > by[("noisy", c, i)] for (m, c, i) in by if m == "noisy")
    assert wins == len(CONDITIONS) * LIMIT


def test_every_method_saw_identical_noisy_inputs(result, manifest):
    _, out = result
    rows = read_csv(out / "per_clip.csv")
    all_rows = load_manifest(manifest)
    clips = select(all_rows, "test", LIMIT)
    pool = BabblePool(all_rows)
    for cond in CONDITIONS:
        kind, snr = cond.split("@")
        snr = float(snr[:-2])
        for r in with_noise(clips, NoiseConfig(kinds=(kind,), snr=(snr,)), SEED):
            clean, noisy, sr = make_pair(r, sr=16000, pool=pool)
            ref, nsy = metrics.prepare_pair(clean, noisy, sr)
            expected = float(metrics.si_sdr(ref, nsy))
            assert expected == pytest.approx(snr, abs=0.5)
            got = [float(x["si_sdr_noisy"]) for x in rows if x["condition"] == cond and x["id"] == r.id]
            assert len(got) == len(METHODS)
            for g in got:  # every method's noisy input is this exact mixture
                assert g == pytest.approx(expected, abs=1e-6)


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v is not None]


def test_html_is_self_contained(result):
    _, out = result
    text = (out / "report.html").read_text(encoding="utf-8")
    p = _Refs()
    p.feed(text)
    assert "script" not in p.tags and "link" not in p.tags
    assert any(r.startswith("audio/") for r in p.refs) and any(r.startswith("figures/") for r in p.refs)
    for ref in p.refs:
        assert not ref.lower().startswith(("http://", "https://", "//")), ref
        assert not ref.startswith("/"), ref
        assert (out / ref).is_file(), ref
    assert "http://" not in text and "https://" not in text
    assert text.count("<audio ") == 2 * (1 + len(METHODS))  # 2 examples × (clean + methods, noisy among them)
    assert "seed-ceiling" in text and "(oracle)" in text
    info = sf.info(str(next((out / "audio").glob("*.wav"))))
    assert info.samplerate == 16000


def test_unknown_method_and_existing_out(manifest, tmp_path):
    with pytest.raises(UserError, match="unknown method 'no-such-method'"):
        cmp.compare(manifest, tmp_path / "a", methods="noisy,no-such-method", noise="white", snr="0", limit=1)
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        cmp.compare(manifest, out, methods="noisy", noise="white", snr="0", limit=1)
    with pytest.raises(UserError, match="range"):
        cmp.compare(manifest, tmp_path / "c", methods="noisy", noise="white", snr="-5:5", limit=1)
    with pytest.raises(UserError, match="babble"):  # the test split has a single speaker
        cmp.compare(manifest, tmp_path / "d", methods="noisy", noise="babble", snr="0", limit=1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()


def test_missing_peer_is_skipped(monkeypatch):
    real = peers.available_methods()
    monkeypatch.setattr(peers, "available_methods",
                        lambda: {**real, "rnnoise": "pyrnnoise is not installed: pip install x"})
    methods, skipped = cmp.resolve_methods("noisy,rnnoise")
    assert [m.name for m in methods] == ["noisy"]
    assert skipped == {"rnnoise": "pyrnnoise is not installed: pip install x"}


def test_seed_ceiling_is_an_oracle_round_trip(fsdd_dir):
    sr = 16000
    wave, rate = sf.read(fsdd_dir / "recordings" / "3_jackson_0.wav", dtype="float32")
    clean = resample(wave, rate, sr)
    noise = np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    noisy = clean + noise * np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2) / 10 ** (-8 / 10))  # -8 dB
    m = peers.get_method("seed-ceiling")
    assert m.is_oracle
    y = m.enhance(noisy, sr, clean)
    assert y.shape == noisy.shape and y.dtype == np.float32 and np.isfinite(y).all()
    # the 112×112 mel image loses harmonic detail, so even the perfect image caps SI-SDR (about
    # -2…-4 dB on real speech); at -8 dB it still beats the noisy input clearly
    assert float(metrics.si_sdr(clean, y)) > float(metrics.si_sdr(clean, noisy)) + 2
    with pytest.raises(UserError):
        m.enhance(noisy, sr)


def test_cli_compare(manifest, tmp_path, capsys):
    from digit_denoise.cli import main

    out = tmp_path / "cli"
    rc = main(["compare", "--manifest", str(manifest), "--out", str(out), "--methods", "noisy,oracle-irm",
               "--noise", "white", "--snr", "-5", "--limit", "2", "--workers", "2", "--examples", "1"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "oracle-irm (oracle)" in text and "white@-5dB" in text and "SI-SDR" in text and "RTF" in text
    assert len(read_csv(out / "per_clip.csv")) == 2 * 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"].startswith("digit-denoise compare ") and "--snr=-5" in summary["command"]
    assert not math.isnan(summary["results"]["oracle-irm"]["white@-5dB"]["pesq"]["mean"])
    rc = main(["compare", "--manifest", str(manifest), "--out", str(out), "--methods", "noisy",
               "--noise", "white", "--snr", "0", "--limit", "1"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


def test_several_manifests_give_per_corpus_results(manifest, tmp_path):
    """A comma list of manifests: `--limit` clips of each corpus, and every table per corpus too."""
    from tools.results import main

    other = make_manifest(tmp_path / "second")  # the same layout under another file name: a second corpus
    renamed = other.with_name("other.csv")
    other.rename(renamed)
    lines = renamed.read_text().splitlines()  # ids must differ between corpora: prefix them
    head, body = lines[0], lines[1:]
    renamed.write_text("\n".join([head] + ["x" + line for line in body]) + "\n")
    out = tmp_path / "rep"
    s = cmp.compare(f"{manifest},{renamed}", out, split="test", methods="noisy,oracle-irm", noise="white",
                    snr="0", seed=1, limit=2, workers=0, examples=0, command="test", report=False)
    assert s["corpora"] == {"manifest": 2, "other": 2} and s["n_clips"] == 4
    rows = read_csv(out / "per_clip.csv")
    assert sorted({r["corpus"] for r in rows}) == ["manifest", "other"]
    by = s["results_by_corpus"]["oracle-irm"]
    assert set(by) == {"manifest", "other"} and "white@0dB" in by["other"]
    mine = [float(r["si_sdr"]) for r in rows if r["corpus"] == "other" and r["method"] == "oracle-irm"]
    assert by["other"]["white@0dB"]["si_sdr"]["mean"] == pytest.approx(np.mean(mine))
    page = tmp_path / "results.md"
    assert main([str(out), "-o", str(page)]) == 0
    text = page.read_text()
    assert "### per corpus (manifest: 2 clips, other: 2 clips)" in text and "| other | oracle-irm (oracle) |" in text
    with pytest.raises(UserError, match="appears in two manifests"):
        cmp.compare(f"{manifest},{manifest}", tmp_path / "dup", methods="noisy", noise="white", snr="0")
