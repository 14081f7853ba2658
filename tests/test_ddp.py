"""DistributedDataParallel: 2 CPU processes over gloo (torchrun) train like one process.

Both runs see the same global batches (every rank builds the global batch and takes its slice);
DDP averages the two half-batch gradients, which is the full-batch gradient. Differences are only
float summation order, so the loss curves agree to ~1e-4 relative; MaskNet has no BatchNorm (the
seed U-Net's BatchNorm statistics would be per-process, as in any DDP run without SyncBatchNorm).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import make_manifest

ARGS = ["--preset", "fast", "--model-config", '{"channels": 8, "dilations": [1, 2]}', "--batch-size", "8",
        "--max-steps", "6", "--val-every", "3", "--lr", "3e-3", "--segment", "0.5", "--noise", "white,pink",
        "--snr", "0:5", "--threads", "1", "--device", "cpu", "--seed", "0"]


def _run(cmd: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "DIGIT_DENOISE_CACHE": str(tmp_path / "cache"), "DIGIT_DENOISE_QUIET": "1",
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def _history(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_gloo_processes_match_one(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "digit_denoise.train", "--manifest", str(manifest), "--out", str(one), *ARGS],
         tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
          "-m", "digit_denoise.train", "--manifest", str(manifest), "--out", str(two), *ARGS], tmp_path)
    h1, h2 = _history(one), _history(two)
    assert [r["step"] for r in h1] == [r["step"] for r in h2] == [3, 6]
    for a, b in zip(h1, h2):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3, abs=1e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3, abs=1e-3)
    w1 = load_file(str(one / "checkpoints" / "last" / "model.safetensors"))
    w2 = load_file(str(two / "checkpoints" / "last" / "model.safetensors"))
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=1e-3, atol=1e-4), k
    # only rank 0 wrote: one history line per validation, no stray files
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
