"""GTCRN: the published weights load strictly, match the reference outputs, and the non-causal variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from digit_denoise.checkpoint import load_model
from digit_denoise.models import build_model
from digit_denoise.models.gtcrn import GTCRN, GTCRNConfig, erb_filterbank, noncausal_state
from digit_denoise.pretrained import packaged_path as packaged_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "pretrained"


def _x(n, seed=0):
    return torch.randn(1, n, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_packaged_weights_load_strictly_and_the_filterbank_is_rebuilt_exactly():
    model, meta = load_model("gtcrn")
    assert meta["model"] == "gtcrn" and (packaged_model("gtcrn").parent / "LICENSE-gtcrn").is_file()
    assert torch.equal(erb_filterbank(), model.erb.erb_fc.weight)  # a fresh model has the published bands
    fresh = build_model("gtcrn")
    fresh.load_state_dict(model.state_dict(), strict=True)


@pytest.mark.numerics
@pytest.mark.skipif(not (SHARED / "parity").is_dir(), reason="../shared/pretrained/parity not present")
@pytest.mark.parametrize("i", range(4))
def test_matches_the_reference_outputs(i):
    """Parity fixtures: the authors' implementation's outputs on CPU float32 (≤ 1e-4 max abs difference)."""
    shared = load_file(str(SHARED / "gtcrn-dns3.safetensors"))
    model = GTCRN().eval()
    model.load_state_dict(shared, strict=True)
    noisy, sr = sf.read(str(SHARED / "parity" / f"noisy_{i}.wav"), dtype="float32")
    ref, _ = sf.read(str(SHARED / "parity" / f"gtcrn_{i}.wav"), dtype="float32")
    with torch.no_grad():
        out = model(torch.from_numpy(noisy)[None])[0].numpy()
    n = min(len(out), len(ref))
    assert sr == 16000 and len(out) == len(noisy) and np.abs(out[:n] - ref[:n]).max() < 1e-4
    packaged = load_file(str(packaged_model("gtcrn")))
    assert all(torch.equal(packaged[k], shared[k]) for k in shared)


@pytest.mark.numerics
def test_causal_as_published_and_noncausal_starts_identical():
    model, _ = load_model("gtcrn")
    x = _x(16000)
    x2 = x.clone()
    x2[0, 12000:] += 0.5 * _x(4000, seed=1)[0]  # change only the end
    with torch.no_grad():
        a, b = model(x), model(x2)
    # frames whose windows end before sample 12000 (centred 512-sample frames, hop 256) do not change
    assert float((a[0, :11000] - b[0, :11000]).abs().max()) < 1e-6
    nc = GTCRN(GTCRNConfig(causal=False)).eval()
    nc.load_state_dict(noncausal_state(model.state_dict()), strict=True)
    with torch.no_grad():
        assert float((nc(x) - a).abs().max()) < 1e-6
    # after a training step the backward direction is used: the future now changes the past
    nc.train()
    opt = torch.optim.Adam([p for p in nc.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # step 1 opens the backward columns of the output layer, step 2 trains through them
        opt.zero_grad()
        (nc(x) - x).pow(2).mean().backward()
        opt.step()
    nc.eval()
    with torch.no_grad():
        assert float((nc(x)[0, :11000] - nc(x2)[0, :11000]).abs().max()) > 1e-5


@pytest.mark.parametrize("n", [0, 1, 100, 256, 257, 16001])
def test_any_length_comes_back_with_its_length(n):
    model = build_model("gtcrn").eval()
    with torch.no_grad():
        y = model(_x(max(n, 1))[:, :n])
    assert y.shape == (1, n) and torch.isfinite(y).all()


def test_compare_knows_the_packaged_model():
    from digit_denoise.compare.methods import resolve_methods

    methods, _ = resolve_methods("noisy,gtcrn")
    assert [m.name for m in methods] == ["noisy", "gtcrn"]
