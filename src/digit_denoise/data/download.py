"""Download and unpack a public digit corpus: verified, atomic, restartable.

``download("audiomnist", "data/audiomnist")`` streams the archive into a temp file beside the
destination, checks its size (``Content-Length``, and the table's size when known) and its
SHA-256 (when known or given), extracts it (zip or tar, detected by content) into a temp folder
beside the destination while rejecting entries that would escape it ("zip slip"), checks that the
dataset's folder is there, and only then moves it into place with one ``os.replace``.

Every temp path is named ``.digit-denoise-download-<dest name>-<pid>-<random>`` in the
destination's parent and removed on any failure; leftovers of a crashed earlier run (whose process
is gone) are removed at the start. So an interrupted or corrupt download leaves nothing half-made
and a rerun starts clean. Every failure is a one-line :class:`~digit_denoise.errors.UserError`.

Mirrors: pass ``url=`` (CLI ``--url``), or set ``DIGIT_DENOISE_MIRROR`` to a URL template such as
``https://mirror.example/{name}.zip`` (``{name}`` is the dataset name).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import UserError
from ..progress import progress, say

TEMP_PREFIX = ".digit-denoise-download-"
CHUNK = 1 << 16
MIRROR_ENV = "DIGIT_DENOISE_MIRROR"


@dataclass(frozen=True)
class Dataset:
    """One downloadable corpus."""

    url: str  # where the archive is published
    archive_root: str  # top-level folder inside the archive ("" = none / unknown)
    subtree: str  # folder below archive_root that becomes the destination ("" = archive_root itself)
    final_check: str  # glob (relative to the subtree) that must match at least one file
    license: str  # licence of the recordings, shown in the summary
    size: int | None = None  # archive size in bytes (None = unknown; Content-Length still checked)
    sha256: str | None = None  # archive SHA-256 hex (None = unknown, not checked)


DATASETS: dict[str, Dataset] = {
    "audiomnist": Dataset(
        url="https://github.com/soerenab/AudioMNIST/archive/refs/heads/master.zip",
        archive_root="AudioMNIST-master",
        subtree="data",
        final_check="[0-9][0-9]/*.wav",
        license="MIT (AudioMNIST, Becker et al.)",
    ),
    "fsdd": Dataset(
        url="https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip",
        archive_root="free-spoken-digit-dataset-1.0.10",
        subtree="",
        final_check="recordings/*.wav",
        license="CC BY-SA 4.0 (Free Spoken Digit Dataset)",
    ),
}


# ----------------------------------------------------------------------------- helpers
def _short(h: str) -> str:
    return h[:12]


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _rm(path: Path) -> None:
    """Remove a file or folder if present (never raises)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but not ours (or cannot tell): leave it alone
    return True


def _clean_stale(parent: Path, dest_name: str) -> None:
    """Delete temp leftovers of earlier crashed runs for this destination."""
    pat = re.compile(re.escape(f"{TEMP_PREFIX}{dest_name}-") + r"(\d+)-[a-z0-9_]+\.(part|extract|old)$")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for p in entries:
        m = pat.match(p.name)
        if m and not _pid_alive(int(m.group(1))):
            _rm(p)


def _resolve(name_or_url: str, url: str | None, sha256: str | None) -> tuple[str, Dataset]:
    """(display name, dataset spec) with the URL/checksum overrides applied."""
    key = name_or_url.lower()
    if key in DATASETS:
        ds = DATASETS[key]
        mirror = os.environ.get(MIRROR_ENV, "").strip()
        if url is None and mirror:
            url = mirror.replace("{name}", key)
    elif re.match(r"^(https?|ftp|file)://", name_or_url):
        ds = Dataset(url=name_or_url, archive_root="", subtree="", final_check="", license="unknown")
        key = name_or_url
    else:
        raise UserError(f"unknown dataset {name_or_url!r}; choose one of {', '.join(DATASETS)} or give a URL")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise UserError(f"--sha256 {sha256!r} is not a 64-digit hex SHA-256")
    return key, Dataset(url=url or ds.url, archive_root=ds.archive_root, subtree=ds.subtree,
                        final_check=ds.final_check, license=ds.license,
                        size=ds.size if url is None else None,
                        sha256=sha256 or (ds.sha256 if url is None else None))


