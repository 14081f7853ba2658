"""The ``digit-denoise`` command: a thin argparse layer over the stage functions.

Each sub-command parses its options and calls one function. A :class:`UserError` raised anywhere
is printed once as ``digit-denoise: error: <message>`` with exit status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from . import pretrained
from .errors import UserError
from .runtime import server_malloc, tune_malloc
from .version import __version__

FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def _add(sub, name: str, help: str, func) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, formatter_class=FORMATTER)
    p.set_defaults(func=func)
    return p


# --------------------------------------------------------------------------------- data
def cmd_prepare(a) -> int:
    from .data.manifest import prepare, summary_table
    from .data.noise import NoiseConfig

    noise = NoiseConfig.parse(a.noise, a.snr, a.babble_talkers)
    rows = prepare(a.corpus, a.out, layout=a.layout, pattern=a.pattern, test_speakers=a.test_speakers,
                   val_fraction=a.val_fraction, seed=a.seed, noise=noise, strict=a.strict, overwrite=a.overwrite)
    print(summary_table(rows))
    return 0


def cmd_mix(a) -> int:
    from .data.manifest import load_manifest, select
    from .data.pairs import mix_to_disk

    rows = load_manifest(a.manifest)
    mix_to_disk(select(rows, a.split, a.limit), a.out, sr=a.sample_rate, overwrite=a.overwrite, all_rows=rows)
    return 0


def cmd_summary(a) -> int:
    from .data.manifest import load_manifest, summary_table

    print(summary_table(load_manifest(a.manifest)))
    return 0


def cmd_synth(a) -> int:
    from .data.synth import synthesize_corpus

    s = synthesize_corpus(a.out, speakers=a.speakers, takes=a.takes, seed=a.seed, overwrite=a.overwrite)
    print(f"synthesised {s['files']} clips of {s['speakers']} speakers "
          f"({s['total_seconds'] / 60:.1f} min at {s['sample_rate']} Hz) into {s['out_dir']}")
    return 0


def cmd_download(a) -> int:
    from .data.download import download

    path = download(a.dataset, a.to, url=a.url, sha256=a.sha256, overwrite=a.overwrite)
    print(f"{a.dataset} is in {path}")
    return 0


_NEGATIVE_VALUE_OPTIONS = ("--snr", "--snr-focus")


def _glue_negative_values(argv: list[str]) -> list[str]:
    """``--snr -10:10`` → ``--snr=-10:10``: argparse takes only plain negative numbers (-8) as separate
    values, so the documented forms -8,-5,0 / -10:10 / -10..10 would fail with 'expected one argument'."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in _NEGATIVE_VALUE_OPTIONS and i + 1 < len(argv) and re.match(r"^-[\d.]", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def add_data(sub) -> None:
    data = sub.add_parser("data", help="prepare corpora: manifests, splits, noise, synthetic digits, downloads",
                          formatter_class=FORMATTER)
    dsub = data.add_subparsers(dest="data_cmd", required=True, metavar="{prepare,mix,summary,synth,download}")

    p = _add(dsub, "prepare", "scan a corpus and write a manifest CSV with a speaker-disjoint split", cmd_prepare)
    p.add_argument("--corpus", required=True, help="folder of recordings")
    p.add_argument("--layout", default="auto", choices=["audiomnist", "pairs", "fsdd", "folder", "auto"],
                   help="corpus layout: audiomnist NN/D_NN_I.wav; pairs = audiomnist + D_NN_I_noisy.wav; "
                        "fsdd recordings/D_name_I.wav; folder = any tree with --pattern; auto detects")
    p.add_argument("--pattern", default=None,
                   help="file-name pattern for --layout folder, e.g. '{digit}_{speaker}_{take}' ({any} or * match anything)")
    p.add_argument("--out", default="manifest.csv", help="manifest CSV to write")
    p.add_argument("--test-speakers", default="5",
                   help="number of whole speakers held out for test (seeded choice), or a list like 28,56")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of each speaker×digit group of the non-test speakers put in validation")
    p.add_argument("--noise", default="white",
                   help="noise when the corpus has no noisy files: white, pink, brown, babble, a folder of noise "
                        "files, or a comma list drawn per clip")
    p.add_argument("--snr", default="-8", help="SNR in dB: -8, a list -8,-5,0 (drawn per clip) or a range -10:10")
    p.add_argument("--babble-talkers", type=int, default=5, help="utterances summed into babble noise")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of every clip's noise")
    p.add_argument("--strict", action="store_true", help="fail on unreadable files instead of leaving them out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing, different manifest")

    p = _add(dsub, "mix", "write the noisy version of each manifest row to disk (+ a manifest pointing at them)",
             cmd_mix)
    p.add_argument("--manifest", required=True, help="manifest CSV from 'data prepare'")
    p.add_argument("--out", required=True, help="folder for <id>_noisy.wav files and manifest.csv")
    p.add_argument("--split", default="all", choices=["all", "train", "val", "test"], help="rows to mix")
    p.add_argument("--limit", type=int, default=None, help="mix only this many rows (spread over the split)")
    p.add_argument("--sample-rate", type=int, default=None, help="output sample rate in Hz (unset: each file's own rate)")
    p.add_argument("--overwrite", action="store_true", help="replace existing noisy files")

    p = _add(dsub, "summary", "print a manifest's split/noise summary table", cmd_summary)
    p.add_argument("manifest", help="manifest CSV")

    p = _add(dsub, "synth", "synthesise an AudioMNIST-layout corpus of spoken digits with espeak-ng "
             "(optional extra [synth], GPL-3.0-or-later)", cmd_synth)
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument("--speakers", type=int, default=30, help="number of pseudo-speakers")
    p.add_argument("--takes", type=int, default=10, help="takes of each digit per speaker")
    p.add_argument("--seed", type=int, default=0, help="seed of the speakers' voices")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty folder")

    p = _add(dsub, "download", "download and unpack a public corpus (verified, atomic)", cmd_download)
    p.add_argument("dataset", choices=["audiomnist", "fsdd"], help="which corpus")
    p.add_argument("--to", required=True, help="destination folder (created; must not exist unless --overwrite)")
    p.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    p.add_argument("--sha256", default=None, help="expected SHA-256 of the archive")
    p.add_argument("--overwrite", action="store_true", help="replace an existing destination")


