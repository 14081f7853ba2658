"""What every model family tells about itself (:class:`Family`), shared by the registry and the tools.

A family is an ``nn.Module`` with a config dataclass (``self.config``, a :class:`DictConfig`) and:

- ``kind``: ``"wave"`` (waveform in, waveform out at ``sample_rate``) or ``"seed"`` (the seed
  112×112 mel image in and out; audio goes through :mod:`digit_denoise.features` at 48 kHz);
- ``sample_rate``: the audio rate the model works at;
- ``context``: samples of context each side of an output sample (wave), or the receptive field
  in pixels (seed);
- ``flops()``: FLOPs (2 × multiply-adds) per second of audio (wave) or per 112×112 image (seed);
- ``voice_dim``: personalised models take a speaker embedding of this size, ``forward(wave, voice)``;
  0 for blind ones;
- ``summary()``: one line on the network; ``describe()``: the self-check text.

Pure code: no file I/O, no printing.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

SEED_RATE = 48000  # the seed representation's audio rate (see features.SeedFeatureConfig)
SEED_SIZE = (112, 112)


def check_bounds(config, **bounds: tuple[int, int]) -> None:
    """``name=(value, hi)`` or ``name=(lo, hi)`` for a config field ``name``: a ValueError outside them.

    A model file from elsewhere names its config; these bounds keep a hostile one (``"channels": 20000``,
    200,000 dilations) from building anything huge before its weights are even compared."""
    for name, (a, b) in bounds.items():
        value, lo, hi = (getattr(config, name), a, b) if hasattr(config, name) else (a, 1, b)
        if not lo <= value <= hi:
            raise ValueError(f"{name} {value}: outside {lo}…{hi}")


class Family(nn.Module):
    kind = "wave"

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate) if self.kind == "wave" else SEED_RATE

    @property
    def context(self) -> int:
        """Waveform models: their ``context_samples``; seed models override it (pixels)."""
        return int(self.context_samples)

    @property
    def voice_dim(self) -> int:
        """Personalised models: the size of the speaker embedding ``forward(wave, voice)`` takes; else 0."""
        return int(getattr(self.config, "voice", 0) or 0)

    def flops(self) -> int:
        raise NotImplementedError

    def summary(self) -> str:
        raise NotImplementedError

    def adapt_state(self, state: dict) -> dict:
        """Weights saved by a related configuration, made to fit this one (fine-tuning); default: as they are."""
        return state

    def example_input(self) -> Tensor:
        g = torch.Generator().manual_seed(0)
        if self.kind == "wave":
            return torch.randn(2, self.sample_rate, generator=g)
        return torch.randn(2, self.config.in_channels, *SEED_SIZE, generator=g)

    def describe(self, name: str) -> str:
        """Parameters, context, FLOPs and a shape check of one forward pass."""
        x = self.example_input()
        was = self.training
        self.eval()
        with torch.no_grad():
            y = self(x)
        self.train(was)
        expect = x.shape if self.kind == "wave" else (x.shape[0], self.config.out_channels, *SEED_SIZE)
        params = sum(p.numel() for p in self.parameters() if p.requires_grad)
        if self.kind == "wave":
            ctx = f"±{self.context} samples ({1000 * self.context / self.sample_rate:.0f} ms)"
            flops = f"FLOPs per second of audio: {self.flops():,}"
        else:
            ctx = f"{self.context} px"
            flops = f"FLOPs/sample @{self.config.in_channels}x112x112: {self.flops():,}"
        return "\n".join([f"{name}: {type(self).__name__} ({self.summary()})",
                          f"  trainable parameters: {params:,}",
                          f"  receptive field: {ctx}",
                          f"  {flops}",
                          f"  forward {tuple(x.shape)} -> {tuple(y.shape)}: {'ok' if y.shape == expect else 'SHAPE MISMATCH'}"])


def conv2d_flops(model: nn.Module, input_shape=(1, *SEED_SIZE), extra_modules=()) -> int:
    """FLOPs (2 × multiply-adds) of all Conv2d / ConvTranspose2d for one ``Tensor[C, H, W]`` input.

    Counted with forward hooks on a copy of the model (running statistics of the original stay
    untouched), at the internally padded size actually computed. Conv2d: ``out_elems · (Cin/groups) ·
    kh · kw``; ConvTranspose2d: ``in_elems · (Cout/groups) · kh · kw``. Bias adds, BatchNorm,
    activations, pooling and padding are not counted. ``extra_modules``: unregistered modules of the
    copy to count as well (the seed bug's list-held blocks).
    """
    m = copy.deepcopy(model)
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        k = mod.weight.shape[2] * mod.weight.shape[3]
        if isinstance(mod, nn.ConvTranspose2d):
            macs += inp[0][0].numel() * (mod.out_channels // mod.groups) * k
        else:
            macs += out[0].numel() * (mod.in_channels // mod.groups) * k

    mods = list(m.modules()) + [x for h in getattr(m, "hidden_modules", lambda: [])() for x in h.modules()]
    handles = [mod.register_forward_hook(hook) for mod in mods if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        p = next(iter(m.parameters()), None)
        with torch.no_grad():
            m(torch.zeros(1, *input_shape, device=p.device if p is not None else "cpu",
                          dtype=p.dtype if p is not None else torch.float32))
    finally:
        for h in handles:
            h.remove()
    return 2 * macs
