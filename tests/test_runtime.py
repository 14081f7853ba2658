"""Process-wide runtime settings: glibc malloc tuning and torch.compile's kernel cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from digit_denoise import runtime
from digit_denoise.training.distributed import compile_model


def _cache_env(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    else:
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", value)


def test_compile_keeps_one_kernel_cache_per_instruction_set(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    cap = torch.backends.cpu.get_cpu_capability().lower()
    base = os.path.abspath(default_cache_dir())
    for before in (None, base):  # unset, or the default importing torch._dynamo writes there
        _cache_env(monkeypatch, before)
        net = compile_model(torch.nn.Linear(2, 2))
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == f"{base}_{cap}"
        assert callable(net)
    mine = str(tmp_path / "my-cache")  # the user's own choice is kept
    _cache_env(monkeypatch, mine)
    compile_model(torch.nn.Linear(2, 2))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == mine


COMPILE_SNIPPET = textwrap.dedent(
    """
    import torch
    from digit_denoise.training.distributed import compile_model

    class M(torch.nn.Module):
        def forward(self, x):
            return torch.relu(x * 2.0 + 1.0).sum(dim=1)

    x = torch.randn(8, 256)
    assert torch.allclose(compile_model(M())(x), M()(x))
    """
)


@pytest.mark.slow
def test_compiled_kernels_survive_a_change_of_instruction_set(tmp_path):
    """The failure this guards against: a run on the native kernels (AVX2/AVX-512), then one with
    ``ATEN_CPU_CAPABILITY=default`` in the same temp folder reused the vectorised cached kernel and
    failed to build it (torch's cache key ignores the capability)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "ATEN_CPU_CAPABILITY")}
    env["TMPDIR"] = str(tmp_path)  # inductor's default cache lives under the temp folder
    for extra in ({}, {"ATEN_CPU_CAPABILITY": "default"}):
        r = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET], env={**env, **extra}, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]


def test_malloc_tuning_applies_once_and_can_be_turned_off():
    first = runtime.tune_malloc()
    assert runtime.tune_malloc() is first  # once per process
    if sys.platform.startswith("linux"):
        code = "from digit_denoise.runtime import tune_malloc; print(tune_malloc())"
        off = subprocess.run([sys.executable, "-c", code], env={**os.environ, "DIGIT_DENOISE_MALLOC": "default"},
                             capture_output=True, text=True, check=True)
        assert off.stdout.strip() == "False"
