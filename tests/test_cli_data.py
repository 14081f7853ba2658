"""The `data` commands of the CLI: prepare / mix / summary, errors, and --help texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from digit_denoise.audio import load_audio
from digit_denoise.cli import main
from digit_denoise.data.manifest import load_manifest
from digit_denoise.data.pairs import BabblePool, make_pair

SR = 8000


def wav(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SR * 0.3)) / SR
    f0 = 120 + 11 * seed
    sf.write(path, (0.2 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4))).astype(np.float32), SR)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "amn"
    for i, s in enumerate(("01", "02", "03", "04", "05")):
        for d in (0, 1):
            for t in range(3):
                wav(root / s / f"{d}_{s}_{t}.wav", seed=i)
    (root / "audioMNIST_meta.txt").write_text('{"1": {"gender": "female", "age": "22"}}')
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, *words):
    assert code == 2
    lines = [x for x in err.splitlines() if x.strip()]
    errors = [x for x in lines if "error" in x.lower()]
    assert len(errors) == 1 and lines[-1] == errors[0], err  # the error is one line, and the last
    assert errors[0].startswith("digit-denoise: error: ")
    # anything before it is a status line (e.g. which layout was detected), never a traceback
    assert all(x.startswith("layout: detected") for x in lines[:-1]), err
    assert "Traceback" not in err and out == ""
    for w in words:
        assert w in errors[0], errors[0]


def test_prepare_prints_summary(corpus, tmp_path, capsys):
    out = tmp_path / "m.csv"
    code, stdout, err = run(capsys, "data", "prepare", "--corpus", str(corpus), "--out", str(out),
                            "--test-speakers", "1", "--noise", "white,pink", "--snr", "-5:5", "--seed", "3")
    assert code == 0, err
    assert "detected 'audiomnist'" in err and "manifest written" in err
    lines = stdout.splitlines()
    assert lines[0].split()[:5] == ["split", "clips", "speakers", "minutes", "digits"]
    counts = {ln.split()[0]: int(ln.split()[1]) for ln in lines[2:] if not ln.startswith("test speakers")}
    assert counts == {"train": 16, "val": 8, "test": 6}
    assert any(ln.startswith("test speakers: ") for ln in lines)
    rows = load_manifest(out)
    assert len(rows) == 30 and {r.noise for r in rows} <= {"white", "pink"}
    assert all(-5 <= float(r.snr) <= 5 for r in rows)
    # rerun with identical options: unchanged, exit 0; other options without --overwrite: error
    before = out.read_bytes()
    code, _, err = run(capsys, "data", "prepare", "--corpus", str(corpus), "--out", str(out),
                       "--test-speakers", "1", "--noise", "white,pink", "--snr", "-5:5", "--seed", "3")
    assert code == 0 and "unchanged" in err and out.read_bytes() == before
    assert_one_line_error(*run(capsys, "data", "prepare", "--corpus", str(corpus), "--out", str(out),
                               "--seed", "4", "--test-speakers", "1"), "already exists", "--overwrite")
    assert out.read_bytes() == before
    code, _, err = run(capsys, "data", "prepare", "--corpus", str(corpus), "--out", str(out), "--seed", "4",
                       "--test-speakers", "1", "--overwrite")
    assert code == 0 and "overwritten" in err and out.read_bytes() != before
    # summary of the written manifest
    code, stdout, _ = run(capsys, "data", "summary", str(out))
    assert code == 0 and stdout.splitlines()[0].startswith("split")


def test_prepare_warnings_go_to_stderr(tmp_path, capsys):
    root = tmp_path / "c"
    for s in ("01", "02"):
        wav(root / s / f"0_{s}_0.wav")
        wav(root / s / f"1_{s}_0.wav")
    (root / "02" / "1_02_0.wav").write_text("not audio")
    code, stdout, err = run(capsys, "data", "prepare", "--corpus", str(root), "--out", str(tmp_path / "m.csv"),
                            "--test-speakers", "1")
    assert code == 0
    assert "warning: 1 unreadable file(s) left out" in err and "1_02_0.wav" in err
    assert "warning: no speaker metadata" in err
    assert "warning" not in stdout
    assert_one_line_error(*run(capsys, "data", "prepare", "--corpus", str(root), "--out",
                               str(tmp_path / "m2.csv"), "--test-speakers", "1", "--strict"), "unreadable")
    assert not (tmp_path / "m2.csv").exists()


def test_bad_inputs_exit_2_with_one_line(corpus, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "garbage.csv").write_bytes(b"\x00\xff\xfe garbage")
    o = str(tmp_path / "o.csv")
    cases = [
        (["data", "prepare", "--corpus", str(tmp_path / "nope"), "--out", o], "not found"),
        (["data", "prepare", "--corpus", str(tmp_path / "f.txt"), "--out", o], "is a file"),
        (["data", "prepare", "--corpus", str(tmp_path / "empty"), "--out", o], "no audio files"),
        (["data", "prepare", "--corpus", str(corpus), "--out", o, "--snr", "loud"], "--snr"),
        (["data", "prepare", "--corpus", str(corpus), "--out", o, "--noise", "purple"], "--noise"),
        (["data", "prepare", "--corpus", str(corpus), "--out", o, "--test-speakers", "7"], "--test-speakers"),
        (["data", "prepare", "--corpus", str(corpus), "--out", o, "--test-speakers", "1,99"], "unknown speaker"),
        (["data", "prepare", "--corpus", str(corpus), "--out", o, "--val-fraction", "1.5"], "--val-fraction"),
        (["data", "prepare", "--corpus", str(corpus), "--out", o, "--layout", "folder"], "--pattern"),
        (["data", "prepare", "--corpus", str(corpus), "--out", o, "--layout", "folder", "--pattern", "{take}"],
         "--pattern"),
        (["data", "prepare", "--corpus", str(corpus), "--out", o, "--noise", "babble", "--test-speakers", "01,"],
         "babble"),
        (["data", "prepare", "--corpus", str(corpus), "--out", str(tmp_path / "empty"), "--test-speakers", "1"],
         "is a folder"),
        (["data", "prepare", "--corpus", str(corpus), "--out", str(tmp_path / "empty"), "--test-speakers", "1",
          "--overwrite"], "is a folder"),
        (["data", "prepare", "--corpus", str(corpus), "--out", o, "--babble-talkers", "0", "--noise", "babble"],
         "--babble-talkers"),
        (["data", "summary", str(tmp_path / "missing.csv")], "not found"),
        (["data", "summary", str(tmp_path / "garbage.csv")], "garbage.csv"),
        (["data", "mix", "--manifest", str(tmp_path / "garbage.csv"), "--out", str(tmp_path / "mx")], "garbage"),
    ]
    for argv, word in cases:
        assert_one_line_error(*run(capsys, *argv), word)
    assert not Path(o).exists()


@pytest.mark.parametrize("snr,expected", [("-8", {"-8"}), ("-8,-5,0", {"-8", "-5", "0"}),
                                          ("-10:10", None), ("-10..-2", None), ("5", {"5"})])
def test_snr_forms_on_the_command_line(corpus, tmp_path, capsys, snr, expected):
    out = tmp_path / "m.csv"
    for argv in (["--snr", snr], [f"--snr={snr}"]):
        code, _, err = run(capsys, "data", "prepare", "--corpus", str(corpus), "--out", str(out),
                           "--test-speakers", "1", *argv, "--overwrite")
        assert code == 0, err
        got = {r.snr for r in load_manifest(out)}
        if expected is not None:
            assert got == expected
        else:
            lo, hi = (float(v) for v in snr.replace("..", ":").split(":"))
            assert len(got) > 10 and all(lo <= float(v) <= hi for v in got)


def test_argparse_errors_exit_2(capsys):
    for argv in (["data", "prepare"], ["data", "prepare", "--corpus", "x", "--layout", "zip"],
                 ["data", "prepare", "--corpus", "x", "--seed", "one"], ["data"]):
        with pytest.raises(SystemExit) as ei:
            main(argv)
        assert ei.value.code == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err


def test_mix_command(corpus, tmp_path, capsys):
    m = tmp_path / "m.csv"
    assert run(capsys, "data", "prepare", "--corpus", str(corpus), "--out", str(m), "--test-speakers", "2",
               "--noise", "babble,white", "--snr", "0")[0] == 0
    out = tmp_path / "mixed"
    code, _, err = run(capsys, "data", "mix", "--manifest", str(m), "--out", str(out), "--split", "test")
    assert code == 0, err
    rows = load_manifest(m)
    test = [r for r in rows if r.split == "test"]
    mixed = load_manifest(out / "manifest.csv")
    assert [r.id for r in mixed] == [r.id for r in test]
    pool = BabblePool(rows)
    for old, new in zip(test, mixed):
        assert new.noisy_path.endswith(f"{old.id}_noisy.wav") and Path(new.noisy_path).is_file()
        disk, _ = load_audio(new.noisy_path)
        assert np.array_equal(disk[0], make_pair(old, pool=pool)[1])
    before = (out / "manifest.csv").read_bytes()
    assert_one_line_error(*run(capsys, "data", "mix", "--manifest", str(m), "--out", str(out), "--split", "test"),
                          "already exists")
    assert (out / "manifest.csv").read_bytes() == before
    assert run(capsys, "data", "mix", "--manifest", str(m), "--out", str(out), "--split", "test",
               "--overwrite")[0] == 0
    code, _, _ = run(capsys, "data", "mix", "--manifest", str(m), "--out", str(tmp_path / "lim"), "--split",
                     "train", "--limit", "3", "--sample-rate", "16000")
    assert code == 0
    lim = load_manifest(tmp_path / "lim" / "manifest.csv")
    assert len(lim) == 3 and sf.info(lim[0].noisy_path).samplerate == 16000
    assert_one_line_error(*run(capsys, "data", "mix", "--manifest", str(m), "--out", str(tmp_path / "neg"),
                               "--limit", "-2"), "--limit")
    assert not (tmp_path / "neg").exists()


@pytest.mark.parametrize("cmd,defaults", [
    ("prepare", ["(default: 5)", "(default: 0.2)", "(default: white)", "(default: -8)", "(default: 0)",
                 "(default: auto)", "(default: manifest.csv)", "(default: 5)"]),
    ("mix", ["(default: all)"]),
    ("summary", []),
    ("synth", ["(default: 30)", "(default: 10)"]),
    ("download", []),
])
def test_help_mentions_defaults(capsys, cmd, defaults):
    with pytest.raises(SystemExit) as ei:
        main(["data", cmd, "--help"])
    assert ei.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert text.startswith("usage: digit-denoise data " + cmd)
    for d in defaults:
        assert d in text, (cmd, d)
    if cmd == "prepare":
        assert "--test-speakers TEST_SPEAKERS number of whole speakers held out for test" in text
        assert "list like 28,56 (default: 5)" in text
    # no help text states a default twice
    assert "(default: each file's own rate) (default: None)" not in text


def test_data_help(capsys):
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    text = capsys.readouterr().out
    for cmd in ("prepare", "mix", "summary", "synth", "download"):
        assert cmd in text
