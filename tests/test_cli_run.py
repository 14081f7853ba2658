"""CLI round trip: data prepare → train → evaluate → denoise, and the denoise command's refusals."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import soundfile as sf
from helpers import make_corpus, tone

from digit_denoise.cli import main


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digit-denoise: error: "), err
    return lines[0]


def test_cli_round_trip(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    corpus = make_corpus(tmp_path / "corpus")
    man = tmp_path / "manifest.csv"
    run = tmp_path / "runs" / "tiny"
    assert main(["data", "prepare", "--corpus", str(corpus), "--out", str(man), "--test-speakers", "1",
                 "--val-fraction", "0.5", "--snr", "0"]) == 0
    assert "test speakers" in capsys.readouterr().out

    train_args = ["train", "--manifest", str(man), "--out", str(run), "--batch-size", "8", "--max-steps", "3",
                  "--val-every", "2", "--lr", "1e-2", "--threads", "1", "--device", "cpu", "--limit", "12",
                  "--model-config", '{"channels": [4, 8, 16]}']
    assert main(train_args) == 0
    assert "steps: 3" in capsys.readouterr().out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["limit"] == 12 and cfg["max_steps"] == 3 and cfg["epochs"] == 6 and cfg["model"] == "seed"
    # other settings on the same run: exit 2, one line naming --restart
    assert main([*train_args[:-2], "--model-config", '{"channels": [4, 8, 8]}']) == 2
    assert "--restart" in _one_error_line(capsys)
    assert main([*train_args[:-2], "--model-config", "[4, 8"]) == 2
    _one_error_line(capsys)
    other = [*train_args[:-2], "--model-config", "[4, 8, 16]"]
    other[other.index(str(run))] = str(tmp_path / "runs" / "other")
    assert main(other) == 2
    assert "JSON object" in _one_error_line(capsys)

    assert main(["evaluate", str(run), "--limit", "4", "--examples", "1"]) == 0
    out = capsys.readouterr().out
    assert "identity" in out and "per-pixel-mean" in out
    assert (run / "eval-test" / "summary.json").is_file()

    # denoise: stereo 16 kHz PCM_16 in → same rate, length and channels out
    n = 5000
    x = np.stack([np.resize(tone(200.0, 1, 0, sr=16000), n), np.resize(tone(120.0, 2, 1, sr=16000), n)], axis=1)
    x = x + 0.05 * np.random.default_rng(0).standard_normal(x.shape)
    src = tmp_path / "in.wav"
    sf.write(str(src), x, 16000, subtype="PCM_16")
    src_sha = _sha(src)
    dst = tmp_path / "out" / "out.wav"
    assert main(["denoise", str(src), "-o", str(dst), "--model", str(run)]) == 0
    i_in, i_out = sf.info(str(src)), sf.info(str(dst))
    assert (i_out.samplerate, i_out.frames, i_out.channels) == (16000, n, 2)
    assert i_out.subtype == i_in.subtype
    y, _ = sf.read(str(dst))
    assert np.isfinite(y).all() and np.abs(y).max() > 0
    out_sha = _sha(dst)

    # again without --overwrite: refused, output untouched
    capsys.readouterr()
    assert main(["denoise", str(src), "-o", str(dst), "--model", str(run)]) == 2
    assert "--overwrite" in _one_error_line(capsys)
    assert _sha(dst) == out_sha
    assert main(["denoise", str(src), "-o", str(dst), "--model", str(run), "--overwrite",
                 "--phase", "griffinlim", "--gl-iters", "2"]) == 0
    assert sf.info(str(dst)).frames == n
    capsys.readouterr()

    # output == input: refused, input untouched (also with --overwrite)
    for extra in ([], ["--overwrite"]):
        assert main(["denoise", str(src), "-o", str(src), "--model", str(run), *extra]) == 2
        assert "input" in _one_error_line(capsys)
        assert _sha(src) == src_sha

    # missing input, unreadable audio, missing model
    assert main(["denoise", str(tmp_path / "nope.wav"), "-o", str(tmp_path / "o2.wav"), "--model", str(run)]) == 2
    assert "nope.wav" in _one_error_line(capsys)
    bad = tmp_path / "text.wav"
    bad.write_text("this is not audio\n")
    assert main(["denoise", str(bad), "-o", str(tmp_path / "o3.wav"), "--model", str(run)]) == 2
    assert "text.wav" in _one_error_line(capsys)
    assert not (tmp_path / "o3.wav").exists()
    assert main(["denoise", str(src), "-o", str(tmp_path / "o4.wav"), "--model", str(tmp_path / "norun")]) == 2
    _one_error_line(capsys)
    assert main(["evaluate", str(tmp_path / "norun")]) == 2
    _one_error_line(capsys)

    # several inputs → a folder; two inputs with the same file name would collide
    (tmp_path / "b").mkdir()
    src2 = tmp_path / "b" / "in.wav"
    sf.write(str(src2), x[:, 0], 8000, subtype="FLOAT")
    assert main(["denoise", str(src), str(src2), "-o", str(tmp_path / "many"), "--model", str(run)]) == 2
    _one_error_line(capsys)
    src3 = tmp_path / "b" / "mono.wav"
    sf.write(str(src3), x[:, 0], 8000, subtype="FLOAT")
    assert main(["denoise", str(src), str(src3), "-o", str(tmp_path / "many"), "--model", str(run)]) == 0
    m = sf.info(str(tmp_path / "many" / "mono.wav"))
    assert (m.samplerate, m.frames, m.channels, m.subtype) == (8000, n, 1, "FLOAT")
    assert sf.info(str(tmp_path / "many" / "in.wav")).channels == 2
