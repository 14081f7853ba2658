"""One progress helper for every long step (CLI, tests, DDP ranks behave the same).

Progress bars go to stderr. They are hidden on non-zero DDP ranks and when
``DIGIT_DENOISE_QUIET=1`` is set (tests set it to keep output short).
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet() -> bool:
    """True when progress output should be suppressed."""
    if os.environ.get("DIGIT_DENOISE_QUIET", "") not in ("", "0"):
        return True
    return int(os.environ.get("RANK", "0")) != 0


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", leave: bool = False, **kwargs) -> Iterator[T] | tqdm:
    """Wrap ``iterable`` in a tqdm bar (or return a manual bar when ``iterable`` is None)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=quiet(),
                file=sys.stderr, dynamic_ncols=True, **kwargs)


def say(msg: str) -> None:
    """Print a status line to stderr (rank 0 only; kept even when quiet unless DDP rank != 0)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(msg, file=sys.stderr, flush=True)
