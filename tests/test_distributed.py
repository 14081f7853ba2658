"""DistributedDataParallel: 2 CPU processes over gloo (torchrun) train like one process.

Both runs see the same global batches (every rank builds the global batch and takes its slice);
DDP averages the two half-batch gradients, which is the full-batch gradient (checked in-process in
float64). Across processes only float summation order differs, so the loss of the first step (before
any update) agrees to rounding. After that, Adam's first steps move every weight by ~±lr whatever the
gradient's size, so a gradient within rounding of zero can step either way in the two runs: later
numbers are compared with a stated bound, not to rounding. MaskNet has no BatchNorm (the seed
U-Net's BatchNorm statistics would be per-process, as in any DDP run without SyncBatchNorm).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import make_manifest
from safetensors.torch import load_file

ARGS = ["--preset", "fast", "--model-config", '{"channels": 8, "dilations": [1, 2]}', "--batch-size", "8",
        "--max-steps", "4", "--val-every", "1", "--lr", "3e-3", "--segment", "0.5", "--noise", "white,pink",
        "--snr", "0:5", "--threads", "1", "--device", "cpu", "--seed", "0"]


def _run(cmd: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "DIGIT_DENOISE_CACHE": str(tmp_path / "cache"), "DIGIT_DENOISE_QUIET": "1",
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def _history(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]


def test_rank_slices_average_to_the_full_batch_gradient():
    """What DDP relies on: the ranks' slices cover the batch once, and their mean gradient is the
    full-batch gradient (float64: equal to rounding)."""
    from digit_denoise.losses import neg_si_sdr
    from digit_denoise.models import build_model
    from digit_denoise.training.distributed import Dist

    torch.manual_seed(0)
    model = build_model("masknet", {"channels": 8, "dilations": [1, 2]}).double()
    noisy = torch.randn(8, 4000, dtype=torch.float64)
    clean = noisy + 0.3 * torch.randn(8, 4000, dtype=torch.float64)
    idx = torch.arange(8)

    def grads(part):
        model.zero_grad()
        neg_si_sdr(model(noisy[part]), clean[part]).backward()
        return [p.grad.clone() for p in model.parameters()]

    full = grads(idx)
    slices = []
    for rank in range(2):
        d = Dist.__new__(Dist)
        d.world, d.rank = 2, rank
        slices.append(idx[d.shard(idx.numpy())])
    assert sorted(torch.cat(slices).tolist()) == idx.tolist()
    per_rank = [grads(s) for s in slices]
    for g, g0, g1 in zip(full, *per_rank):
        assert torch.allclose((g0 + g1) / 2, g, rtol=1e-9, atol=1e-12)


@pytest.mark.numerics
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_gloo_processes_match_one(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "digit_denoise", "train", "--manifest", str(manifest), "--out", str(one), *ARGS],
         tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
          "-m", "digit_denoise", "train", "--manifest", str(manifest), "--out", str(two), *ARGS], tmp_path)
    h1, h2 = _history(one), _history(two)
    assert [r["step"] for r in h1] == [r["step"] for r in h2] == [1, 2, 3, 4]
    assert h2[0]["train_loss"] == pytest.approx(h1[0]["train_loss"], rel=1e-5)  # step 1: same weights, same data
    for a, b in zip(h1, h2):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=2e-2)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=2e-2)
    w1 = load_file(str(one / "checkpoints" / "last" / "model.safetensors"))
    w2 = load_file(str(two / "checkpoints" / "last" / "model.safetensors"))
    for k in w1:
        assert float((w1[k] - w2[k]).norm()) <= 5e-2 * float(w1[k].norm()) + 1e-3, k
    # only rank 0 wrote: one history line per validation, no stray files
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
