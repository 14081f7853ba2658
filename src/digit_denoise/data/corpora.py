"""Corpus layouts: find the utterances of a folder and their speaker metadata.

Layouts
- ``audiomnist``: ``NN/D_NN_I.wav`` (digit_speaker_take) + ``audioMNIST_meta.txt`` (JSON by speaker).
- ``pairs``: the same naming with ``D_NN_I_noisy.wav`` beside each clean file (given noisy audio).
- ``fsdd``: ``recordings/D_name_I.wav`` (+ optional ``speakers.json`` with gender).
- ``folder``: any tree of audio files whose names match a pattern such as ``{digit}_{speaker}_{take}``.
- ``speech16k``: a folder with ``files.csv`` (corpus, path, speaker, gender, age, text, ...): real
  wideband speech of many corpora; speakers are ``corpus/speaker``, words that are digits keep their
  digit (others get -1). Split by :func:`manifest.speech16k_splits` (fixed per-corpus hold-outs).
- ``auto``: detect one of the above.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..audio import AUDIO_EXTENSIONS
from ..errors import UserError
from ..progress import say

LAYOUTS = ("audiomnist", "pairs", "fsdd", "folder", "speech16k", "auto")
AUDIOMNIST_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>\d+)_(?P<take>\d+)$")
FSDD_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z0-9-]+)_(?P<take>\d+)$")
NOISY_SUFFIX = "_noisy"


@dataclass(frozen=True)
class Utterance:
    """One clean recording found in a corpus (before its header is read)."""

    id: str
    clean_path: Path
    noisy_path: Path | None
    speaker: str
    digit: int
    take: int


@dataclass(frozen=True)
class SpeakerMeta:
    gender: str = ""  # "male" / "female" / "" when unknown
    age: str = ""  # whole years as text, "" when unknown or implausible


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def _rel_id(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


# ------------------------------------------------------------------------------- metadata
def _norm_gender(value) -> str:
    v = str(value or "").strip().lower()
    if v in ("m", "male", "man", "männlich"):
        return "male"
    if v in ("f", "female", "woman", "weiblich"):
        return "female"
    return ""


def _norm_age(value) -> str:
    try:
        age = float(str(value).strip())
    except (TypeError, ValueError):
        return ""
    return str(int(age)) if 1 <= age <= 120 and age == int(age) else ""


def parse_speaker_meta(path: Path) -> tuple[dict[str, SpeakerMeta], str | None]:
    """Read an AudioMNIST-style meta file (JSON keyed by speaker id) or FSDD's speakers.json.

    Defensive: keys may be ints or zero-padded strings, values strings or numbers, ages odd.
    Returns (meta by speaker id, warning or None); a missing or broken file is a warning.
    """
    if not path.is_file():
        return {}, f"no speaker metadata ({path.name} not found): gender/age left empty"
    try:
        raw = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError) as e:
        return {}, f"{path}: broken speaker metadata ({str(e)[:80]}): gender/age left empty"
    if not isinstance(raw, dict):
        return {}, f"{path}: speaker metadata is not a JSON object: gender/age left empty"
    meta = {}
    for key, value in raw.items():
        if not isinstance(value, dict):
            continue
        fields = {str(k).strip().lower(): v for k, v in value.items()}
        m = SpeakerMeta(_norm_gender(fields.get("gender")), _norm_age(fields.get("age")))
        k = str(key).strip()
        meta[k] = m
        if k.isdigit():  # "1", "01" and 1 all name speaker 01
            meta[k.zfill(2)] = m
            meta[str(int(k))] = m
            meta[str(int(k)).zfill(2)] = m  # "007" also names speaker 07
    return meta, None


# -------------------------------------------------------------------------------- layouts
def _audiomnist_root(root: Path) -> Path:
    """AudioMNIST ships its speakers under ``data/``; accept either the repo root or ``data``."""
    has_speaker_dirs = any(c.is_dir() and c.name.isdigit() for c in root.iterdir())
    return root / "data" if (root / "data").is_dir() and not has_speaker_dirs else root


def scan_audiomnist(root: Path, pairs: bool) -> tuple[list[Utterance], list[str]]:
    """Returns (utterances, names of clean files missing their noisy partner when ``pairs``)."""
    root = _audiomnist_root(root)
    clean, noisy = {}, {}
    for f in _audio_files(root):
        is_noisy = f.stem.endswith(NOISY_SUFFIX)
        stem = f.stem.removesuffix(NOISY_SUFFIX)
        m = AUDIOMNIST_NAME.match(stem)
        if m:
            (noisy if is_noisy else clean)[(f.parent, stem)] = (f, m)
    utts, unpaired = [], []
    for key, (f, m) in sorted(clean.items(), key=lambda kv: str(kv[1][0])):
        noisy_path = noisy[key][0] if key in noisy else None
        if pairs and noisy_path is None:
            unpaired.append(f.name)
            continue
        utts.append(Utterance(_rel_id(f, root), f, noisy_path if pairs else None, m["speaker"].zfill(2),
                              int(m["digit"]), int(m["take"])))
    return utts, unpaired


def scan_fsdd(root: Path) -> list[Utterance]:
    rec = root / "recordings" if (root / "recordings").is_dir() else root
    utts = []
    for f in _audio_files(rec):
        m = FSDD_NAME.match(f.stem)
        if m:
            utts.append(Utterance(_rel_id(f, rec), f, None, m["speaker"], int(m["digit"]), int(m["take"])))
    return utts


def pattern_regex(pattern: str) -> re.Pattern:
    """``{digit}_{speaker}_{take}`` → a regex on the file stem. ``*`` matches anything.

    Fields: {digit} one digit 0-9 (or a digit word), {speaker} letters/digits/-, {take} a number,
    {any} anything without a path separator.
    """
    if "{digit}" not in pattern or "{speaker}" not in pattern:
        raise UserError(f"--pattern {pattern!r}: must contain {{digit}} and {{speaker}} (e.g. '{{digit}}_{{speaker}}_{{take}}')")
    parts = re.split(r"(\{digit\}|\{speaker\}|\{take\}|\{any\}|\*)", pattern)
    rx = []
    for p in parts:
        rx.append({"{digit}": r"(?P<digit>\d|zero|one|two|three|four|five|six|seven|eight|nine)",
                   "{speaker}": r"(?P<speaker>[A-Za-z0-9-]+?)",
                   "{take}": r"(?P<take>\d+)",
                   "{any}": r"[^/]*?", "*": r"[^/]*?"}.get(p, re.escape(p)))
    return re.compile("^" + "".join(rx) + "$", re.IGNORECASE)


DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def scan_folder(root: Path, pattern: str) -> list[Utterance]:
    rx = pattern_regex(pattern)
    utts, takes = [], {}
    for f in _audio_files(root):
        if f.stem.endswith(NOISY_SUFFIX):
            continue
        m = rx.match(f.stem)
        if not m:
            continue
        d = m["digit"].lower()
        digit = DIGIT_WORDS.index(d) if d in DIGIT_WORDS else int(d)
        speaker = m["speaker"]
        if "take" in m.groupdict() and m["take"] is not None:
            take = int(m["take"])
        else:  # no take in the name: number the speaker's takes of this digit in path order
            take = takes[(speaker, digit)] = takes.get((speaker, digit), -1) + 1
        utts.append(Utterance(_rel_id(f, root), f, None, speaker, digit, take))
    return utts


SPEECH16K_COLUMNS = ("corpus", "path", "speaker", "gender", "age", "text")


def scan_speech16k(root: Path) -> tuple[list[Utterance], dict[str, SpeakerMeta]]:
    """Utterances of a ``files.csv`` corpus (see the module docstring) and their speakers' metadata."""
    listing = root / "files.csv"
    try:
        with listing.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in SPEECH16K_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{listing}: missing columns {', '.join(missing)}; expected "
                                f"{', '.join(SPEECH16K_COLUMNS)}")
            entries = list(reader)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{listing}: cannot read the file list ({e})") from None
    utts, meta, takes = [], {}, {}
    for e in entries:
        path = root / e["path"]
        corpus = e["corpus"].strip()
        # no speaker labels (wake words): one pseudo-speaker per corpus, kept in training
        speaker = f"{corpus}/{e['speaker'].strip() or 'unlabelled'}"
        word = e["text"].strip().lower()
        digit = DIGIT_WORDS.index(word) if word in DIGIT_WORDS else -1
        take = takes[(speaker, word)] = takes.get((speaker, word), -1) + 1
        utts.append(Utterance(Path(e["path"]).with_suffix("").as_posix(), path, None, speaker, digit, take))
        meta.setdefault(speaker, SpeakerMeta(_norm_gender(e.get("gender")), _norm_age(e.get("age"))))
    return utts, meta


