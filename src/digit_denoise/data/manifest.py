"""The manifest: one CSV row per utterance, with its speaker-disjoint split and its noise recipe.

Columns (in this order): id, clean_path, noisy_path, speaker, digit, take, duration, sample_rate,
channels, gender, age, split, noise, snr, noise_seed.
- Paths are stored relative to the manifest's folder (POSIX separators) and resolved on load.
- ``noise``/``snr``: how this clip's evaluation noise is made (``given`` = the corpus's noisy file);
  ``noise_seed`` with the id makes the noise a pure function, reproducible anywhere.
The same corpus, options and seed give a byte-identical file.
"""

from __future__ import annotations

import csv
import io
import os
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..audio import atomic_path, info
from ..errors import UserError
from ..progress import progress, say
from .corpora import SpeakerMeta, Utterance, scan_corpus
from .noise import BUILTIN_KINDS, NoiseConfig, clip_rng, noise_label

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Row:
    id: str
    clean_path: str  # absolute after load; relative to the manifest folder on disk
    noisy_path: str  # "" when the corpus has no noisy file (noise is made from noise/snr)
    speaker: str
    digit: int
    take: int
    duration: float  # seconds
    sample_rate: int
    channels: int
    gender: str  # male / female / "" unknown
    age: str  # years / "" unknown
    split: str  # train / val / test
    noise: str  # white / pink / brown / babble / a noise folder / given
    snr: str  # dB as text ("" for given noisy files)
    noise_seed: int


COLUMNS = [f.name for f in fields(Row)]


# -------------------------------------------------------------------------------- split
def parse_test_speakers(value: str | int | list | None) -> int | list[str]:
    """``5`` → choose 5 at random (seeded); ``28,56`` → exactly these speakers."""
    if value is None or value == "":
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.isdigit() and "," not in text:
        return int(text)
    return [s.strip() for s in text.split(",") if s.strip()]


def assign_splits(utts: list[Utterance], test_speakers: int | list[str], val_fraction: float,
                  seed: int) -> dict[str, str]:
    """Speaker-disjoint test split; the rest split train/val stratified by speaker × digit.

    Returns {utterance id: split}. Deterministic in (sorted ids, options, seed).
    """
    if not 0 <= val_fraction < 1:
        raise UserError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    speakers = sorted({u.speaker for u in utts})
    if isinstance(test_speakers, int):
        if test_speakers < 0 or test_speakers >= len(speakers):
            hint = f" (to hold out speaker {test_speakers} itself, write '{test_speakers},')" \
                if str(test_speakers) in speakers or str(test_speakers).zfill(2) in speakers else ""
            raise UserError(f"--test-speakers {test_speakers}: the corpus has {len(speakers)} speakers; "
                            f"hold out fewer so some remain for training{hint}")
        test = set(random.Random(f"test-speakers:{seed}").sample(speakers, test_speakers))
    else:
        lookup = {s: s for s in speakers} | {s.lstrip("0") or "0": s for s in speakers if s.isdigit()}
        unknown = [s for s in test_speakers if (s.lstrip("0") or "0") not in lookup and s not in lookup]
        if unknown:
            raise UserError(f"--test-speakers: unknown speaker(s) {', '.join(unknown)}; "
                            f"the corpus has {', '.join(speakers[:12])}{' ...' if len(speakers) > 12 else ''}")
        test = {lookup.get(s, lookup.get(s.lstrip("0") or "0")) for s in test_speakers}
        if len(test) >= len(speakers):
            raise UserError("--test-speakers names every speaker; leave at least one for training")
    split = {}
    groups: dict[tuple[str, int], list[str]] = defaultdict(list)
    for u in utts:
        if u.speaker in test:
            split[u.id] = "test"
        else:
            groups[(u.speaker, u.digit)].append(u.id)
    for (speaker, digit), ids in sorted(groups.items()):
        ids = sorted(ids)
        random.Random(f"val:{seed}:{speaker}:{digit}").shuffle(ids)
        n_val = int(round(val_fraction * len(ids))) if len(ids) > 1 else 0
        for i, uid in enumerate(ids):
            split[uid] = "val" if i < n_val else "train"
    return split


# Speakers held out per corpus of a ``speech16k`` folder (test, val); corpora not named here and
# speakers without a label (wake words) are training only.
SPEECH16K_HOLDOUT = {"speechcommands": (40, 10), "speechocean762": (30, 10), "dspspeech20": (4, 2)}