# ------------------------------------------------------------------------- train / eval
def cmd_train(a) -> int:
    from .training.flags import config_from_args
    from .training.loop import train

    s = train(config_from_args(a), restart=a.restart)
    print(f"run: {s['run']}  steps: {s['steps']}  best val loss: {s['best_val_loss']:.5f}  "
          f"train time: {s['elapsed_s']:.0f} s  ({s['samples_per_s']} samples/s)")
    return 0


def add_train(sub) -> None:
    from .training.flags import add_arguments

    p = _add(sub, "train", "train a denoiser on a manifest (resumes when rerun; --restart starts over)", cmd_train)
    p.formatter_class = argparse.HelpFormatter  # each flag's help names its default itself
    add_arguments(p)
    p.add_argument("--restart", action="store_true", help="delete the run folder's state and start over")


def cmd_evaluate(a) -> int:
    from .evaluate import evaluate

    s = evaluate(a.run, a.split, manifest=a.manifest, buggy=a.buggy, limit=a.limit, n_examples=a.examples,
                 phase=a.phase, gl_iters=a.gl_iters)
    print(f"{s['split']} split, {s['n_clips']} clips, model {s['model']} (step {s['step']})")
    print(s["table"])
    print(f"report: {s['folder']}")
    return 0


def add_evaluate(sub) -> None:
    p = _add(sub, "evaluate", "MSE of a run on the seed representation beside trivial baselines, with figures",
             cmd_evaluate)
    p.add_argument("run", help="run folder from 'digit-denoise train'")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="manifest split to evaluate")
    p.add_argument("--manifest", default=None, help="manifest to use (default: the run's)")
    p.add_argument("--buggy", default=None, help="a run folder of the seed-buggy preset to add to the table")
    p.add_argument("--limit", type=int, default=None, help="evaluate only N clips (default: all)")
    p.add_argument("--examples", type=int, default=3, help="clips to render as figures and WAVs")
    p.add_argument("--phase", default="noisy", choices=["noisy", "griffinlim"], help="phase for the example audio")
    p.add_argument("--gl-iters", type=int, default=32, help="Griffin-Lim iterations")


def cmd_denoise(a) -> int:
    from .denoise import denoise_paths
    from .enhance import parse_atten_lim

    if a.threads < 0:
        raise UserError(f"--threads {a.threads}: must not be negative")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    return denoise_paths(a.inputs, a.output, model=a.model, phase=a.phase, gl_iters=a.gl_iters,
                         overwrite=a.overwrite, fmt=a.format, dry_run=a.dry_run, recursive=a.recursive, voice=a.voice,
                         atten_lim_db=parse_atten_lim(a.atten_lim))


