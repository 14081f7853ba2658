"""The order a run visits its training clips in: one shuffle per epoch, a pure function of (seed, epoch),
so a resumed run (and every torchrun rank) sees the same batches as an uninterrupted one."""

from __future__ import annotations

import numpy as np


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of ``n`` clips in epoch ``epoch``: a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)
