"""Speaker enrolments for training a personalised model: for every clip, a voice profile made of *other*
clips of its speaker (never the clip itself), as a user would enrol once and then denoise new speech.

Every clip of the bank is embedded once with the shipped speaker encoder (cached on disk: a few minutes
for ten thousand clips). A clip's enrolment is the mean of 1–3 other clips of its speaker, drawn afresh
for every batch (a pure function of the batch's generator), L2-normalised. Clips of unknown speakers
(``wakewords/unlabelled``) and speakers with a single clip cannot be enrolled: :func:`enrollable` leaves
them out.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..audio import atomic_path
from ..progress import progress
from ..voice.encoder import ENCODER_FILE, embed
from .manifest import Row

MAX_ENROL = 3  # other clips averaged into one enrolment


def known_speaker(name: str) -> bool:
    return bool(name) and not name.endswith("unlabelled")


def enrollable(rows: list[Row]) -> list[Row]:
    """The rows of known speakers with at least two clips (one to denoise, another to enrol from)."""
    count: dict[str, int] = defaultdict(int)
    for r in rows:
        count[r.speaker] += 1
    return [r for r in rows if known_speaker(r.speaker) and count[r.speaker] >= 2]


def _cache_file(rows: list[Row]) -> Path:
    h = hashlib.sha256(hashlib.sha256(ENCODER_FILE.read_bytes()).digest())
    for r in rows:
        st = os.stat(r.clean_path)
        h.update(f"{Path(r.clean_path).resolve()}\x1f{st.st_size}\x1f{st.st_mtime_ns}\x1e".encode())
    root = Path(os.environ.get("DIGIT_DENOISE_CACHE", Path.home() / ".cache" / "digit-denoise"))
    return root / "voice" / f"{h.hexdigest()[:24]}.npy"


def clip_embeddings(rows: list[Row], bank, sr: int, desc: str = "embed voices") -> np.ndarray:
    """``Array[N, 256]``: the speaker embedding of each clip of ``bank`` (a ``batches.ClipBank`` of ``rows``,
    in their order), cached."""
    path = _cache_file(rows)
    if path.is_file():
        cached = np.load(path, allow_pickle=False)
        if cached.shape == (len(rows), 256):
            return cached
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small LSTM: one thread is fastest, and never oversubscribes a busy machine
    try:
        out = np.stack([embed(bank.clip(i), sr)[0] for i in progress(range(len(bank)), desc=desc, unit="clip")])
    finally:
        torch.set_num_threads(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, out.astype(np.float32), allow_pickle=False)
    return out.astype(np.float32)


class Enrolments:
    """The clips' embeddings and, per clip, the other clips of its speaker."""

    def __init__(self, embeddings: np.ndarray, speakers: list[str]):
        self.emb = torch.from_numpy(np.ascontiguousarray(embeddings, np.float32))
        groups: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(speakers):
            groups[s].append(i)
        self.others = [np.array([j for j in groups[s] if j != i], np.int64) for i, s in enumerate(speakers)]

    def enrol(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        """``Tensor[B, 256]``: for each clip of ``idx``, the normalised mean of 1–3 other clips of its speaker."""
        out = []
        for i in idx.tolist():
            others = self.others[i]
            if not len(others):
                raise ValueError(f"clip {i} has no other clip of its speaker to enrol from")
            k = 1 + int(torch.randint(min(MAX_ENROL, len(others)), (1,), generator=gen))
            pick = others[torch.randperm(len(others), generator=gen)[:k].numpy()]
            out.append(self.emb[torch.from_numpy(pick)].mean(0))
        e = torch.stack(out)
        return e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
