from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from digit_denoise.errors import UserError
from digit_denoise.models import (
    MODELS,
    SeedBuggyConfig,
    SeedBuggyUNet,
    SeedUNet,
    SeedUNetConfig,
    available_models,
    build_model,
    count_parameters,
    flops_per_sample,
    measure_receptive_field,
    model_config,
    receptive_field,
)


def _batch(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_registry_table():
    assert available_models() == ["seed", "seed-buggy", "seed-attn", "masknet", "tasnet", "gtcrn", "ul-unas"]
    assert MODELS["seed"] == (SeedUNetConfig, SeedUNet)
    assert MODELS["seed-buggy"] == (SeedBuggyConfig, SeedBuggyUNet)
    assert isinstance(build_model("seed"), SeedUNet)
    with pytest.raises(UserError, match="unknown model"):
        build_model("nope")
    with pytest.raises(UserError, match="unknown key"):
        model_config("seed", {"chanels": [8, 16, 32]})
    with pytest.raises(UserError, match="final_activation"):
        model_config("seed", {"final_activation": "tanhh"})


def test_config_roundtrip():
    cfg = model_config("seed-buggy", {"channels": [8, 16, 32], "hidden_seed": 7})
    d = cfg.to_dict()
    assert d == {
        "in_channels": 1,
        "out_channels": 1,
        "channels": [8, 16, 32],
        "final_activation": "none",
        "hidden_seed": 7,
    }
    assert SeedBuggyConfig.from_dict(d) == cfg
    assert SeedUNetConfig().final_activation == "none"  # published recipe


def test_parameter_counts():
    assert count_parameters(build_model("seed")) == 467_233
    buggy = build_model("seed-buggy")
    assert count_parameters(buggy) == 33
    assert [n for n, _ in buggy.named_parameters()] == ["head.weight", "head.bias"]
    # the hidden (unregistered) layers hold the rest of the published model
    hidden = sum(p.numel() for m in buggy.hidden_modules() for p in m.parameters())
    assert hidden + 33 == 467_233


def _pre_bn_conv_biases(model: nn.Module) -> set[str]:
    """Names of conv biases directly followed by a BatchNorm (gradient == 0 up to rounding)."""
    names = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            kids = list(mod.named_children())
            for (n1, a), (_, b) in zip(kids, kids[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    names.add(f"{mname}.{n1}.bias")
    return names


def test_one_adam_step_updates_every_parameter():
    torch.manual_seed(0)
    model = build_model("seed").train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, target = _batch(4, 1, 32, 48, seed=1), _batch(4, 1, 32, 48, seed=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    nn.functional.mse_loss(model(x), target).backward()
    missing_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing_grad == [], f"no gradient for: {missing_grad}"
    opt.step()

    dead = _pre_bn_conv_biases(model)
    assert len(dead) == 10  # every 3x3 conv sits in front of a BatchNorm
    # Every parameter with a real gradient must move.
    unchanged = [
        n for n, p in model.named_parameters() if n not in dead and torch.equal(p, before[n])
    ]
    assert unchanged == [], f"parameters not updated by one Adam step: {unchanged}"
    # Conv biases in front of BatchNorm are kept only to match the published count
    # (467,233): BN removes the per-channel mean, so their gradient is rounding noise.
    # They are registered and in the optimizer; their "update" is not meaningful.
    params = dict(model.named_parameters())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    for n in dead:
        assert id(params[n]) in in_opt
        weight_grad = params[n.replace("bias", "weight")].grad.abs().max()
        assert params[n].grad.abs().max() < 1e-5 * weight_grad + 1e-6


def test_eval_reaches_every_batchnorm_in_seed_unet():
    model = build_model("seed").train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 10
    model.eval()
    still_training = [n for n, m in model.named_modules() if m.training]
    assert still_training == []


def test_seed_buggy_documented_failure():
    """The published bug: .eval() never reaches the hidden BatchNorms; training leaves them fixed."""
    model = build_model("seed-buggy")
    model.eval()
    assert all(not m.training for m in model.modules())  # registered part obeys
    hidden_bns = [
        m for h in model.hidden_modules() for m in h.modules() if isinstance(m, nn.BatchNorm2d)
    ]
    assert len(hidden_bns) == 10
    assert all(m.training for m in hidden_bns), "hidden BN should stay in training mode (the bug)"
    # batch statistics: an item's output depends on the rest of its batch, even in "eval"
    x = _batch(2, 1, 24, 24)
    with torch.no_grad():
        assert not torch.allclose(model(x)[:1], model(x[:1]))
    # one Adam step trains the head only; the hidden weights never move
    model.train()
    hidden_before = [p.detach().clone() for h in model.hidden_modules() for p in h.parameters()]
    head_before = model.head.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    nn.functional.mse_loss(model(x), torch.zeros_like(x)).backward()
    opt.step()
    assert not torch.equal(model.head.weight, head_before)
    hidden_after = [p for h in model.hidden_modules() for p in h.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(hidden_after, hidden_before))


def test_seed_buggy_hidden_layers_come_from_hidden_seed_only():
    torch.manual_seed(123)
    head_only = nn.Conv2d(32, 1, 1)  # what the registered head draws from the global RNG
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_model("seed-buggy", {"hidden_seed": 5})
    assert torch.equal(a.head.weight, head_only.weight)  # hidden draws consumed no global RNG
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(456)  # a different global state gives the same hidden weights
    b = build_model("seed-buggy", {"hidden_seed": 5})
    c = build_model("seed-buggy", {"hidden_seed": 6})
    wa, wb, wc = (m.enc[0][0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_seed_buggy_apply_moves_hidden_modules():
    model = build_model("seed-buggy").to(torch.float64)
    dtypes = {p.dtype for h in model.hidden_modules() for p in h.parameters()}
    assert dtypes == {torch.float64} and model.head.weight.dtype == torch.float64
    assert model(_batch(1, 1, 16, 16).double()).dtype == torch.float64


@pytest.mark.parametrize("name", ["seed", "seed-buggy"])
@pytest.mark.parametrize("shape", [(1, 1, 37, 53), (2, 1, 112, 112), (1, 1, 13, 200), (1, 1, 3, 5)])
def test_output_shape_equals_input_shape(name, shape):
    model = build_model(name, {"channels": [8, 16, 32]} if shape[-1] < 112 else None).eval()
    with torch.no_grad():
        y = model(_batch(*shape))
    assert y.shape == shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["seed", "seed-buggy"])
def test_state_dict_roundtrip_gives_identical_outputs(name):
    cfg = {"channels": [8, 16, 32], "final_activation": "softplus"}
    if name == "seed-buggy":
        cfg["hidden_seed"] = 3
    torch.manual_seed(0)
    model = build_model(name, cfg)
    # make the state non-trivial: one training step (moves BN running stats, weights)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = _batch(3, 1, 21, 30)
    nn.functional.mse_loss(model(x), x.abs()).backward()
    opt.step()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(999)  # a different global RNG state must not matter
    fresh = build_model(name, model.config.to_dict())
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    model.eval()
    fresh.eval()
    with torch.no_grad():
        y1, y2 = model(x), fresh(x)
    assert torch.equal(y1, y2)
    if name == "seed-buggy":
        assert set(fresh.state_dict()) == {"head.weight", "head.bias"}


def test_receptive_field_analytic_matches_empirical():
    for name in ("seed", "seed-buggy"):
        rf = receptive_field(name)
        centred = receptive_field(name, centred=True)
        # Exact field width is 44 (even: the 2x2 pooling phase puts it off-centre);
        # the smallest odd window centred on the output pixel that contains it is 47.
        assert rf == 44 and centred == 47
        assert centred > 0 and centred % 2 == 1
        small = build_model(name, {"channels": [2, 2, 2]})
        assert measure_receptive_field(small, size=96) == (rf, centred)
    assert receptive_field(SeedUNetConfig()) == 44
    assert receptive_field(build_model("seed")) == 44
    # waveform models: samples (2 × context + 1)
    assert receptive_field("masknet") == 2 * build_model("masknet").context_samples + 1


def test_flops_per_sample_seed_112():
    hw = 112 * 112
    macs = (
        hw * 9 * (1 * 32 + 32 * 32)  # enc1
        + hw // 4 * 9 * (32 * 64 + 64 * 64)  # enc2
        + hw // 16 * 9 * (64 * 128 + 128 * 128)  # enc3
        + hw // 16 * 4 * 128 * 64  # up 128->64 (per input pixel, 2x2 kernel)
        + hw // 4 * 9 * (128 * 64 + 64 * 64)  # dec2
        + hw // 4 * 4 * 64 * 32  # up 64->32
        + hw * 9 * (64 * 32 + 32 * 32)  # dec1
        + hw * 32  # head
    )
    expected = 2 * macs  # ~2.42 GFLOP
    model = build_model("seed")
    got = flops_per_sample(model, (1, 112, 112))
    assert abs(got - expected) <= 0.01 * expected
    assert 2.3e9 < got < 2.5e9
    # counting must not touch the model's BatchNorm running statistics
    assert all(
        torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )
    # the buggy reproduction computes the same convolutions (hidden ones included)
    assert flops_per_sample(build_model("seed-buggy")) == got
