"""UL-UNAS: the published weights load strictly, match the reference outputs, any length, causal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from digit_denoise.checkpoint import load_model
from digit_denoise.errors import UserError
from digit_denoise.models import build_model, model_config
from digit_denoise.models.gtcrn import erb_filterbank
from digit_denoise.models.ulunas import ULUNAS, ULUNASConfig
from digit_denoise.pretrained import packaged_path as packaged_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "pretrained"


def _x(n, seed=0):
    return torch.randn(1, n, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_packaged_weights_load_strictly_and_the_filterbank_is_rebuilt_exactly():
    model, meta = load_model("ul-unas")
    assert meta["model"] == "ul-unas" and (packaged_model("ul-unas").parent / "LICENSE-ul-unas").is_file()
    assert "MIT" in meta["licence"] and "Xiaobin-Rong/ul-unas" in meta["source"]
    assert torch.equal(erb_filterbank(), model.erb.erb_fc.weight)  # a fresh model has the published bands
    fresh = build_model("ul-unas")
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert sum(p.numel() for p in fresh.parameters() if p.requires_grad) == 146_752


@pytest.mark.numerics
@pytest.mark.skipif(not (SHARED / "parity").is_dir(), reason="../shared/pretrained/parity not present")
@pytest.mark.parametrize("i", range(4))
def test_matches_the_reference_outputs(i):
    """Parity fixtures: the authors' implementation's outputs on CPU float32 (≤ 1e-4 max abs difference)."""
    shared = load_file(str(SHARED / "ul-unas-dns3.safetensors"))
    model = ULUNAS().eval()
    model.load_state_dict(shared, strict=True)
    noisy, sr = sf.read(str(SHARED / "parity" / f"noisy_{i}.wav"), dtype="float32")
    ref, _ = sf.read(str(SHARED / "parity" / f"ulunas_{i}.wav"), dtype="float32")
    with torch.no_grad():
        out = model(torch.from_numpy(noisy)[None])[0].numpy()
    assert sr == 16000 and len(out) == len(noisy) and len(ref) >= len(noisy)
    assert np.abs(out - ref[:len(noisy)]).max() < 1e-4
    packaged = load_file(str(packaged_model("ul-unas")))
    assert all(torch.equal(packaged[k], shared[k]) for k in shared)


@pytest.mark.numerics
def test_causal_and_the_tail_after_the_last_full_hop_is_zero_as_published():
    model, _ = load_model("ul-unas")
    x = _x(16000)
    x2 = x.clone()
    x2[0, 12000:] += 0.5 * _x(4000, seed=1)[0]  # change only the end
    with torch.no_grad():
        a, b = model(x), model(x2)
    # frames whose windows end before sample 12000 (centred 512-sample frames, hop 256) do not change
    assert float((a[0, :11000] - b[0, :11000]).abs().max()) < 1e-6
    assert float((a - b).abs().max()) > 1e-4  # and the end does
    assert float(a[0, 15872:].abs().max()) == 0.0 and float(a[0, 15800:15872].abs().max()) > 0  # 16000 mod 256


@pytest.mark.parametrize("n", [0, 1, 100, 256, 257, 16001])
def test_any_length_comes_back_with_its_length(n):
    model = build_model("ul-unas").eval()
    with torch.no_grad():
        y = model(_x(max(n, 1))[:, :n])
    assert y.shape == (1, n) and torch.isfinite(y).all()


def test_config_is_checked():
    with pytest.raises(ValueError, match="hop 256"):
        ULUNASConfig(hop=128)
    with pytest.raises(UserError, match="ULUNAS config"):
        model_config("ul-unas", {"sample_rate": 8000})


def test_the_registry_self_check(capsys):
    from digit_denoise.models.__main__ import main

    assert main(["--name", "ul-unas"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ul-unas: ULUNAS (") and "trainable parameters: 146,752" in out
    assert "forward (2, 16000) -> (2, 16000): ok" in out


def test_compare_knows_the_packaged_model():
    from digit_denoise.compare.methods import resolve_methods

    methods, _ = resolve_methods("noisy,ul-unas")
    assert [m.name for m in methods] == ["noisy", "ul-unas"]