def speech16k_splits(utts: list[Utterance], seed: int) -> dict[str, str]:
    """Speaker-disjoint train/val/test for a ``speech16k`` corpus: per corpus, a seeded choice of
    whole speakers for test and val (:data:`SPEECH16K_HOLDOUT`), the rest train."""
    by_corpus: dict[str, set[str]] = defaultdict(set)
    for u in utts:
        if not u.speaker.endswith("/unlabelled"):
            by_corpus[u.speaker.split("/", 1)[0]].add(u.speaker)
    role = {}
    for corpus, speakers in sorted(by_corpus.items()):
        n_test, n_val = SPEECH16K_HOLDOUT.get(corpus, (0, 0))
        chosen = sorted(speakers)
        random.Random(f"speech16k:{seed}:{corpus}").shuffle(chosen)
        if n_test + n_val >= len(chosen):
            n_test, n_val = len(chosen) // 3, len(chosen) // 6  # a small corpus: keep most for training
        role.update({s: "test" for s in chosen[:n_test]})
        role.update({s: "val" for s in chosen[n_test:n_test + n_val]})
    return {u.id: role.get(u.speaker, "train") for u in utts}


# ------------------------------------------------------------------------------- building
def build_manifest(corpus: str | Path, out: str | Path, *, layout: str = "auto", pattern: str | None = None,
                   test_speakers="5", val_fraction: float = 0.2, seed: int = 0,
                   noise: NoiseConfig | None = None, strict: bool = False) -> tuple[list[Row], list[str]]:
    """Scan ``corpus``, read every header, split, assign noise; return (rows, warnings) (not yet written).

    Unreadable files are left out and reported (count + first names); ``strict`` makes them fatal.
    """
    out_dir = Path(out).resolve().parent
    utts, meta, layout, warnings = scan_corpus(corpus, layout, pattern)
    noise = noise or NoiseConfig()
    readable, bad = [], []
    for u in progress(utts, desc="reading headers", unit="file"):
        try:
            hdr = info(u.clean_path)
            if u.noisy_path is not None:
                info(u.noisy_path)
            if hdr.frames == 0:
                raise UserError(f"{u.clean_path}: empty (0 samples)")
        except UserError as e:
            bad.append((u, str(e)))
            continue
        readable.append((u, hdr))
    if bad:
        names = ", ".join(b[0].clean_path.name for b in bad[:3])
        msg = f"{len(bad)} unreadable file(s) left out (e.g. {names}; first error: {bad[0][1]})"
        if strict:
            raise UserError(msg + " [--strict]")
        warnings.append(msg)
    if not readable:
        raise UserError(f"{corpus}: none of the {len(utts)} recordings could be read")
    if layout == "speech16k":
        split = speech16k_splits([u for u, _ in readable], seed)
    else:
        split = assign_splits([u for u, _ in readable], parse_test_speakers(test_speakers), val_fraction, seed)
    rows = []
    for u, hdr in readable:
        m = meta.get(u.speaker, SpeakerMeta())
        if u.noisy_path is not None:
            kind, snr = "given", ""
        else:
            kind, snr_v = noise.draw(clip_rng(seed, u.id, "noise-recipe"))
            kind = kind if kind in BUILTIN_KINDS else _rel(Path(kind), out_dir)
            snr = f"{snr_v:g}"
        rows.append(Row(u.id, _rel(u.clean_path, out_dir), _rel(u.noisy_path, out_dir) if u.noisy_path else "",
                        u.speaker, u.digit, u.take, round(hdr.duration, 6), hdr.sample_rate, hdr.channels,
                        m.gender, m.age, split[u.id], kind, snr, seed))
    rows.sort(key=lambda r: r.id)
    _check_babble(rows)
    return rows, warnings


def _check_babble(rows: list[Row]) -> None:
    for s in SPLITS:
        sub = [r for r in rows if r.split == s]
        if any(r.noise in ("babble", "talker") for r in sub) and len({r.speaker for r in sub}) < 2:
            raise UserError(f"babble noise needs at least 2 speakers in the '{s}' split (babble talkers come "
                            "from other speakers of the same split); hold out more test speakers or use another noise")


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()


# ----------------------------------------------------------------------------------- I/O
def manifest_text(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        d = asdict(r)
        d["duration"] = f"{r.duration:.6f}"
        w.writerow([d[c] for c in COLUMNS])
    return buf.getvalue()


def write_manifest(rows: list[Row], path: str | Path, overwrite: bool = False) -> str:
    """Write atomically. An existing identical file is left as is ('unchanged'); a different one
    needs ``overwrite``. Returns 'written', 'unchanged' or 'overwritten'."""
    path = Path(path)
    text = manifest_text(rows)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; --out expects a CSV file name such as manifest.csv")
    if path.exists():
        if path.is_file() and path.read_bytes() == text.encode("utf-8"):  # bytes: any file, exact
            return "unchanged"
        if not overwrite:
            raise UserError(f"{path}: already exists with different content; pass --overwrite or choose another --out")
    existed = path.exists()
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))  # "\n" line ends on every OS (byte-identical)
    return "overwritten" if existed else "written"