def detect_layout(root: Path) -> str:
    """Guess the layout of ``root``; raise :class:`UserError` if nothing fits."""
    if (root / "files.csv").is_file():
        return "speech16k"
    files = _audio_files(root)
    if not files:
        raise UserError(f"{root}: no audio files (.wav, .flac, .ogg, .mp3, ...) found; expected an AudioMNIST "
                        "folder (NN/D_NN_I.wav), FSDD (recordings/D_name_I.wav) or a folder with --pattern")
    if (root / "recordings").is_dir() and any(FSDD_NAME.match(f.stem) for f in _audio_files(root / "recordings")):
        return "fsdd"
    amn = [f for f in files if AUDIOMNIST_NAME.match(f.stem.removesuffix(NOISY_SUFFIX))]
    if amn:
        return "pairs" if any(f.stem.endswith(NOISY_SUFFIX) for f in amn) else "audiomnist"
    if any(FSDD_NAME.match(f.stem) for f in files):
        return "fsdd"
    raise UserError(f"{root}: could not recognise the layout of {len(files)} audio files (e.g. {files[0].name}); "
                    "pass --layout folder --pattern '{digit}_{speaker}_{take}' matching your file names")


def scan_corpus(root: str | Path, layout: str = "auto", pattern: str | None = None
                ) -> tuple[list[Utterance], dict[str, SpeakerMeta], str, list[str]]:
    """Find a corpus's utterances. Returns (utterances, speaker meta, layout used, warnings)."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: corpus folder not found; check --corpus")
    if not root.is_dir():
        raise UserError(f"{root}: is a file; --corpus expects a folder of recordings")
    if layout not in LAYOUTS:
        raise UserError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    warnings: list[str] = []
    if layout == "auto":
        layout = "folder" if pattern else detect_layout(root)
        say(f"layout: detected '{layout}' in {root}")
    if layout in ("audiomnist", "pairs"):
        utts, unpaired = scan_audiomnist(root, pairs=(layout == "pairs"))
        if unpaired:
            warnings.append(f"{len(unpaired)} clean files have no _noisy partner and were left out "
                            f"(e.g. {', '.join(unpaired[:3])})")
        meta, w = parse_speaker_meta(_audiomnist_root(root) / "audioMNIST_meta.txt")
        warnings += [w] if w else []
        expected = "NN/D_NN_I.wav files" + (" with D_NN_I_noisy.wav beside them" if layout == "pairs" else "")
    elif layout == "fsdd":
        utts = scan_fsdd(root)
        meta, w = parse_speaker_meta(root / "speakers.json")
        warnings += [w] if w else []
        expected = "recordings/D_name_I.wav files"
    elif layout == "speech16k":
        utts, meta = scan_speech16k(root)
        expected = "files listed in files.csv"
    else:
        if not pattern:
            raise UserError("--layout folder needs --pattern, e.g. --pattern '{digit}_{speaker}_{take}'")
        utts = scan_folder(root, pattern)
        meta = {}
        expected = f"audio files whose names match {pattern!r}"
    if not utts:
        raise UserError(f"{root}: no recordings found for layout '{layout}'; expected {expected}")
    unique: dict[str, Utterance] = {}
    for u in utts:  # e.g. 0_jackson_0.wav and 0_jackson_0.flac: one id, keep the first in path order
        unique.setdefault(u.id, u)
    if len(unique) < len(utts):
        dupes = [u.clean_path.name for u in utts if unique[u.id] is not u]
        warnings.append(f"{len(dupes)} files share their name (without extension) with another file and were "
                        f"left out (e.g. {', '.join(dupes[:3])})")
        utts = list(unique.values())
    return utts, meta, layout, warnings
