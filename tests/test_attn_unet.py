"""seed-attn: the attention U-Net on the seed representation — the shared model checks and a tiny run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import make_manifest, train_cfg
from torch import nn

from digit_denoise.checkpoint import load_model, model_meta, save_checkpoint
from digit_denoise.errors import UserError
from digit_denoise.models import (
    AttnUNet,
    AttnUNetConfig,
    build_model,
    count_parameters,
    describe,
    flops_per_sample,
    measure_receptive_field,
    model_config,
    receptive_field,
)
from digit_denoise.seed.features import SeedFeatureConfig
from digit_denoise.training.loop import train
from digit_denoise.training.runlog import read_history

TINY = {"channels": [4, 8, 16, 32]}


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("hw", [(112, 112), (1, 1), (7, 30), (64, 33)])
def test_any_size_in_same_size_out_in_0_1(hw):
    m = build_model("seed-attn", TINY).eval()
    with torch.no_grad():
        y = m(torch.rand(2, 1, *hw))
    assert y.shape == (2, 1, *hw) and float(y.min()) >= 0 and float(y.max()) <= 1


def test_every_parameter_trains():
    torch.manual_seed(0)
    m = build_model("seed-attn", TINY).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    nn.functional.mse_loss(m(torch.rand(4, 1, 32, 40)), torch.rand(4, 1, 32, 40)).backward()
    assert [k for k, v in m.named_parameters() if v.grad is None] == []
    opt.step()
    assert [k for k, v in m.named_parameters() if torch.equal(v, before[k])] == []
    # no conv bias sits in front of a BatchNorm (they would be dead weight)
    for mod in m.modules():
        if isinstance(mod, nn.Sequential):
            kids = list(mod.children())
            for a, b in zip(kids, kids[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    assert a.bias is None


def test_attention_gates_are_used_and_can_be_switched_off():
    on, off = build_model("seed-attn", TINY), build_model("seed-attn", {**TINY, "attention": False})
    assert count_parameters(on) > count_parameters(off)
    assert sum(isinstance(g, nn.Identity) for g in off.gates) == 3
    # the gate scales the skip by a map in [0, 1] that depends on the decoder signal
    g = on.gates[0]
    with torch.no_grad():
        a = g(_x(1, 16, 5, 5), torch.ones(1, 16, 5, 5))
        b = g(_x(1, 16, 5, 5, seed=1), torch.ones(1, 16, 5, 5))
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and not torch.equal(a, b)


def test_receptive_field_analytic_equals_measured():
    m = build_model("seed-attn", TINY)
    assert measure_receptive_field(m, size=224) == (receptive_field(m), receptive_field(m, centred=True)) == (100, 103)
    assert receptive_field("seed-attn") == 100 and receptive_field(AttnUNetConfig(channels=(8, 16, 32))) == 44


def test_save_load_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    m = build_model("seed-attn", TINY).eval()
    feat = SeedFeatureConfig()
    save_checkpoint(tmp_path / "ck", m, model_meta("seed-attn", m.config.to_dict(),
                                                   {"kind": "seed", **feat.to_dict()}, feat.sample_rate))
    m2, meta = load_model(tmp_path / "ck")
    x = torch.rand(2, 1, 112, 112)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert meta["model"] == "seed-attn" and AttnUNetConfig.from_dict(meta["config"]) == m.config


def test_config_errors():
    with pytest.raises(UserError, match="channels"):
        model_config("seed-attn", {"channels": [8]})
    with pytest.raises(UserError, match="final_activation"):
        model_config("seed-attn", {"final_activation": "tanh"})
    with pytest.raises(UserError, match="unknown"):
        model_config("seed-attn", {"depth": 4})


def test_self_check_and_size():
    m = build_model("seed-attn")
    assert count_parameters(m) == 2_034_212
    flops = flops_per_sample(m)
    assert flops > flops_per_sample(build_model("seed"))
    out = subprocess.run([sys.executable, "-m", "digit_denoise.models", "--name", "seed-attn"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == describe("seed-attn").strip() and "100 px" in out and f"{flops:,}" in out


def test_tiny_seed_recipe_run_learns(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    manifest = make_manifest(tmp_path / "data")
    run = tmp_path / "run"
    s = train(train_cfg(manifest, run, model="seed-attn", model_config=dict(TINY)))
    hist = read_history(run)
    assert s["steps"] == 16 and min(r["val_loss"] for r in hist[1:]) < hist[0]["val_loss"]  # one run against itself; the best later validation, not the last (robust to kernel-level drift)
    meta = json.loads((run / "checkpoints" / "best" / "model.json").read_text())
    assert meta["model"] == "seed-attn" and meta["features"]["kind"] == "seed"
    assert isinstance(load_model(run)[0], AttnUNet)