def load_manifest(path: str | Path) -> list[Row]:
    """Read a manifest; paths come back absolute. Raises :class:`UserError` on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: manifest not found; make one with 'digit-denoise data prepare'")
    base = path.resolve().parent
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: not a digit-denoise manifest (missing columns: {', '.join(missing)})")
            rows = []
            for i, d in enumerate(reader, start=2):
                try:
                    rows.append(Row(
                        id=d["id"], clean_path=str((base / d["clean_path"]).resolve()),
                        noisy_path=str((base / d["noisy_path"]).resolve()) if d["noisy_path"] else "",
                        speaker=d["speaker"], digit=int(d["digit"]), take=int(d["take"]),
                        duration=float(d["duration"]), sample_rate=int(d["sample_rate"]),
                        channels=int(d["channels"]), gender=d["gender"], age=d["age"], split=d["split"],
                        noise=d["noise"] if d["noise"] in (*BUILTIN_KINDS, "given")
                        else str((base / d["noise"]).resolve()),
                        snr=d["snr"], noise_seed=int(d["noise_seed"])))
                except (TypeError, ValueError) as e:
                    raise UserError(f"{path}: line {i} is malformed ({e}); regenerate the manifest") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text CSV file; pass a manifest made by 'digit-denoise data prepare'") from None
    if not rows:
        raise UserError(f"{path}: the manifest has no rows")
    return rows


def select(rows: list[Row], split: str | None = None, limit: int | None = None) -> list[Row]:
    """Rows of one split (all when None), optionally the first ``limit`` (a deterministic spread)."""
    if limit is not None and limit < 0:
        raise UserError(f"--limit {limit}: give a positive number of clips")
    sub = [r for r in rows if split in (None, "all") or r.split == split]
    if split not in (None, "all") and not sub:
        have = ", ".join(sorted({r.split for r in rows}))
        raise UserError(f"the manifest has no '{split}' split (it has: {have}); "
                        "re-run 'data prepare' with --test-speakers N")
    if limit and limit < len(sub):
        step = len(sub) / limit
        sub = [sub[int(i * step)] for i in range(limit)]
    return sub


def with_noise(rows: list[Row], noise: NoiseConfig, seed: int) -> list[Row]:
    """The same rows with a new noise recipe (for evaluation conditions); given noisy files are kept."""
    out = []
    for r in rows:
        if r.noisy_path:
            out.append(r)
            continue
        kind, snr = noise.draw(clip_rng(seed, r.id, "noise-recipe"))
        out.append(replace(r, noise=kind, snr=f"{snr:g}", noise_seed=seed))
    return out


def summary_table(rows: list[Row]) -> str:
    """A small text table: clips, speakers, hours, noise per split."""
    lines = [f"{'split':<6} {'clips':>6} {'speakers':>8} {'minutes':>8} {'digits':>6}  noise",
             "-" * 64]
    for s in SPLITS:
        sub = [r for r in rows if r.split == s]
        if not sub:
            continue
        kinds = Counter(noise_label(r.noise) for r in sub)
        snrs = sorted({float(r.snr) for r in sub if r.snr}, key=float)
        snr_txt = f" @ {snrs[0]:g}..{snrs[-1]:g} dB" if len(snrs) > 1 else (f" @ {snrs[0]:g} dB" if snrs else "")
        noise = ",".join(f"{k}:{n}" for k, n in sorted(kinds.items())) + snr_txt
        spk = sorted({r.speaker for r in sub})
        lines.append(f"{s:<6} {len(sub):>6} {len(spk):>8} {sum(r.duration for r in sub) / 60:>8.2f} "
                     f"{len({r.digit for r in sub}):>6}  {noise}")
    test_spk = sorted({r.speaker for r in rows if r.split == "test"})
    if test_spk:
        lines.append(f"test speakers: {', '.join(test_spk)}")
    return "\n".join(lines)


def prepare(corpus, out, *, overwrite: bool = False, **kwargs) -> list[Row]:
    """Build and write a manifest, print warnings; return its rows as loaded (absolute paths)."""
    rows, warnings = build_manifest(corpus, out, **kwargs)
    for w in warnings:
        say(f"warning: {w}")
    status = write_manifest(rows, out, overwrite=overwrite)
    say(f"manifest {status}: {out} ({len(rows)} rows)")
    return load_manifest(out)


def manifest_paths(manifest: str | tuple[str, ...] | list[str]) -> list[str]:
    """``a.csv``, ``a.csv,b.csv`` or a list of them → the manifest paths (waveform models train on their union)."""
    items = manifest.split(",") if isinstance(manifest, str) else manifest
    return [p.strip() for p in items if p.strip()]