# ----------------------------------------------------------------------------- fetch
def _fetch(url: str, dest: Path, *, timeout: float, size: int | None, sha256: str | None, desc: str) -> int:
    """Stream ``url`` into ``dest``; verify length and checksum; return the byte count."""
    req = urllib.request.Request(url, headers={"User-Agent": "digit-denoise-download"})
    h = hashlib.sha256()
    got = 0
    expected: int | None = None
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            cl = resp.headers.get("Content-Length")
            if cl is not None and cl.strip().isdigit() and not resp.headers.get("Content-Encoding"):
                expected = int(cl)
            with open(dest, "wb") as f, progress(total=expected, desc=desc, unit="B", unit_scale=True,
                                                 unit_divisor=1024) as bar:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except http.client.IncompleteRead as e:
                        chunk = e.partial
                        if chunk:
                            f.write(chunk)
                            h.update(chunk)
                            got += len(chunk)
                        break
                    if not chunk:
                        break
                    f.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise UserError(f"server answered HTTP {e.code} {e.reason} for {url}; "
                        "check the URL or pass --url to a mirror") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise UserError(f"timed out after {timeout:g} s connecting to {url}; "
                            "check your connection or pass --url to a mirror") from None
        if isinstance(e.reason, str) and e.reason.startswith("unknown url type"):
            raise UserError(f"bad URL {url!r} ({e.reason}); give an http(s):// or file:// URL") from None
        raise UserError(f"could not reach {url} ({e.reason}); "
                        "check your connection or pass --url to a mirror") from None
    except TimeoutError:
        raise UserError(f"timed out after {timeout:g} s reading {url} (got {got} bytes); "
                        "rerun, or pass --url to a mirror") from None
    except (ConnectionError, http.client.HTTPException) as e:
        raise UserError(f"connection to {url} broke after {got} bytes ({e.__class__.__name__}: {e}); "
                        "rerun, or pass --url to a mirror") from None
    except ValueError as e:  # malformed URL
        raise UserError(f"bad URL {url!r}: {e}") from None
    except OSError as e:  # disk full, permission denied on the temp file...
        raise UserError(f"could not write the download to {dest.parent}: {e.strerror or e}") from None

    if expected is not None and got != expected:
        raise UserError(f"download of {url} was truncated: got {got} of {expected} bytes; "
                        "rerun to start again")
    if size is not None and got != size:
        raise UserError(f"download of {url} has {got} bytes, expected {size}; rerun, or pass --url to a mirror")
    if got == 0:
        raise UserError(f"download of {url} is empty; check the URL or pass --url to a mirror")
    if sha256 is not None:
        digest = h.hexdigest()
        if digest != sha256:
            raise UserError(f"checksum mismatch for {url}: expected sha256 {_short(sha256)}…, "
                            f"got {_short(digest)}…; the file is corrupt or not the expected release")
    return got


# ----------------------------------------------------------------------------- extract
def _check_member(name: str, root: Path) -> None:
    """Reject absolute paths, drive letters and '..' that would escape ``root``."""
    bad = (not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) is not None
           or ".." in PurePosixPath(name.replace("\\", "/")).parts)
    if not bad:
        target = (root / name).resolve()
        bad = target != root and root not in target.parents
    if bad:
        raise UserError(f"archive entry {name!r} would be written outside the destination "
                        "(unsafe 'zip slip' path); refusing to extract it")


def _extract(archive: Path, out: Path, url: str) -> None:
    out.mkdir()
    root = out.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    _check_member(info.filename, root)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        raise UserError(f"archive entry {info.filename!r} is a symbolic link; refusing to extract it")
                for info in progress(infos, desc="extract", unit="file"):
                    zf.extract(info, out)
            return
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                for m in members:
                    _check_member(m.name, root)
                    if m.issym() or m.islnk():
                        _check_member(str(PurePosixPath(m.name).parent / m.linkname) if m.issym()
                                      else m.linkname, root)
                    elif not (m.isfile() or m.isdir()):
                        raise UserError(f"archive entry {m.name!r} is a device or special file; refusing to extract it")
                kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                for m in progress(members, desc="extract", unit="file"):
                    tf.extract(m, out, **kw)
            return
    except UserError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, ValueError) as e:
        raise UserError(f"the archive from {url} is corrupt ({e}); rerun, or pass --url to a mirror") from None
    except (OSError, NotImplementedError) as e:
        raise UserError(f"could not extract the archive from {url}: {e}") from None
    raise UserError(f"the file from {url} is not a valid zip/tar archive; check the URL or pass --url to a mirror")


