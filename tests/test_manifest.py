"""manifest.py: building, speaker-disjoint splits, byte-identical output, CSV I/O."""

from __future__ import annotations

import csv
import os
import random
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from digit_denoise.data.manifest import (
    COLUMNS,
    assign_splits,
    build_manifest,
    load_manifest,
    manifest_text,
    parse_test_speakers,
    prepare,
    select,
    summary_table,
    with_noise,
    write_manifest,
)
from digit_denoise.data.noise import NoiseConfig
from digit_denoise.errors import UserError

SR = 8000
SPEAKERS = ("01", "02", "03", "04", "05", "06", "28", "56")


def wav(path: Path, seed: int = 0, sr: int = SR, dur: float = 0.3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * dur)) / sr
    f0 = 100 + 9 * (seed % 30)
    sf.write(path, (0.2 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))).astype(np.float32),
             sr, subtype="PCM_16")
    return path


def corpus_files(speakers=SPEAKERS, digits=(0, 1, 2), takes=5):
    return [(s, d, t) for s in speakers for d in digits for t in range(takes)]


def make_audiomnist(root: Path, speakers=SPEAKERS, digits=(0, 1, 2), takes=5, order=None, meta=True) -> Path:
    files = corpus_files(speakers, digits, takes)
    if order is not None:
        files = order(files)
    for s, d, t in files:
        wav(root / s / f"{d}_{s}_{t}.wav", seed=int(s) + d)
    if meta:
        (root / "audioMNIST_meta.txt").write_text(
            '{"1": {"gender": "female", "age": "30"}, "02": {"gender": "male ", "age": 999}}')
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_audiomnist(tmp_path_factory.mktemp("amn") / "corpus")


def splits_of(rows):
    return {r.id: r.split for r in rows}


# ---------------------------------------------------------------------------------- split
def test_build_basic_columns_and_meta(corpus, tmp_path):
    rows, warnings = build_manifest(corpus, tmp_path / "m.csv", test_speakers="2", seed=0)
    assert warnings == []
    assert len(rows) == len(SPEAKERS) * 3 * 5
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    r = next(r for r in rows if r.id == "01/2_01_3")
    assert (r.speaker, r.digit, r.take, r.sample_rate, r.channels) == ("01", 2, 3, SR, 1)
    assert r.duration == pytest.approx(0.3) and (r.gender, r.age) == ("female", "30")
    assert r.noisy_path == "" and r.noise == "white" and r.snr == "-8" and r.noise_seed == 0
    assert not Path(r.clean_path).is_absolute()
    assert (tmp_path / r.clean_path).resolve() == (corpus / "01" / "2_01_3.wav").resolve()
    r2 = next(r for r in rows if r.speaker == "02")
    assert (r2.gender, r2.age) == ("male", "")
    r3 = next(r for r in rows if r.speaker == "03")
    assert (r3.gender, r3.age) == ("", "")


@pytest.mark.parametrize("n_test", [0, 1, 3, 5])
def test_speaker_disjoint_and_test_count(corpus, tmp_path, n_test):
    rows, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers=str(n_test), seed=4)
    by_split = defaultdict(set)
    for r in rows:
        by_split[r.split].add(r.speaker)
    assert len(by_split["test"]) == n_test
    assert not by_split["test"] & (by_split["train"] | by_split["val"])
    assert by_split["train"] | by_split["test"] == set(SPEAKERS)


def test_val_fraction_per_speaker_digit_group(corpus, tmp_path):
    rows, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers=2, val_fraction=0.2, seed=1)
    groups = defaultdict(Counter)
    for r in rows:
        if r.split != "test":
            groups[(r.speaker, r.digit)][r.split] += 1
    assert len(groups) == 6 * 3
    for c in groups.values():
        assert c["val"] == 1 and c["train"] == 4  # 0.2 of 5 takes
    rows0, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers=2, val_fraction=0.0, seed=1)
    assert not any(r.split == "val" for r in rows0)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(UserError, match="val-fraction"):
            build_manifest(corpus, tmp_path / "m.csv", val_fraction=bad)


def test_explicit_test_speakers(corpus, tmp_path):
    for spec in ("28,56", "28, 56", ["28", "56"], "56,28,"):
        rows, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers=spec)
        assert {r.speaker for r in rows if r.split == "test"} == {"28", "56"}
    for spec in ("1,2", "01,02", "1,02", "001,2"):
        rows, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers=spec)
        assert {r.speaker for r in rows if r.split == "test"} == {"01", "02"}, spec
    rows, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers="3,")  # a list of one
    assert {r.speaker for r in rows if r.split == "test"} == {"03"}


