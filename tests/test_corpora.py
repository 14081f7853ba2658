"""corpora.py: every layout, auto-detection, speaker metadata quirks, bad folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from digit_denoise.data.corpora import (
    _norm_age,
    _norm_gender,
    detect_layout,
    parse_speaker_meta,
    pattern_regex,
    scan_corpus,
)
from digit_denoise.errors import UserError

SR = 8000


def tone(seed: int, sr: int = SR, dur: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * dur)) / sr
    f0 = 110 + 7 * (seed % 40)
    return (0.2 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))).astype(np.float32)


def wav(path: Path, seed: int = 0, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seed, sr), sr, subtype="PCM_16")
    return path


def make_audiomnist(root: Path, speakers=("01", "02", "03"), digits=(0, 1, 2), takes=2, meta=None,
                    noisy=False) -> Path:
    for s in speakers:
        for d in digits:
            for t in range(takes):
                wav(root / s / f"{d}_{s}_{t}.wav", seed=int(s) * 10 + d)
                if noisy:
                    wav(root / s / f"{d}_{s}_{t}_noisy.wav", seed=99)
    if meta is not None:
        (root / "audioMNIST_meta.txt").write_text(json.dumps(meta) if not isinstance(meta, str) else meta)
    return root


def make_fsdd(root: Path, speakers=("jackson", "nicolas", "theo"), digits=(0, 1), takes=2, meta=None) -> Path:
    for i, s in enumerate(speakers):
        for d in digits:
            for t in range(takes):
                wav(root / "recordings" / f"{d}_{s}_{t}.wav", seed=i)
    if meta is not None:
        (root / "speakers.json").write_text(json.dumps(meta))
    return root


# ------------------------------------------------------------------------------ layouts
def test_audiomnist_layout_with_meta(tmp_path, capsys):
    meta = {"01": {"gender": "Female ", "age": "30"}, "2": {"gender": "m", "age": 25.0},
            "3": {"Gender": "male", "AGE": "?"}}
    root = make_audiomnist(tmp_path / "amn", meta=meta)
    utts, m, layout, warnings = scan_corpus(root)
    assert layout == "audiomnist" and warnings == []
    assert "detected 'audiomnist'" in capsys.readouterr().err
    assert len(utts) == 3 * 3 * 2
    u = next(u for u in utts if u.id == "01/2_01_1")
    assert (u.speaker, u.digit, u.take, u.noisy_path) == ("01", 2, 1, None)
    assert u.clean_path == root / "01" / "2_01_1.wav"
    assert (m["01"].gender, m["01"].age) == ("female", "30")
    assert (m["02"].gender, m["02"].age) == ("male", "25")
    assert (m["03"].gender, m["03"].age) == ("male", "")
    assert len({u.id for u in utts}) == len(utts)


def test_audiomnist_under_data_subfolder(tmp_path, capsys):
    root = tmp_path / "AudioMNIST"
    make_audiomnist(root / "data", speakers=("01", "12"), meta={"1": {"gender": "female", "age": 40}})
    (root / "README.md").write_text("readme")
    utts, m, layout, warnings = scan_corpus(root)
    assert layout == "audiomnist" and len(utts) == 12 and warnings == []
    assert {u.speaker for u in utts} == {"01", "12"}
    assert all(not u.id.startswith("data/") for u in utts)
    assert m["01"].gender == "female" and m["01"].age == "40"
    # pointing at data/ directly gives the same ids
    utts2, *_ = scan_corpus(root / "data", "audiomnist")
    assert [u.id for u in utts2] == [u.id for u in utts]


def test_pairs_layout(tmp_path, capsys):
    root = make_audiomnist(tmp_path / "p", speakers=("01", "02"), noisy=True, meta={})
    (root / "02" / "1_02_1_noisy.wav").unlink()  # this clean file lacks its partner
    utts, meta, layout, warnings = scan_corpus(root)
    assert layout == "pairs"
    assert "detected 'pairs'" in capsys.readouterr().err
    ids = {u.id for u in utts}
    assert "02/1_02_1" not in ids and len(utts) == 2 * 3 * 2 - 1
    assert not any(i.endswith("_noisy") for i in ids)
    assert any("1 clean files have no _noisy partner" in w and "1_02_1.wav" in w for w in warnings)
    for u in utts:
        assert u.noisy_path == u.clean_path.with_name(u.clean_path.stem + "_noisy.wav")
        assert u.noisy_path.is_file()
    # the same folder read as plain audiomnist ignores the noisy files
    utts_a, _, layout_a, w_a = scan_corpus(root, "audiomnist")
    assert layout_a == "audiomnist" and len(utts_a) == 12 and all(u.noisy_path is None for u in utts_a)
    assert not any("partner" in w for w in w_a)


def test_fsdd_layout(tmp_path, capsys):
    meta = {"jackson": {"gender": "male"}, "nicolas": {"gender": "m", "age": "-1"}, "theo": "junk"}
    root = make_fsdd(tmp_path / "fsdd", meta=meta)
    utts, m, layout, warnings = scan_corpus(root)
    assert layout == "fsdd" and warnings == []
    assert "detected 'fsdd'" in capsys.readouterr().err
    assert len(utts) == 12 and {u.speaker for u in utts} == {"jackson", "nicolas", "theo"}
    u = next(u for u in utts if u.id == "1_theo_0")
    assert (u.digit, u.take) == (1, 0)
    assert m["jackson"].gender == "male" and m["nicolas"] == m["nicolas"].__class__("male", "")
    assert "theo" not in m
    # no speakers.json: a warning, not a crash
    root2 = make_fsdd(tmp_path / "fsdd2")
    _, m2, _, w2 = scan_corpus(root2, "fsdd")
    assert m2 == {} and len(w2) == 1 and "speakers.json" in w2[0]


def test_folder_layout_pattern_nested(tmp_path, capsys):
    root = tmp_path / "mine"
    wav(root / "a" / "3_alice_0.wav")
    wav(root / "a" / "deep" / "3_alice_1.wav")
    wav(root / "b" / "7_bob-2_12.wav")
    wav(root / "b" / "notes_x.wav")  # does not match: ignored
    wav(root / "b" / "7_bob-2_12_noisy.wav")  # noisy partners are never clean utterances
    utts, meta, layout, warnings = scan_corpus(root, "folder", "{digit}_{speaker}_{take}")
    assert layout == "folder" and meta == {}
    got = sorted((u.id, u.speaker, u.digit, u.take) for u in utts)
    assert got == [("a/3_alice_0", "alice", 3, 0), ("a/deep/3_alice_1", "alice", 3, 1),
                   ("b/7_bob-2_12", "bob-2", 7, 12)]
    # auto + pattern means folder, and says so
    _, _, layout2, _ = scan_corpus(root, "auto", "{digit}_{speaker}_{take}")
    assert layout2 == "folder" and "detected 'folder'" in capsys.readouterr().err


def test_folder_layout_digit_words_and_no_take(tmp_path):
    root = tmp_path / "words"
    wav(root / "spk1" / "spk1-Three-take.wav")
    wav(root / "spk1" / "spk1-three-again.wav")
    wav(root / "spk2" / "spk2-nine-x.wav")
    wav(root / "spk2" / "spk2-4-x.wav")
    utts, *_ = scan_corpus(root, "folder", "{speaker}-{digit}-*")
    got = sorted((u.speaker, u.digit, u.take) for u in utts)
    assert got == [("spk1", 3, 0), ("spk1", 3, 1), ("spk2", 4, 0), ("spk2", 9, 0)]


def test_pattern_regex():
    rx = pattern_regex("rec.{digit}({speaker})")
    assert rx.match("rec.5(x1)")["digit"] == "5"
    assert not rx.match("recX5(x1)")  # "." is literal
    with pytest.raises(UserError):
        pattern_regex("{speaker}_{take}")
    with pytest.raises(UserError):
        pattern_regex("{digit}")


# ----------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("value,expected", [("?", ""), ("30", "30"), (25.0, "25"), ("-1", ""), (999, ""),
                                            (None, ""), ("", ""), (" 41 ", "41"), (25.5, ""), ("nan", ""),
                                            ("inf", ""), (0, "")])
def test_norm_age(value, expected):
    assert _norm_age(value) == expected


@pytest.mark.parametrize("value,expected", [("Female ", "female"), ("m", "male"), ("MALE", "male"), ("F", "female"),
                                            (None, ""), ("", ""), ("other", ""), (3, "")])
def test_norm_gender(value, expected):
    assert _norm_gender(value) == expected


def test_meta_keys_ints_and_zero_padded(tmp_path):
    p = tmp_path / "meta.txt"
    p.write_text('{"1": {"gender": "female"}, "02": {"age": 31}, "60": {}, "x": 5, "007": {"gender": "m"}}')
    m, w = parse_speaker_meta(p)
    assert w is None
    assert m["01"].gender == "female" and m["1"] is m["01"]
    assert m["02"].age == "31" and m["2"].age == "31" and m["02"].gender == ""
    assert m["60"].gender == "" and m["60"].age == ""
    assert m["07"].gender == "male" and m["7"].gender == "male" and m["007"].gender == "male"
    assert "x" not in m


@pytest.mark.parametrize("content,word", [("{broken json", "broken"), ("[1, 2, 3]", "not a JSON object"),
                                          ('"text"', "not a JSON object"), (b"\xff\xfe\x00\x01", "broken")])
def test_bad_meta_is_a_warning(tmp_path, content, word):
    root = make_audiomnist(tmp_path / "c", speakers=("01", "02"))
    f = root / "audioMNIST_meta.txt"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    utts, meta, layout, warnings = scan_corpus(root)
    assert len(utts) == 12 and meta == {}
    assert len(warnings) == 1 and word in warnings[0] and "\n" not in warnings[0]


def test_missing_meta_is_a_warning(tmp_path):
    root = make_audiomnist(tmp_path / "c", speakers=("01",))
    utts, meta, _, warnings = scan_corpus(root)
    assert meta == {} and len(warnings) == 1 and "audioMNIST_meta.txt" in warnings[0]


# ------------------------------------------------------------------------------ bad input
def test_bad_folders_are_one_line_user_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.wav").write_bytes(b"RIFF")
    other = tmp_path / "other"
    wav(other / "hello.wav")
    (other / "x.txt").write_text("x")
    fsdd = make_fsdd(tmp_path / "fsdd")
    cases = [(tmp_path / "missing", "auto", None, "not found"), (tmp_path / "file.wav", "auto", None, "is a file"),
             (tmp_path / "empty", "auto", None, "no audio files"), (other, "auto", None, "could not recognise"),
             (fsdd, "audiomnist", None, "no recordings found"), (other, "folder", None, "needs --pattern"),
             (other, "folder", "{digit}_{speaker}_{take}", "no recordings found"),
             (fsdd, "weird", None, "--layout"), (tmp_path / "empty", "fsdd", None, "no recordings found")]
    for root, layout, pattern, words in cases:
        with pytest.raises(UserError) as ei:
            scan_corpus(root, layout, pattern)
        msg = str(ei.value)
        assert words in msg and "\n" not in msg, (root, layout, msg)


def test_detect_layout(tmp_path):
    assert detect_layout(make_audiomnist(tmp_path / "a", speakers=("01",))) == "audiomnist"
    assert detect_layout(make_audiomnist(tmp_path / "p", speakers=("01",), noisy=True)) == "pairs"
    assert detect_layout(make_fsdd(tmp_path / "f")) == "fsdd"
    flat = tmp_path / "flat"
    wav(flat / "x" / "4_george_3.wav")
    assert detect_layout(flat) == "fsdd"


def test_same_name_other_extension_is_one_utterance(tmp_path):
    root = make_fsdd(tmp_path / "f", speakers=("ann", "bob"), digits=(0,), takes=1)
    wav(root / "recordings" / "0_ann_0.flac")
    utts, _, _, warnings = scan_corpus(root)
    assert sorted(u.id for u in utts) == ["0_ann_0", "0_bob_0"]
    assert any("left out" in w and "0_ann_0.wav" in w for w in warnings)
    folder = tmp_path / "g"
    wav(folder / "x" / "3_al_1.wav")
    wav(folder / "x" / "3_al_1.aiff")
    wav(folder / "x" / "4_al_1.wav")
    utts, _, _, warnings = scan_corpus(folder, "folder", "{digit}_{speaker}_{take}")
    assert sorted(u.id for u in utts) == ["x/3_al_1", "x/4_al_1"] and len(warnings) == 1


def make_speech16k(root: Path) -> Path:
    """A tiny files.csv corpus: 3 corpora with speakers, one without labels (wake words)."""
    lines = ["corpus,path,speaker,gender,age,text,seconds,dyn_range_db,licence"]
    for corpus, n_spk, words in (("speechcommands", 60, ("three", "yes")), ("speechocean762", 45, ("a sentence",)),
                                 ("dspspeech20", 5, ("yi",))):
        for s in range(n_spk):
            for k, w in enumerate(words):
                rel = f"{corpus}/{s:03d}/{k}.flac"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(root / rel), tone(s + k, 16000), 16000)
                gender = "m" if corpus == "speechocean762" and s % 2 else ""
                lines.append(f"{corpus},{rel},{s:03d},{gender},,{w},0.3,40,x")
    for k in range(4):
        rel = f"wakewords/alexa/{k}.flac"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(root / rel), tone(k, 16000), 16000)
        lines.append(f"wakewords,{rel},,,,alexa,0.3,40,x")
    (root / "files.csv").write_text("\n".join(lines) + "\n")
    return root


def test_speech16k_layout(tmp_path):
    root = make_speech16k(tmp_path / "s16")
    utts, meta, layout, warnings = scan_corpus(root)
    assert layout == "speech16k" and len(utts) == 60 * 2 + 45 + 5 + 4 and not warnings
    by_id = {u.id: u for u in utts}
    assert by_id["speechcommands/007/0"].digit == 3 and by_id["speechcommands/007/1"].digit == -1
    assert by_id["speechcommands/007/0"].speaker == "speechcommands/007"
    assert by_id["wakewords/alexa/2"].speaker == "wakewords/unlabelled"
    assert meta["speechocean762/001"].gender == "male"
    (root / "files.csv").write_text("corpus,path\nx,y.flac\n")
    with pytest.raises(UserError, match="missing columns"):
        scan_corpus(root, "speech16k")
