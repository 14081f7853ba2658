"""``digit-denoise denoise``: files in, denoised files out, at the input's rate, length and channels.

Outputs are written to a temp name and renamed; an existing output is never replaced without
``--overwrite``; the input is never written to.
"""

from __future__ import annotations

from pathlib import Path

from .audio import info, load_audio, write_audio
from .enhance import Denoiser
from .errors import UserError
from .progress import progress, say


def plan_outputs(inputs: list[str], output: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one input → ``output`` is a file (or a folder that exists);
    several inputs → ``output`` is a folder."""
    ins = [Path(p) for p in inputs]
    out = Path(output)
    if len(ins) == 1 and not out.is_dir():
        pairs = [(ins[0], out)]
    else:
        pairs = [(p, out / p.name) for p in ins]
    seen: dict[Path, Path] = {}
    inputs_resolved = {p.resolve() for p in ins}
    for src, dst in pairs:
        if dst.exists() and src.resolve() == dst.resolve() or dst.resolve() in inputs_resolved:
            raise UserError(f"{dst}: output would overwrite an input; choose another -o")
        key = dst.resolve()
        if key in seen:
            raise UserError(f"{dst}: inputs {seen[key]} and {src} would both be written there (same file name); "
                            "denoise them into different folders")
        seen[key] = src
    return pairs


def denoise_paths(inputs: list[str], output: str, *, model: str, phase: str = "noisy", gl_iters: int = 32,
                  overwrite: bool = False) -> int:
    """Denoise each input; returns the exit status (0 all done, 1 some failed)."""
    pairs = plan_outputs(inputs, output)
    den = Denoiser.from_checkpoint(model, phase=phase, gl_iters=gl_iters)
    failed = []
    for src, dst in progress(pairs, desc="denoise", unit="file"):
        try:
            if dst.exists() and not overwrite:
                raise UserError(f"{dst}: already exists; pass --overwrite or choose another -o")
            hdr = info(src)
            x, sr = load_audio(src)
            y = den.enhance(x, sr)
            write_audio(dst, y, sr, subtype=hdr.subtype, overwrite=overwrite)
        except UserError as e:
            if len(pairs) == 1:
                raise
            failed.append(str(e))
    for msg in failed:
        say(f"failed: {msg}")
    say(f"denoised {len(pairs) - len(failed)} of {len(pairs)} file(s)")
    return 1 if failed else 0
