"""Where a run computes: the device, mixed precision, and this process's place in a ``torchrun`` job."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..errors import UserError


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain fp32)."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: not a device name (cpu, cuda, cuda:1, mps, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return dev


class Dist:
    """This process's place in a ``torchrun`` job (rank 0 of 1 when not distributed).

    Every rank builds the same global batch (a pure function of seed, epoch and position) and
    trains on its slice ``idx[rank::world]``; DistributedDataParallel averages the gradients, so
    the global batch size and the data are those of one process. Only rank 0 writes files.
    """

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.world > 1:
            if device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model

        return DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def shard(self, idx: np.ndarray) -> slice:
        return slice(self.rank, None, self.world) if self.world > 1 else slice(None)

    def total(self, value: float, count: int) -> tuple[float, int]:
        """(Σ value, Σ count) over ranks."""
        if self.world == 1:
            return value, count

        t = torch.tensor([value, float(count)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0]), int(t[1])

    def close(self) -> None:
        if self.world > 1:
            dist.barrier()
            dist.destroy_process_group()


def compile_model(module):
    """``torch.compile(module)`` with inductor's kernel cache kept apart per CPU instruction set.

    Inductor's on-disk cache does not tell kernels generated for AVX2/AVX-512 from those for the
    portable ones (``ATEN_CPU_CAPABILITY=default``, or a home folder shared by different CPUs): a
    cached vectorised kernel is then rebuilt without the vector headers and fails to compile. One
    cache folder per capability avoids that; a ``TORCHINDUCTOR_CACHE_DIR`` the user set is kept.
    """
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir  # private: may move
        base = os.path.abspath(default_cache_dir())
    except ImportError:  # a private module: fall back to its documented default place
        base = os.path.join(tempfile.gettempdir(), "torchinductor")
    # importing torch._dynamo already writes the default into the environment: only that is replaced
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR", base) == base:
        cap = torch.backends.cpu.get_cpu_capability().lower()
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = f"{base}_{cap}"
    return torch.compile(module)
