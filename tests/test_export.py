"""ONNX export: onnxruntime's output matches PyTorch's (waveform and seed models), metadata, CLI, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_files import save_seed_model, save_wave_model

from digit_denoise.checkpoint import load_model
from digit_denoise.cli import main
from digit_denoise.errors import UserError
from digit_denoise.export import export_onnx

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'digit-denoise[onnx]')")
onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install 'digit-denoise[onnx]')")


def _run(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.numerics
def test_wave_model_matches_pytorch_at_any_length(tmp_path):
    m = save_wave_model(tmp_path / "wave", seed=3)
    s = export_onnx(str(m), tmp_path / "wave.onnx")
    assert s["kind"] == "wave" and s["max_abs_diff"] is not None and s["max_abs_diff"] < 1e-4
    model, meta = load_model(m)
    rng = np.random.default_rng(0)
    for shape in [(1, 16000), (4, 12345), (2, 1), (1, 16000 * 5 + 3)]:
        x = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = _run(tmp_path / "wave.onnx", x)
        assert got.shape == shape
        np.testing.assert_allclose(got, want, atol=1e-4)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "wave.onnx")).metadata_props}
    assert props["kind"] == "wave" and props["sample_rate"] == "16000"
    assert json.loads(props["digit_denoise"])["config"] == meta["config"]


@pytest.mark.numerics
def test_a_model_files_attenuation_limit_is_in_the_graph(tmp_path):
    """The exported graph gives what ``denoise`` gives: the input mixed back in at the model's own limit."""
    from digit_denoise.enhance import Denoiser

    m = save_wave_model(tmp_path / "wave", seed=3)
    js = m / "model.json"
    js.write_text(json.dumps({**json.loads(js.read_text()), "atten_lim_db": 20}))
    assert export_onnx(str(m), tmp_path / "lim.onnx")["max_abs_diff"] < 1e-4
    x = (0.1 * np.random.default_rng(0).standard_normal((1, 16000))).astype(np.float32)
    got = _run(tmp_path / "lim.onnx", x)
    np.testing.assert_allclose(got, Denoiser.from_checkpoint(m).enhance(x, 16000), atol=1e-4)
    plain = Denoiser.from_checkpoint(m, atten_lim_db=float("inf")).enhance(x, 16000)
    np.testing.assert_allclose(got, 0.9 * plain + 0.1 * x, atol=1e-4)
    meta = json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "lim.onnx")).metadata_props}["digit_denoise"])
    assert meta["atten_lim_db"] == 20 and meta["atten_lim_in_graph"] is True
    v = save_wave_model(tmp_path / "voice", config={"voice": 8})  # a personalised one: the voice input stays
    js = v / "model.json"
    js.write_text(json.dumps({**json.loads(js.read_text()), "atten_lim_db": 20}))
    s = export_onnx(str(v), tmp_path / "voice.onnx")
    assert s["max_abs_diff"] < 1e-4 and "voice [batch, 8]" in s["input"]


@pytest.mark.numerics
def test_complex_mask_model(tmp_path):
    m = save_wave_model(tmp_path / "cplx", config={"mask": "complex"})
    assert export_onnx(str(m), tmp_path / "c.onnx")["max_abs_diff"] < 1e-4


@pytest.mark.numerics
def test_seed_model_exports_its_image_net(tmp_path):
    m = save_seed_model(tmp_path / "seed")
    s = export_onnx(str(m), tmp_path / "seed.onnx")
    assert s["kind"] == "seed" and s["max_abs_diff"] < 1e-4 and "112, 112" in s["input"]
    model, _ = load_model(m)
    x = np.random.default_rng(1).random((5, 1, 112, 112), dtype=np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(tmp_path / "seed.onnx", x), want, atol=1e-4)


def test_cli_export_and_refusals(tmp_path, capsys):
    m = save_wave_model(tmp_path / "wave")
    out = tmp_path / "model.onnx"
    assert main(["export", str(m), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "onnxruntime matches PyTorch" in text and out.is_file()
    before = out.read_bytes()
    for args, msg in [(["export", str(m), "-o", str(out)], "already exists"),
                      (["export", str(m), "-o", str(tmp_path / "model.bin")], ".onnx"),
                      (["export", str(tmp_path / "nope"), "-o", str(tmp_path / "x.onnx")], "not found")]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and msg in err, err
    assert out.read_bytes() == before
    assert main(["export", str(m), "-o", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_no_default_model(tmp_path, monkeypatch):
    from digit_denoise import pretrained

    monkeypatch.setattr(pretrained, "FOLDER", tmp_path)
    with pytest.raises(UserError, match="no default model"):
        export_onnx(None, tmp_path / "x.onnx")


def test_seed_buggy_is_refused(tmp_path):
    from digit_denoise import checkpoint as ck
    from digit_denoise.models import build_model
    from digit_denoise.seed.features import SeedFeatureConfig

    m = build_model("seed-buggy", {"channels": [4, 8, 16]})
    meta = ck.model_meta("seed-buggy", m.config.to_dict(), {"kind": "seed", **SeedFeatureConfig().to_dict()}, 48000)
    ck.save_checkpoint(tmp_path / "buggy", m, meta)
    with pytest.raises(UserError, match="published bug"):
        export_onnx(str(tmp_path / "buggy"), tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()