@pytest.mark.parametrize("spec,word", [("28,99", "unknown speaker"), ("bob", "unknown speaker"),
                                       (",".join(SPEAKERS), "every speaker"), ("8", "8 speakers"),
                                       ("20", "8 speakers"), (-1, "speakers")])
def test_bad_test_speakers(corpus, tmp_path, spec, word):
    with pytest.raises(UserError, match=word) as ei:
        build_manifest(corpus, tmp_path / "m.csv", test_speakers=spec)
    assert "\n" not in str(ei.value)


def test_parse_test_speakers():
    assert parse_test_speakers("5") == 5 and parse_test_speakers(3) == 3
    assert parse_test_speakers(None) == 0 and parse_test_speakers("") == 0
    assert parse_test_speakers("28,56") == ["28", "56"] and parse_test_speakers(["1", 2]) == ["1", "2"]


def test_same_seed_byte_identical_regardless_of_mtime_and_creation_order(tmp_path):
    a = make_audiomnist(tmp_path / "a" / "corpus")
    b = make_audiomnist(tmp_path / "b" / "corpus", order=lambda fs: list(reversed(fs)), meta=False)
    (b / "audioMNIST_meta.txt").write_text((a / "audioMNIST_meta.txt").read_text())
    rng = random.Random(7)
    for f in b.rglob("*.wav"):  # shuffle modification times
        t = 1_600_000_000 + rng.randrange(10_000_000)
        os.utime(f, (t, t))
    kw = dict(test_speakers="2", seed=11, noise=NoiseConfig.parse("white,pink,brown", "-10:10"))
    rows_a, _ = build_manifest(a, tmp_path / "a" / "m.csv", **kw)
    write_manifest(rows_a, tmp_path / "a" / "m.csv")
    rows_a2, _ = build_manifest(a, tmp_path / "a" / "m2.csv", **kw)
    write_manifest(rows_a2, tmp_path / "a" / "m2.csv")
    rows_b, _ = build_manifest(b, tmp_path / "b" / "m.csv", **kw)
    write_manifest(rows_b, tmp_path / "b" / "m.csv")
    ba = (tmp_path / "a" / "m.csv").read_bytes()
    assert ba == (tmp_path / "a" / "m2.csv").read_bytes()
    assert ba == (tmp_path / "b" / "m.csv").read_bytes()
    assert ba.decode().splitlines()[0] == ",".join(COLUMNS)
    # the noise recipe varies per clip
    assert len({r.noise for r in rows_a}) == 3 and len({r.snr for r in rows_a}) > 20


def test_different_seed_different_split(corpus, tmp_path):
    s0 = splits_of(build_manifest(corpus, tmp_path / "m.csv", test_speakers="2", seed=0)[0])
    s1 = splits_of(build_manifest(corpus, tmp_path / "m.csv", test_speakers="2", seed=1)[0])
    assert s0.keys() == s1.keys() and s0 != s1
    tests = [{i.split("/")[0] for i, s in sd.items() if s == "test"} for sd in
             (splits_of(build_manifest(corpus, tmp_path / "m.csv", test_speakers="2", seed=k)[0]) for k in range(6))]
    assert len({frozenset(x) for x in tests}) > 1


def test_assign_splits_ignores_input_order(corpus):
    from digit_denoise.data.corpora import scan_corpus

    utts, *_ = scan_corpus(corpus)
    a = assign_splits(utts, 2, 0.2, 3)
    b = assign_splits(list(reversed(utts)), 2, 0.2, 3)
    assert a == b


# ------------------------------------------------------------------------- unreadable files
def test_unreadable_files_reported_and_left_out(tmp_path):
    root = make_audiomnist(tmp_path / "c", speakers=("01", "02", "03"), takes=2)
    (root / "01" / "0_01_0.wav").write_text("not audio at all")
    (root / "02" / "1_02_1.wav").write_bytes(b"")
    sf.write(root / "03" / "2_03_0.wav", np.zeros(0, np.float32), SR)  # valid header, no samples
    rows, warnings = build_manifest(root, tmp_path / "m.csv", test_speakers="1")
    ids = {r.id for r in rows}
    assert len(rows) == 3 * 3 * 2 - 3
    assert not ids & {"01/0_01_0", "02/1_02_1", "03/2_03_0"}
    w = [w for w in warnings if "unreadable" in w]
    assert len(w) == 1 and w[0].startswith("3 unreadable") and "0_01_0.wav" in w[0] and "1_02_1.wav" in w[0]
    assert "\n" not in w[0]
    with pytest.raises(UserError, match="strict") as ei:
        build_manifest(root, tmp_path / "m.csv", test_speakers="1", strict=True)
    assert "3 unreadable" in str(ei.value) and "\n" not in str(ei.value)


