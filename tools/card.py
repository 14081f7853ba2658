"""The model card of a shipped model, generated: ``python -m tools.card``.

::

    python -m tools.card --model default --method speech \\
        --reports reports/test17-peers reports/test17-speech -o docs/model-card.md

Everything with a number comes from the model's JSON (training settings, steps, wall time) and from
``compare`` reports (the test-set table, the real-time factor); the data sources are named from the
training manifests and noise folders the model's JSON records, with their licences.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from digit_denoise.audio import atomic_path
from digit_denoise.checkpoint import read_meta, resolve
from digit_denoise.data.manifest import manifest_paths
from digit_denoise.enhance import atten_lim_share
from digit_denoise.errors import UserError
from digit_denoise.models import build_model
from digit_denoise.training.config import PARSERS
from tools.results import load_summary
from tools.ship import PUBLISHED

# What each training source is and how to credit it (from the README of each folder in ../shared).
SOURCES = {
    "speech16k": ("speech16k: Speech Commands v0.02 test set (Pete Warden, CC BY 4.0), speechocean762 (Junbo Zhang "
                  "et al., Apache-2.0), Picovoice wake-word benchmark (Apache-2.0), DSPSpeech-20 (Zhongyu Chen and "
                  "students of Fudan University, MIT)"),
    "fsdd": "Free Spoken Digit Dataset (Zohar Jackson and contributors, CC BY-SA 4.0)",
    "synth": "synthetic spoken digits made with espeak-ng (GPL-3.0-or-later program; its output is not covered)",
    "noise16k": ("noise16k: Speech Commands background noise (Pete Warden, CC BY 4.0) and field recordings of "
                 "felixchenfy/Speech-Commands-Classification-by-LSTM-PyTorch (Feiyu Chen, MIT)"),
}
CONDITIONS_AT = "-8dB"


def _as_text(training: dict) -> dict:
    """The training section with every range and list as the flags write it (``-12:10``, ``white,babble``),
    whichever form the JSON holds (an older model saved text, a newer one lists)."""
    out = dict(training)
    for k, v in training.items():
        if k not in PARSERS or v in (None, "", []):
            continue
        try:
            typed = PARSERS[k](v)
        except ValueError:
            continue
        if k == "snr_focus" and typed is not None:
            out[k] = f"{typed[0]:g}:{typed[1]:g}@{typed[2]:g}"
        elif isinstance(typed, tuple):
            out[k] = ",".join(typed) if typed and isinstance(typed[0], str) else ":".join(f"{x:g}" for x in typed)
    return out


def _noise_words(noise: str) -> str:
    """The training noise list in words: "coloured noise, synthetic textures, babble and real recordings"."""
    kinds = [k.strip() for k in noise.split(",") if k.strip()]
    words = []
    for test, word in ((lambda k: k in ("white", "pink", "brown", "colored"), "coloured noise"),
                       (lambda k: k == "texture", "synthetic noise textures"), (lambda k: k == "babble", "babble"),
                       (lambda k: "/" in k or k.endswith(":seen"), "real noise recordings (the `:seen` files)")):
        if any(test(k) for k in kinds):
            words.append(word)
    if not words:
        return "unknown noise"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]

def _f(v, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "—"


def _mean(s: dict, method: str, corpus: str | None, cond: str, metric: str):
    r = s["results"].get(method, {}).get(cond) if corpus is None else \
        s.get("results_by_corpus", {}).get(method, {}).get(corpus, {}).get(cond)
    return ((r or {}).get(metric) or {}).get("mean")


def _sources(training: dict) -> list[str]:
    names = [Path(m).stem.rstrip("0123456789") or Path(m).stem  # synth1…synth4: one source, `data synth`
             for m in manifest_paths(training.get("manifest") or "")]
    names += [Path(k.split(":")[0]).name for k in str(training.get("noise") or "").split(",") if "/" in k]
    found = [SOURCES[n] for n in dict.fromkeys(names) if n in SOURCES]
    return found + [f"`{n}` (no attribution on record)" for n in dict.fromkeys(names) if n not in SOURCES]


def voice_section(s: dict, method: str, blind: str) -> list[str]:
    """A personalised model: what a profile is and does, and each personalised condition for the blind
    model, this one with the speaker's own profile, and with another speaker's (``METHOD@other``)."""
    cols = [(blind, f"blind `{blind}`"), (method, "own profile"), (f"{method}@other", "another speaker's profile")]
    cols = [(n, label) for n, label in cols if n in s["results"]]
    out = ["", "## Voice profiles", "",
           "The model takes a speaker embedding (a voice profile: `digit-denoise voice enroll`, 256 values from "
           "Resemblyzer's pretrained GE2E encoder, int8) beside the audio and keeps that voice: babble and other "
           "talkers are removed as noise. A profile of ~2 s of speech or more, from the microphone you will use, "
           "is computed once; the model then costs what a blind one of its size does. With another person's "
           "profile it keeps that person's voice and suppresses the speaker's (last column).", "",
           f"On the test set each clip's profile is made of {s.get('enroll', {}).get('clips_per_profile', 3)} other "
           "clips of its speaker (never the clip itself). SI-SDR dB:", "",
           "| condition | noisy | " + " | ".join(label for _, label in cols) + " |",
           "|---|---:|" + "---:|" * len(cols)]
    names = [c["name"] for c in s["conditions"]]
    for c in names:
        out.append(f"| {c} | {_f(_mean(s, 'noisy', None, c, 'si_sdr'), '.2f')} | "
                   + " | ".join(_f(_mean(s, n, None, c, "si_sdr"), ".2f") for n, _ in cols) + " |")
    out += ["", "Per corpus, the mean over those conditions and the number in which the own profile beats the "
            "blind model (a corpus whose voices the encoder cannot tell apart, e.g. 8 kHz ones, shows here):", "",
            "| corpus | noisy | " + " | ".join(label for _, label in cols) + f" | own > blind (of {len(names)}) |",
            "|---|---:|" + "---:|" * (len(cols) + 1)]
    for corpus in s.get("corpora", []):
        got = {n: [_mean(s, n, corpus, c, "si_sdr") for c in names] for n in ("noisy", blind, method, *dict(cols))}
        avg = {n: sum(v) / len(v) if v and None not in v else None for n, v in got.items()}
        wins = sum(o > b for o, b in zip(got[method], got[blind]) if o is not None and b is not None)
        out.append(f"| {corpus} | {_f(avg['noisy'], '.2f')} | " + " | ".join(_f(avg[n], ".2f") for n, _ in cols)
                   + f" | {wins} |")
    return out


def build(model: str, method: str, reports: list[Path], title: str = "the default model of digit-denoise",
          blind: str = "default") -> str:
    weights, js = resolve(model)
    meta = read_meta(js)
    net = build_model(meta["model"], meta.get("config") or {})
    t = _as_text(meta.get("training") or {})
    guarded = f"`{t['teacher']}`" if t.get("teacher") else "its starting weights"  # what no-regress compares with
    # compare reports only: an `evaluate` summary (the seed rows, kept beside them) has no test-set table
    summaries = [s for s in map(load_summary, reports) if isinstance(s.get("results"), dict)]
    ours = next((s for s in summaries if any(m["name"] == method for m in s["methods"])), None)
    if ours is None:
        raise UserError(f"--method {method!r}: no report in {', '.join(map(str, reports))} holds it")
    lines = [f"# Model card: {title}", "",
             "Generated by `python -m tools.card` from the model file and `compare` reports; do not edit.", "",
             "## The model", "",
             f"- **{meta['model']}**: {net.summary()}; {sum(p.numel() for p in net.parameters()):,} parameters, "
             f"{net.flops() / 1e9:.2f} GFLOP per second of audio, ±{1000 * net.context / net.sample_rate:.0f} ms of "
             f"context, {net.sample_rate} Hz (any input rate is resampled in and out).",
             f"- Real-time factor on one CPU thread (test set): {_f(ours['rtf'].get(method), '.4f')} "
             f"(CPU seconds per second of audio).",
             f"- Trained with preset `{t.get('preset')}`: loss `{t.get('loss')}`, {meta.get('step')} steps of batch "
             f"{t.get('batch_size')} × {t.get('segment')} s"
             + (f" (the schedule planned {t['steps']} steps)" if t.get("steps") else "")
             + f", Adam lr {t.get('lr')}, EMA {t.get('ema') or 'off'}"
             + (f", fine-tuned from `{Path(str(t['init'])).name}`" if t.get("init") else "")
             + (f", no-harm guard × {t['no_harm']}" if t.get("no_harm") else "")
             + (f", no-regress guard × {t['no_regress']} against {guarded}" if t.get("no_regress") else "")
             + (f"; {t['elapsed_s'] / 3600:.1f} h of training on one CPU thread ({t.get('samples_per_s')} samples/s)"
                if t.get("elapsed_s") else "")
             + f". Weights stored as {meta.get('weights_dtype', 'float32')}.",
             *([f"- Attenuation limit {meta['atten_lim_db']:g} dB: the output is (1 − g)·model + g·input with g = "
                f"{atten_lim_share(meta['atten_lim_db']):.3f}, so nothing is attenuated by more than {meta['atten_lim_db']:g}"
                " dB (the numbers below include it); `--atten-lim none` lifts it."]
              if meta.get("atten_lim_db") is not None else []),
             f"- Training noise: `{t.get('noise')}` at SNR `{t.get('snr')}` dB"
             + (f" (`{t['snr_focus']}` of them from the focus range)" if t.get("snr_focus") else "")
             + (f"; babble of `{t['babble_talkers']}` talkers" if t.get("babble_talkers") else "")
             + (f"; speech augmented with speed `{t['speed']}`, EQ ±{t.get('eq_db')} dB, spectral tilt, band limits "
                "and levels" if t.get("speed") else "; speech augmented (tilt, speed, band limits, levels)") + ".", "",
             "## Training data and attribution", ""]
    recorded = [meta[k] for k in ("trained_on", "data_licence") if meta.get(k)]
    lines += [f"- {s}" for s in _sources(t) + recorded] or ["- (not recorded)"]
    lines += ["", "Test speakers, validation speakers and the held-out (`:unseen`) noise files were never used for "
              "training.", "", "## Test set (unseen speakers), input at −8 dB", ""]
    conds = [c["name"] for c in ours["conditions"] if c["name"].endswith(CONDITIONS_AT)]
    rivals = [(s, m["name"]) for s in summaries for m in s["methods"]
              if m["name"] not in (method,) and not m.get("is_oracle")]
    corpora = [None, *list(ours.get("corpora") or {})]
    lines += ["SI-SDR dB / PESQ-WB / STOI; `best other` is the best non-oracle method of the reports by SI-SDR.", "",
              "| corpus | condition | noisy | best other | this model |", "|---|---|---|---|---|"]
    for corpus in corpora:
        for cond in conds:
            def cell(s, name):
                return " / ".join(_f(_mean(s, name, corpus, cond, k), spec)
                                  for k, spec in (("si_sdr", ".2f"), ("pesq", ".2f"), ("stoi", ".3f")))
            others = [(v, s, n) for s, n in rivals if n != "noisy"
                      for v in [_mean(s, n, corpus, cond, "si_sdr")] if v is not None]
            best = max(others, key=lambda x: x[0]) if others else None
            noisy_s = next((s for s, n in rivals if n == "noisy"), None)
            lines.append(f"| {corpus or 'all'} | {cond} | {cell(noisy_s, 'noisy') if noisy_s else '—'} | "
                         f"{(best[2] + ': ' + cell(best[1], best[2])) if best else '—'} | {cell(ours, method)} |")
    if (meta.get("config") or {}).get("voice"):
        lines += voice_section(ours, method, blind)
    lines += ["", "All conditions, SNRs and corpora: [results.md](results.md).", "", "## Limits", "",
              "- Languages: trained on English (and some Mandarin words); other languages are untested here.",
              f"- Noise: trained on {_noise_words(str(t.get('noise') or ''))} at `{t.get('snr')}` dB; the 3 "
              "held-out real recordings measure unseen noise. Babble of unseen talkers is speech: the hardest "
              "case (see the table).",
              "- Made for short recordings (words, digits, sentences); long files are processed in 30-s windows "
              "with the model's context on each side, " + (
                  "each window normalised on its own: within 0.1 dB of whole-file processing (tested on 75 s of "
                  "speech in white noise)." if (meta.get("config") or {}).get("norm") == "utterance"
                  else "which equals whole-file processing."),
              "- Not a speech-recognition front end: it was not tuned for any recogniser.", ""]
    notices = [meta["licence"]] if meta.get("licence") else []
    init = Path(str(t.get("init") or "")).name
    if init in PUBLISHED:  # fine-tuned from the authors' published weights: their MIT notice applies
        licence = PUBLISHED[init][1]["licence"].split(":")[0]  # "MIT, Copyright (c) …" (ship's one record of it)
        notices.append(f"Initialised from the published {init} weights: {licence}, `LICENSE-{init}` (shipped in "
                       "`src/digit_denoise/pretrained/`); the MIT notice applies to these weights too.")
    if notices:
        lines += ["## Licence of derived weights", "", *[f"- {n}" for n in notices], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.card", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="model file, run folder or packaged name (default: default)")
    ap.add_argument("--method", required=True, help="the model's method name in the reports")
    ap.add_argument("--reports", nargs="+", required=True,
                    help="compare report folders, or their kept summaries (docs/reports/NAME.json)")
    ap.add_argument("-o", "--out", default="docs/model-card.md", help="markdown file to write")
    ap.add_argument("--title", default="the default model of digit-denoise", help="what the card is of")
    ap.add_argument("--blind", default="default",
                    help="a personalised model's card: the blind model it is compared with (its name in the reports)")
    a = ap.parse_args(argv)
    try:
        text = build(a.model, a.method, [Path(r) for r in a.reports], a.title, a.blind)
    except UserError as e:
        print(f"error: {e}")
        return 2
    with atomic_path(Path(a.out)) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
