"""Where a run computes: the device, mixed precision, and this process's place in a ``torchrun`` job."""

from __future__ import annotations

import os

import numpy as np
import torch

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
            import torch.distributed as dist

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
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def shard(self, idx: np.ndarray) -> slice:
        return slice(self.rank, None, self.world) if self.world > 1 else slice(None)

    def total(self, value: float, count: int) -> tuple[float, int]:
        """(Σ value, Σ count) over ranks."""
        if self.world == 1:
            return value, count
        import torch.distributed as dist

        t = torch.tensor([value, float(count)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0]), int(t[1])

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