def add_denoise(sub) -> None:
    from .audio import FORMATS

    p = _add(sub, "denoise", "denoise recordings: files or folders (recursive, tree kept), any format libsndfile "
             "reads, any rate, length and channel count; exit 0 all done, 1 some files failed, 2 usage error",
             cmd_denoise)
    p.add_argument("inputs", nargs="+", help="input audio files and/or folders")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input file) or folder (several inputs, a folder, or a path ending in /)")
    p.add_argument("--model", default=None,
                   help="a shipped model by name or a run folder, checkpoint folder or .safetensors file (default: "
                        "the shipped `default`). Shipped: " + pretrained.help_text().replace("%", "%%"))
    p.add_argument("--format", default=None, choices=list(FORMATS),
                   help="output format (default %(default)s: the input's format and sample type; FLAC where that "
                        "cannot be written)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never written)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be done")
    p.add_argument("--no-recursive", dest="recursive", action="store_false",
                   help="take only the files directly inside input folders (recursive: %(default)s)")
    p.add_argument("--phase", default="noisy", choices=["noisy", "griffinlim"],
                   help="seed models: phase of the output, the noisy input's (better) or Griffin-Lim's (as the seed)")
    p.add_argument("--gl-iters", type=int, default=32, help="seed models: Griffin-Lim iterations")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")
    p.add_argument("--atten-lim", default=None, metavar="DB",
                   help="attenuate nothing by more than DB dB (the input is mixed back in: less noise removed, "
                        "fewer artefacts; 0 leaves the input unchanged; 'none': no limit; default: the model "
                        "file's own: 25 dB for the shipped `default`, none for the others)")
    p.add_argument("--voice", default=None, metavar="PROFILE",
                   help="keep only this voice (babble and other talkers are removed): a profile from 'voice enroll' "
                        "or recordings of the voice (a.wav,b.wav); uses a personalised model (default: `voice`)")


def cmd_enroll(a) -> int:
    from .voice.profile import enroll_files

    if a.output.exists() and not a.overwrite:
        raise UserError(f"{a.output}: already exists; pass --overwrite or choose another -o")
    profile = enroll_files(a.recordings)
    for w in profile.warnings:
        print(f"digit-denoise: warning: {w}", file=sys.stderr)
    profile.save(a.output, overwrite=a.overwrite)
    print(f"voice profile of {profile.recordings} recording(s), {profile.speech_seconds:.1f} s of speech, "
          f"consistency {profile.consistency:.2f} → {a.output}")
    return 0


def add_voice(sub) -> None:
    voice = sub.add_parser("voice", help="voice profiles for personalised denoising (keep one voice, remove the rest)",
                           formatter_class=FORMATTER)
    vsub = voice.add_subparsers(dest="voice_cmd", required=True, metavar="{enroll}")
    p = _add(vsub, "enroll", "make a voice profile from a few seconds of one voice (any format, rate, channels; "
             "~2 s of speech or more in all, under 1 s is refused)", cmd_enroll)
    p.add_argument("recordings", nargs="+", help="recordings of the voice (a few spoken words each)")
    p.add_argument("-o", "--output", required=True, type=Path, help="the profile to write, e.g. me.voice (JSON)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing profile")


def cmd_export(a) -> int:
    from .export import export_onnx

    s = export_onnx(a.model, a.output, opset=a.opset, overwrite=a.overwrite)
    check = ("onnxruntime not installed: not checked" if s["max_abs_diff"] is None
             else f"onnxruntime matches PyTorch (max |diff| {s['max_abs_diff']:.1e})")
    rate = f" at {s['sample_rate']} Hz" if s["kind"] == "wave" else ""
    print(f"wrote {s['path']}: {s['model']}, {s['input']} -> {s['output']}{rate}; {check}")
    return 0


def add_export(sub) -> None:
    p = _add(sub, "export", "export a model to ONNX (checked against PyTorch with onnxruntime when installed)",
             cmd_export)
    p.add_argument("model", nargs="?", default=None,
                   help="a shipped model by name (" + ", ".join(pretrained.names()) + ") or a run folder, checkpoint "
                        "folder or .safetensors file (default: the shipped `default`)")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: 17, the tested one)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")


def _compare_command(a) -> str:
    """The command line as parsed (every option spelled out, defaults included)."""
    parts = ["digit-denoise", "compare"]
    for opt in ("manifest", "out", "split", "methods", "noise", "snr", "seed", "limit", "workers", "examples",
                "babble_talkers", "enroll"):
        v = getattr(a, opt)
        if v is not None:
            parts.append(f"--{opt.replace('_', '-')}={v}")
    if a.overwrite:
        parts.append("--overwrite")
    return " ".join(shlex.quote(p) for p in parts)


