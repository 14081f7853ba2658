"""``digit-denoise export``: a model file → one ONNX file, checked against PyTorch.

What is exported is the network itself, with a dynamic batch axis:

- waveform models (MaskNet): ``noisy: float32[batch, samples]`` → ``clean: float32[batch, samples]``
  at the model's sample rate (its STFT/iSTFT are convolutions, so the whole model exports; any
  ``samples`` works). Resampling and chunking (see :mod:`enhance`) stay with the caller.
- seed models (U-Net): ``image: float32[batch, 1, 112, 112]`` → ``image: float32[batch, 1, 112, 112]``,
  the [0, 1] seed representation; the mel/dB/resize steps and their inverses stay with the caller.

A model file's own attenuation limit (``"atten_lim_db"``, see :class:`.enhance.Denoiser`) is part of a
waveform model's graph (``(1 − g)·net(noisy) + g·noisy``, at the model's rate; the metadata then says
``"atten_lim_in_graph": true``); a seed model's is left to the caller (it is in the metadata).

The model's JSON (name, config, features, sample rate) is stored in the ONNX metadata under
``digit_denoise`` (plus ``kind`` and ``sample_rate``). After writing, the file is run with
onnxruntime (when installed) and compared with PyTorch on random inputs of two sizes.
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .audio import atomic_path
from .checkpoint import load_model
from .enhance import atten_lim_share
from .errors import UserError
from .pretrained import packaged_path

OPSET = 17
TOLERANCE = 1e-4  # max |onnxruntime - torch| accepted (outputs are ~±1 audio or [0, 1] images)


def _load(model_path: str | None) -> tuple[torch.nn.Module, dict]:
    if model_path is None:
        model_path = packaged_path("default")
        if model_path is None:
            raise UserError("no default model shipped in this install; pass MODEL (a run folder or .safetensors file)")
    return load_model(model_path)


class Limited(torch.nn.Module):
    """A waveform network with its attenuation limit: ``(1 − g)·net(noisy, …) + g·noisy``."""

    def __init__(self, net: torch.nn.Module, share: float):
        super().__init__()
        self.net, self.share = net, float(share)

    def forward(self, noisy: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.share) * self.net(noisy, *rest) + self.share * noisy


def example_inputs(meta: dict, model: torch.nn.Module, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """Two random inputs of different sizes for the export and the check (a personalised model's with a
    random unit-norm voice embedding each)."""
    g = torch.Generator().manual_seed(seed)
    if (meta.get("features") or {}).get("kind") == "wave":
        sr = int(meta["sample_rate"])
        waves = [0.1 * torch.randn(1, sr, generator=g), 0.1 * torch.randn(3, sr // 3 + 17, generator=g)]
        dim = getattr(model, "voice_dim", 0)
        if not dim:
            return [(w,) for w in waves]
        return [(w, torch.nn.functional.normalize(torch.randn(w.shape[0], dim, generator=g).abs(), dim=1))
                for w in waves]
    size = tuple((meta.get("features") or {}).get("size") or (112, 112))
    cin = model.config.in_channels
    return [(torch.rand(1, cin, *size, generator=g),), (torch.rand(3, cin, *size, generator=g),)]


def export_onnx(model_path: str | None, out: str | Path, *, opset: int | None = None, overwrite: bool = False,
                check: bool = True) -> dict:
    """Write ``out`` (atomically) and return ``{"path", "kind", "input", "output", "max_abs_diff"}``.

    ``max_abs_diff`` is None when onnxruntime is not installed (or ``check=False``). A difference
    above :data:`TOLERANCE` raises :class:`UserError` and leaves no file behind.
    """
    opset = opset or OPSET
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"-o {out}: give a file name ending in .onnx")
    model, meta = _load(model_path)
    if meta.get("model") == "seed-buggy":
        raise UserError("seed-buggy is the published bug, kept only for comparison (its hidden layers are not "
                        "even saved); export a seed or masknet model instead")
    model = model.cpu().eval()
    wave = (meta.get("features") or {}).get("kind") == "wave"

    names = ("noisy", "clean") if wave else ("image", "denoised")
    axes = {0: "batch", 1: "samples"} if wave else {0: "batch"}
    x0, x1 = example_inputs(meta, model)  # from the network itself (a voice model's embedding size)
    share = atten_lim_share(meta.get("atten_lim_db"))
    if wave and share:
        model = Limited(model, share).eval()
        meta = {**meta, "atten_lim_in_graph": True}  # a consumer must not apply it again
    inputs = [names[0], "voice"][:len(x0)]  # a personalised model: the voice embedding [batch, E] too
    kwargs = dict(input_names=inputs, output_names=[names[1]], opset_version=opset,
                  dynamic_axes={names[0]: axes, names[1]: axes, **({"voice": {0: "batch"}} if len(x0) > 1 else {})})
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: no onnxscript needed, dynamic axes as above
    with atomic_path(out, overwrite=overwrite) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, x0, str(tmp), **kwargs)
            except ModuleNotFoundError as e:
                raise UserError(f"ONNX export needs the '{e.name}' package: pip install 'digit-denoise[onnx]'") \
                    from None
        _add_metadata(tmp, meta)
        diff = _check(tmp, model, [x0, x1], inputs) if check else None
        if diff is not None and diff > TOLERANCE:
            raise UserError(f"{out}: onnxruntime output differs from PyTorch by {diff:.2g} (> {TOLERANCE}); "
                            f"not written; try another --opset")
    shape = "[batch, samples]" if wave else f"[batch, {x0[0].shape[1]}, {x0[0].shape[2]}, {x0[0].shape[3]}]"
    given = f"{names[0]} {shape}" + (f" + voice [batch, {x0[1].shape[1]}]" if len(x0) > 1 else "")
    return {"path": str(out), "kind": "wave" if wave else "seed", "model": meta.get("model"),
            "sample_rate": meta.get("sample_rate"), "input": given, "output": f"{names[1]} {shape}",
            "max_abs_diff": diff}


def _add_metadata(path: Path, meta: dict) -> None:
    """Store the model's JSON in the ONNX file's metadata (skipped if the onnx package is missing)."""
    try:
        import onnx
    except ImportError:
        return
    m = onnx.load(str(path))
    for key, value in (("digit_denoise", json.dumps(meta, sort_keys=True)),
                       ("kind", str((meta.get("features") or {}).get("kind"))),
                       ("sample_rate", str(meta.get("sample_rate")))):
        prop = m.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(m, str(path))


def _check(path: Path, model: torch.nn.Module, inputs: list[tuple[torch.Tensor, ...]], names: list[str]) -> float | None:
    """Max |onnxruntime − torch| over ``inputs``; None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diff = 0.0
    for x in inputs:
        with torch.no_grad():
            want = model(*x).numpy()
        got = sess.run(None, {n: t.numpy() for n, t in zip(names, x)})[0]
        if got.shape != want.shape:
            return float("inf")
        diff = max(diff, float(np.abs(got - want).max()))
    return diff