def _locate(extracted: Path, ds: Dataset) -> Path:
    """The folder of the extracted archive that becomes the destination."""
    candidates: list[Path] = []
    if ds.archive_root:
        candidates.append(extracted / ds.archive_root)
    tops = [p for p in extracted.iterdir() if not p.name.startswith("__MACOSX")]
    if len(tops) == 1 and tops[0].is_dir():
        candidates.append(tops[0])  # a mirror with another root folder name
    candidates.append(extracted)  # an archive without a root folder
    want = f"'{ds.subtree}/'" if ds.subtree else "the dataset's files"
    for c in candidates:
        base = c / ds.subtree if ds.subtree else c
        if base.is_dir() and (not ds.final_check or next(base.glob(ds.final_check), None) is not None):
            return base
    if ds.subtree and any((c / ds.subtree).is_dir() for c in candidates):
        raise UserError(f"archive's '{ds.subtree}/' has no files matching '{ds.final_check}' — "
                        "is this the right dataset?")
    if ds.final_check and not ds.subtree:
        want = f"'{ds.final_check}'"
    raise UserError(f"archive does not contain {want} — is this the right dataset?")


def _summary(path: Path) -> tuple[int, int]:
    n = total = 0
    for p in path.rglob("*"):
        if p.is_file():
            n += 1
            total += p.stat().st_size
    return n, total


# ----------------------------------------------------------------------------- public
def download(name_or_url: str, to_dir: str | os.PathLike, *, url: str | None = None,
             sha256: str | None = None, timeout: float = 30, overwrite: bool = False) -> Path:
    """Download dataset ``name_or_url`` (a key of :data:`DATASETS`, or an archive URL) into ``to_dir``.

    ``url`` replaces the published URL (a mirror; ``$DIGIT_DENOISE_MIRROR`` too), ``sha256`` is the
    expected archive checksum (default: the table's, if known), ``timeout`` is per socket operation
    in seconds. ``to_dir`` must not exist or be empty unless ``overwrite`` (then it is replaced only
    after the new copy is complete). Returns the final absolute path; raises :class:`UserError`.
    """
    key, ds = _resolve(name_or_url, url, sha256)
    dest = Path(to_dir).expanduser().absolute()
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} exists and is not a folder; choose another --to")
    if dest.is_dir() and any(dest.iterdir()) and not overwrite:
        raise UserError(f"{dest} already exists and is not empty; pass --overwrite to replace it")
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {parent}: {e.strerror or e}") from None
    _clean_stale(parent, dest.name)

    prefix = f"{TEMP_PREFIX}{dest.name}-{os.getpid()}-"
    temps: list[Path] = []
    try:
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=parent)
            os.close(fd)
            archive = Path(tmp_name)
            temps.append(archive)
            work = Path(tempfile.mkdtemp(prefix=prefix, suffix=".extract", dir=parent))
            temps.append(work)
        except OSError as e:
            raise UserError(f"cannot write in {parent}: {e.strerror or e}") from None

        nbytes = _fetch(ds.url, archive, timeout=timeout, size=ds.size, sha256=ds.sha256, desc=f"download {key}")
        extracted = work / "x"
        _extract(archive, extracted, ds.url)
        _rm(archive)
        src = _locate(extracted, ds)

        if dest.is_dir() and any(dest.iterdir()):  # overwrite: move old aside, new in, old away
            aside = Path(tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=parent))
            temps.append(aside)
            os.replace(dest, aside / "old")
            try:
                os.replace(src, dest)
            except OSError:
                os.replace(aside / "old", dest)  # put the old copy back
                raise
        else:
            if dest.is_dir():
                dest.rmdir()  # empty: replace it
            os.replace(src, dest)
    except OSError as e:
        raise UserError(f"could not move the dataset into {dest}: {e.strerror or e}") from None
    finally:
        for t in temps:
            _rm(t)

    n, total = _summary(dest)
    say(f"{key}: {n} files ({_human(total)} unpacked, {_human(nbytes)} downloaded) in {dest} "
        f"— license: {ds.license}")
    return dest