def cmd_compare(a) -> int:
    from .compare.core import compare

    s = compare(a.manifest, a.out, split=a.split, methods=a.methods, noise=a.noise, snr=a.snr, seed=a.seed,
                limit=a.limit, overwrite=a.overwrite, workers=a.workers, examples=a.examples,
                babble_talkers=a.babble_talkers, enroll=a.enroll,
                command=_compare_command(a))
    print(f"{s['split']} split, {s['n_clips']} clips, {len(s['conditions'])} condition(s), "
          f"{len(s['methods'])} method(s)")
    print(s["table"])
    print(f"report: {s['folder']}/report.html")
    return 0


def add_compare(sub) -> None:
    from .compare.defaults import DEFAULT_METHODS, DEFAULT_NOISE, DEFAULT_SNR

    p = _add(sub, "compare", "compare denoisers (peers, oracles, trained runs) on identical noisy inputs over a "
             "noise × SNR grid; writes per_clip.csv, summary.json and report.html", cmd_compare)
    p.add_argument("--manifest", required=True,
                   help="manifest CSV from 'data prepare', or a comma list (a.csv,b.csv): results per corpus too")
    p.add_argument("--out", required=True, help="report folder (must be empty unless --overwrite)")
    p.add_argument("--split", default="test", choices=["all", "train", "val", "test"], help="manifest split")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma list of peer names (noisy, noisereduce-stationary, noisereduce-nonstationary, wiener, "
                        "rnnoise, deepfilternet3, oracle-irm, seed-ceiling) and/or shipped models / run folders / "
                        ".safetensors files; MODEL@other: a personalised model given another speaker's profile")
    p.add_argument("--noise", default=DEFAULT_NOISE,
                   help="noise kinds of the grid: white, pink, brown, babble, talker (one other voice) or folders of "
                        "noise files")
    p.add_argument("--snr", default=DEFAULT_SNR, help="input SNRs of the grid in dB, e.g. -8,-5,0,5")
    p.add_argument("--seed", type=int, default=0, help="seed of every condition's noise")
    p.add_argument("--limit", type=int, default=None, help="use only N clips of each corpus (spread over the split)")
    p.add_argument("--workers", type=int, default=None, help="metric worker processes (default: min(CPUs, 8))")
    p.add_argument("--examples", type=int, default=3, help="clips rendered as spectrograms and audio in the report")
    p.add_argument("--babble-talkers", type=int, default=5, help="utterances summed into babble noise")
    p.add_argument("--enroll", type=int, default=3,
                   help="personalised models: other clips of the speaker in each voice profile (a method NAME@other "
                        "is given another speaker's profile instead)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing non-empty folder")


def cmd_serve(a) -> int:
    from .serve import serve

    serve(a.host, a.port, a.model, workers=a.workers, queue=a.queue, max_upload_mb=a.max_upload_mb,
          max_seconds=a.max_seconds, allowed_hosts=a.allowed_host or [])
    return 0


def add_serve(sub) -> None:
    p = _add(sub, "serve", "a local web page and HTTP API: upload or record audio, hear and see it denoised, "
             "try noises and SNRs on sample digits (needs the [serve] extra)", cmd_serve)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--model", action="append", default=None,
                   help="a run folder or model file to offer beside the shipped models (" + ", ".join(pretrained.names())
                        + "; repeatable)")
    p.add_argument("--workers", type=int, default=2, help="requests denoised at once")
    p.add_argument("--queue", type=int, default=8, help="requests waiting for a worker; more get 503 + Retry-After")
    p.add_argument("--max-upload-mb", type=float, default=50.0,
                   help="largest request accepted (MB), counted while it arrives (chunked uploads too)")
    p.add_argument("--max-seconds", type=float, default=300.0,
                   help="longest audio a request may hold: duration × channels, at up to 48 kHz (higher rates count "
                        "proportionally); checked from the header before decoding")
    p.add_argument("--allowed-host", action="append", default=None, metavar="NAME",
                   help="a host name the server answers to besides IP addresses and localhost (repeatable): needed "
                        "to reach it by name with --host 0.0.0.0; other names get 403 (DNS rebinding)")


_EXTRA_COMMANDS: list = [add_train, add_evaluate, add_denoise, add_voice, add_export, add_compare, add_serve]


# --------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digit-denoise", formatter_class=FORMATTER,
        description="Train, evaluate and serve denoisers for short spoken recordings.")
    parser.add_argument("--version", action="version", version=f"digit-denoise {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_data(sub)
    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_glue_negative_values(sys.argv[1:] if argv is None else list(argv)))
    if args.command == "serve":
        server_malloc()  # a long-running server gives memory back after each request (see runtime.py)
    else:
        tune_malloc()  # keep freed tensor memory in the heap: faster CPU torch (see runtime.py)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"digit-denoise: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("digit-denoise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
