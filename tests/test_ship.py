"""Packaging a run as the shipped default model, and the published GTCRN weights."""

from __future__ import annotations

import pytest
import torch

from digit_denoise.checkpoint import load_model
from digit_denoise.models import build_model

TINY = {"channels": 8, "dilations": [1, 2]}


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.numerics
def test_ship_writes_a_half_precision_default_that_loads(tmp_path):
    from digit_denoise.checkpoint import model_meta, save_checkpoint
    from digit_denoise.ship import ship

    m = build_model("masknet", TINY).eval()
    save_checkpoint(tmp_path / "ck", m, model_meta("masknet", m.config.to_dict(), {"kind": "wave"}, 16000))
    path = ship(tmp_path / "ck", tmp_path / "pre", note={"trained_on": "test"})
    m2, meta = load_model(path)
    assert meta["weights_dtype"] == "float16" and meta["trained_on"] == "test"
    assert next(m2.parameters()).dtype == torch.float32
    x = _x(1, 4000)
    with torch.no_grad():
        a, b = m(x), m2(x)
    assert float((a - b).abs().max()) < 1e-2 * float(a.abs().max())