def test_all_unreadable(tmp_path):
    root = tmp_path / "c"
    for s in ("01", "02"):
        (root / s).mkdir(parents=True)
        (root / s / f"0_{s}_0.wav").write_text("x")
    with pytest.raises(UserError, match="could be read"):
        build_manifest(root, tmp_path / "m.csv", test_speakers="1")


def test_babble_needs_two_speakers_per_split(corpus, tmp_path):
    with pytest.raises(UserError, match="babble"):
        build_manifest(corpus, tmp_path / "m.csv", test_speakers="28,", noise=NoiseConfig.parse("babble"))
    # a bare number is a count; the message says how to name that one speaker
    with pytest.raises(UserError, match="write '28,'"):
        build_manifest(corpus, tmp_path / "m.csv", test_speakers="28", noise=NoiseConfig.parse("babble"))
    rows, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers="28,56", noise=NoiseConfig.parse("babble"))
    assert {r.noise for r in rows} == {"babble"}


def test_noise_folder_stored_relative_and_loaded_absolute(corpus, tmp_path):
    nf = tmp_path / "noises"
    wav(nf / "a.wav", seed=3)
    out = tmp_path / "sub" / "m.csv"
    rows, _ = build_manifest(corpus, out, test_speakers="2", noise=NoiseConfig.parse(str(nf)))
    assert {r.noise for r in rows} == {"../noises"}
    write_manifest(rows, out)
    back = load_manifest(out)
    assert {r.noise for r in back} == {str(nf.resolve())}


# ---------------------------------------------------------------------------------- I/O
def test_write_manifest_states(corpus, tmp_path):
    rows, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers="2")
    p = tmp_path / "m.csv"
    assert write_manifest(rows, p) == "written"
    before = p.read_bytes()
    assert write_manifest(rows, p) == "unchanged"
    other = [replace(r, snr="0") for r in rows]
    with pytest.raises(UserError, match="overwrite"):
        write_manifest(other, p)
    assert p.read_bytes() == before
    assert write_manifest(other, p, overwrite=True) == "overwritten"
    assert p.read_bytes() == manifest_text(other).encode()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.csv"]
    (tmp_path / "adir").mkdir()
    for ow in (False, True):
        with pytest.raises(UserError, match="is a folder"):
            write_manifest(rows, tmp_path / "adir", overwrite=ow)


def test_write_manifest_over_binary_or_crlf_file(corpus, tmp_path):
    rows, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers="2")
    p = tmp_path / "m.csv"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe binary")
    with pytest.raises(UserError, match="overwrite"):
        write_manifest(rows, p)
    assert write_manifest(rows, p, overwrite=True) == "overwritten"
    # same text with CRLF line ends is not byte-identical: rewritten, not 'unchanged'
    p.write_bytes(manifest_text(rows).replace("\n", "\r\n").encode())
    assert write_manifest(rows, p, overwrite=True) == "overwritten"
    assert p.read_bytes() == manifest_text(rows).encode()


def test_round_trip_paths_absolute(corpus, tmp_path):
    out = tmp_path / "deep" / "m.csv"
    rows, _ = build_manifest(corpus, out, test_speakers="2", noise=NoiseConfig.parse("pink", "-5,0"))
    write_manifest(rows, out)
    back = load_manifest(out)
    assert len(back) == len(rows)
    for a, b in zip(rows, back):
        assert Path(b.clean_path).is_absolute() and Path(b.clean_path).is_file()
        assert Path(b.clean_path) == (out.parent / a.clean_path).resolve()
        assert replace(b, clean_path=a.clean_path) == a
    # relative path to the manifest works from another cwd
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert [r.clean_path for r in load_manifest("deep/m.csv")] == [r.clean_path for r in back]
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("content", [
    b"", b"hello world\njust text\n", b"id,clean_path,speaker\nx,y,z\n", b"\x00\x01\x02\xff\xfe\x80" * 50,
    bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100])
