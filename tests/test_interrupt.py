"""Training survives SIGKILL: a tiny run killed at a random step (after its first resume point) and rerun with
the same command ends with exactly the weights of an uninterrupted run (CPU, one thread, same seed)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import make_manifest
from safetensors.torch import load_file

MAX_STEPS = 40
PRESETS = {
    # the seed U-Net on cached seed images (20 clips, 3 steps per epoch)
    "seed": ["--preset", "seed", "--epochs", "20", "--lr", "1e-2", "--model-config", '{"channels": [4, 8, 16]}'],
    # the shipped model's recipe: MaskNet on noisy batches made on the fly, cosine schedule, gradient clipping
    "fast": ["--preset", "fast", "--lr", "3e-3", "--segment", "0.5", "--noise", "white,pink", "--snr", "0:5",
             "--model-config", '{"channels": 8, "dilations": [1, 2]}'],
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return make_manifest(tmp_path_factory.mktemp("data"))


def _command(manifest: Path, run: Path, preset: str) -> list[str]:
    return [sys.executable, "-m", "digit_denoise.cli", "train", "--manifest", str(manifest), "--out", str(run),
            "--batch-size", "8", "--max-steps", str(MAX_STEPS), "--val-every", "10", "--save-every", "1",
            "--threads", "1", "--device", "cpu", "--seed", "0", *PRESETS[preset]]


def _env(cache: Path) -> dict:
    return {**os.environ, "DIGIT_DENOISE_CACHE": str(cache), "DIGIT_DENOISE_QUIET": "1", "OMP_NUM_THREADS": "1"}


def _saved_step(run: Path) -> int:
    try:
        return int(json.loads((run / "checkpoints" / "last" / "model.json").read_text())["step"])
    except (OSError, ValueError, KeyError):  # not there yet, or being swapped in
        return 0


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


@pytest.mark.numerics
@pytest.mark.parametrize("preset", list(PRESETS))
def test_sigkill_then_resume_equals_straight_run(manifest, tmp_path, preset):
    """Bit-exact on purpose: both arms are processes on this machine with the same environment
    (one thread, same ATEN_CPU_CAPABILITY), so the same kernels compute every step."""
    env = _env(tmp_path / "cache")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_command(manifest, straight, preset), env=env, check=True, capture_output=True, timeout=300)

    target = random.randint(1, MAX_STEPS - 12)  # kill once this step's resume point is on disk
    proc = subprocess.Popen(_command(manifest, killed, preset), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while _saved_step(killed) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    at = _saved_step(killed)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed (target step {target})"
    assert 1 <= at < MAX_STEPS, (target, at)

    res = subprocess.run(_command(manifest, killed, preset), env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr, res.stderr
    assert _saved_step(killed) == MAX_STEPS
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"killed after step {at} (target {target}): {differ} differ"
    steps = [json.loads(line)["step"] for line in (killed / "history.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == MAX_STEPS
