"""Package Resemblyzer's pretrained speaker encoder (Apache-2.0) as the package's voice encoder, int8.

    pip download --no-deps resemblyzer==0.1.4 && unzip Resemblyzer-0.1.4-py3-none-any.whl
    python -m tools.import_voice_encoder resemblyzer/pretrained.pt Resemblyzer-0.1.4.dist-info/LICENSE

The checkpoint is read with ``torch.load(weights_only=True)``; its model weights (1.42 M) are stored as int8
with one float32 scale per output row (1.5 MB instead of 5.7 MB in float32: the repository keeps files under
2 MiB), biases in float32, as ``src/digit_denoise/pretrained/voice-encoder.safetensors`` beside the licence.
Embeddings from the int8 weights agree with the float ones to a cosine similarity above 0.999 (printed).
"""

from __future__ import annotations

import argparse
import glob
import shutil

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import save_file

from digit_denoise.audio import resample
from digit_denoise.checkpoint import dequantize, quantize
from digit_denoise.models.speaker import SpeakerEncoder
from digit_denoise.pretrained import FOLDER
from digit_denoise.voice.encoder import ENCODER_FILE


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.import_voice_encoder", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="resemblyzer/pretrained.pt")
    ap.add_argument("licence", help="the wheel's LICENSE file")
    a = ap.parse_args(argv)
    state = torch.load(a.checkpoint, map_location="cpu", weights_only=True)["model_state"]
    state = {k: v for k, v in state.items() if not k.startswith("similarity_")}  # GE2E's training-only scalars
    packed = quantize(state)
    save_file(packed, str(ENCODER_FILE), metadata={"format": "digit-denoise-voice-encoder",
                                                  "source": "Resemblyzer 0.1.4 pretrained.pt (Apache-2.0)"})
    shutil.copy(a.licence, FOLDER / "LICENSE-resemblyzer")
    ref, q = SpeakerEncoder().eval(), SpeakerEncoder().eval()
    ref.load_state_dict(state)
    q.load_state_dict(dequantize(packed))
    sims = []
    for f in sorted(glob.glob("../shared/data/fsdd/recordings/*_theo_1*.wav"))[:20]:
        x, sr = sf.read(f, dtype="float32")
        w = torch.from_numpy(resample(x, sr, 16000))
        sims.append(float(ref.embed(w) @ q.embed(w)))
    print(f"wrote {ENCODER_FILE} ({ENCODER_FILE.stat().st_size / 1e6:.2f} MB); int8 vs float32 cosine on "
          f"{len(sims)} clips: min {min(sims):.5f}, mean {np.mean(sims):.5f}" if sims else f"wrote {ENCODER_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