def test_load_manifest_garbage_is_user_error(tmp_path, content):
    p = tmp_path / "m.csv"
    p.write_bytes(content)
    with pytest.raises(UserError) as ei:
        load_manifest(p)
    assert "\n" not in str(ei.value) and str(p) in str(ei.value)


def test_load_manifest_malformed_rows(corpus, tmp_path):
    rows, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers="2")
    p = tmp_path / "m.csv"
    write_manifest(rows, p)
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:3] + [lines[3].replace(",0,", ",zero,", 1)] + lines[4:]) + "\n")
    with pytest.raises(UserError, match="line"):
        load_manifest(p)
    p.write_text("\n".join(lines[:3] + ["01/0_01_0,x"]) + "\n")  # truncated row
    with pytest.raises(UserError, match="line 4"):
        load_manifest(p)
    p.write_text(lines[0] + "\n")
    with pytest.raises(UserError, match="no rows"):
        load_manifest(p)
    for missing in (tmp_path / "nope.csv", tmp_path):
        with pytest.raises(UserError, match="not found"):
            load_manifest(missing)


def test_select_with_noise_and_summary(corpus, tmp_path):
    rows, _ = build_manifest(corpus, tmp_path / "m.csv", test_speakers="2", seed=2)
    test = select(rows, "test")
    assert test and all(r.split == "test" for r in test)
    assert len(select(rows, "all")) == len(rows) == len(select(rows))
    lim = select(rows, "train", 7)
    assert len(lim) == 7 and len({r.id for r in lim}) == 7
    assert select(rows, "train", 10_000) == select(rows, "train")
    with pytest.raises(UserError, match="--limit"):
        select(rows, "train", -1)
    with pytest.raises(UserError, match="no 'test' split"):
        select(build_manifest(corpus, tmp_path / "m.csv", test_speakers="0")[0], "test")
    nrows = with_noise(rows, NoiseConfig.parse("brown", "5"), seed=9)
    assert {(r.noise, r.snr, r.noise_seed) for r in nrows} == {("brown", "5", 9)}
    assert [r.id for r in nrows] == [r.id for r in rows]
    table = summary_table(rows)
    assert table.splitlines()[0].split()[:5] == ["split", "clips", "speakers", "minutes", "digits"]
    assert "test speakers:" in table and "white:" in table
    counts = Counter(r.split for r in rows)
    for line in table.splitlines()[2:5]:
        s, n = line.split()[:2]
        assert counts[s] == int(n)


def test_prepare_writes_and_reports(corpus, tmp_path, capsys):
    out = tmp_path / "m.csv"
    rows = prepare(corpus, out, test_speakers="2")
    assert load_manifest(out)[0].id == rows[0].id
    assert "manifest written" in capsys.readouterr().err
    prepare(corpus, out, test_speakers="2")
    assert "manifest unchanged" in capsys.readouterr().err
    with pytest.raises(UserError):
        prepare(corpus, out, test_speakers="3")
    with open(out, newline="") as f:
        assert next(csv.reader(f)) == COLUMNS


def test_speech16k_splits_are_speaker_disjoint_per_corpus(tmp_path):
    from test_corpora import make_speech16k

    from digit_denoise.data.manifest import SPEECH16K_HOLDOUT, build_manifest

    root = make_speech16k(tmp_path / "s16")
    rows, _ = build_manifest(root, tmp_path / "m.csv", seed=0)
    again, _ = build_manifest(root, tmp_path / "m.csv", seed=0)
    assert rows == again
    spk = {s: {r.speaker for r in rows if r.split == s} for s in ("train", "val", "test")}
    assert not (spk["train"] & spk["test"]) and not (spk["train"] & spk["val"]) and not (spk["val"] & spk["test"])
    for corpus, (n_test, n_val) in SPEECH16K_HOLDOUT.items():
        if corpus == "dspspeech20":  # 5 speakers: too few for 4 + 2, so a third / a sixth are held out
            n_test, n_val = 1, 0
        assert len([s for s in spk["test"] if s.startswith(corpus + "/")]) == n_test
        assert len([s for s in spk["val"] if s.startswith(corpus + "/")]) == n_val
    assert all(r.split == "train" for r in rows if r.speaker.startswith("wakewords/"))
    other, _ = build_manifest(root, tmp_path / "m.csv", seed=1)
    assert {r.speaker for r in other if r.split == "test"} != spk["test"]
