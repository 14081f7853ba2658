"""download.py against a local HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from digit_denoise.data import download as dl
from digit_denoise.data.download import DATASETS, download
from digit_denoise.errors import UserError


# ----------------------------------------------------------------------------- archives
def _wav_bytes(seconds: float = 0.05, sr: int = 8000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _targz(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


WAV = _wav_bytes()
AMN = {
    "AudioMNIST-master/README.md": b"readme",
    "AudioMNIST-master/data/01/0_01_0.wav": WAV,
    "AudioMNIST-master/data/01/1_01_0.wav": WAV,
    "AudioMNIST-master/data/02/0_02_0.wav": WAV,
    "AudioMNIST-master/data/audioMNIST_meta.txt": b'{"01": {"gender": "male"}, "02": {"gender": "female"}}',
}
FSDD = {
    "free-spoken-digit-dataset-1.0.10/README.md": b"fsdd",
    "free-spoken-digit-dataset-1.0.10/recordings/0_jackson_0.wav": WAV,
    "free-spoken-digit-dataset-1.0.10/recordings/1_nicolas_3.wav": WAV,
}
AMN_ZIP = _zip(AMN)
FSDD_TGZ = _targz(FSDD)


# ----------------------------------------------------------------------------- server
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802
        mode, body = self.server.routes.get(self.path, ("404", b""))
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        if mode == "404":
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if mode == "ok":
                self.wfile.write(body)
            elif mode == "truncate":  # promise everything, send half, hang up
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif mode == "slow":  # headers, then silence (bounded)
                for _ in range(20):
                    time.sleep(0.05)
        except OSError:
            pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.routes = {}
    srv.hits = {}
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(timeout=5)


@pytest.fixture
def dead_url():
    """A URL on a port that was bound then closed: connection refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/x.zip"


@pytest.fixture
def parent(tmp_path) -> Path:
    p = tmp_path / "dl"
    p.mkdir()
    return p


def _serve(server, path, body, mode="ok") -> str:
    server.routes[path] = (mode, body)
    return server.base + path


def _only(parent: Path, *names: str) -> None:
    """Nothing but ``names`` beside the destination (no temp leftovers)."""
    assert sorted(p.name for p in parent.iterdir()) == sorted(names)


# ----------------------------------------------------------------------------- tests
def test_table_has_both_datasets():
    assert set(DATASETS) >= {"audiomnist", "fsdd"}
    assert DATASETS["audiomnist"].url.startswith("https://github.com/soerenab/AudioMNIST/")
    assert DATASETS["fsdd"].archive_root == "free-spoken-digit-dataset-1.0.10"


def test_audiomnist_success(server, parent):
    url = _serve(server, "/amn.zip", AMN_ZIP)
    out = download("audiomnist", parent / "amn", url=url, timeout=5)
    assert out == (parent / "amn").absolute()
    assert (out / "audioMNIST_meta.txt").is_file()
    x, sr = sf.read(out / "01" / "0_01_0.wav")
    assert sr == 8000 and len(x) == 400
    assert sorted(p.name for p in (out / "01").iterdir()) == ["0_01_0.wav", "1_01_0.wav"]
    assert not (out / "README.md").exists()  # only the data/ subtree
    _only(parent, "amn")


def test_fsdd_tar_gz_success(server, parent):
    url = _serve(server, "/fsdd.bin", FSDD_TGZ)  # detected by content, not extension
    out = download("fsdd", parent / "fsdd", url=url, timeout=5)
    x, sr = sf.read(out / "recordings" / "0_jackson_0.wav")
    assert sr == 8000 and len(x) == 400
    assert (out / "recordings" / "1_nicolas_3.wav").is_file()
    _only(parent, "fsdd")


def test_fsdd_zip_with_other_root_and_mirror_env(server, parent, monkeypatch):
    body = _zip({k.replace("free-spoken-digit-dataset-1.0.10", "mirror-root"): v for k, v in FSDD.items()})
    _serve(server, "/m/fsdd.zip", body)
    monkeypatch.setenv("DIGIT_DENOISE_MIRROR", server.base + "/m/{name}.zip")
    out = download("fsdd", parent / "f")
    assert (out / "recordings" / "0_jackson_0.wav").is_file()
    _only(parent, "f")


def test_checksum_ok_and_mismatch(server, parent):
    url = _serve(server, "/amn.zip", AMN_ZIP)
    good = hashlib.sha256(AMN_ZIP).hexdigest()
    download("audiomnist", parent / "ok", url=url, sha256=good.upper(), timeout=5)
    assert (parent / "ok" / "01" / "0_01_0.wav").is_file()
    bad = "0" * 64
    with pytest.raises(UserError, match=r"checksum mismatch.*expected sha256 000000000000.*got " + good[:12]):
        download("audiomnist", parent / "bad", url=url, sha256=bad, timeout=5)
    _only(parent, "ok")
    with pytest.raises(UserError, match="not a 64-digit hex"):
        download("audiomnist", parent / "bad", url=url, sha256="abc")


def test_truncated_then_rerun(server, parent):
    url = _serve(server, "/amn.zip", AMN_ZIP, mode="truncate")
    with pytest.raises(UserError, match=rf"truncated: got {len(AMN_ZIP) // 2} of {len(AMN_ZIP)} bytes"):
        download("audiomnist", parent / "amn", url=url, timeout=5)
    _only(parent)
    server.routes["/amn.zip"] = ("ok", AMN_ZIP)
    out = download("audiomnist", parent / "amn", url=url, timeout=5)
    assert (out / "02" / "0_02_0.wav").is_file()
    _only(parent, "amn")


def test_stale_temp_from_crashed_run_removed(server, parent):
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(p.stdout)
    (parent / f".digit-denoise-download-amn-{dead}-abc123.part").write_bytes(b"half")
    (parent / f".digit-denoise-download-amn-{dead}-xyz_9.extract").mkdir()
    (parent / f".digit-denoise-download-amn-{dead}-xyz_9.extract" / "junk").write_bytes(b"x")
    (parent / "unrelated.txt").write_text("keep me")
    download("audiomnist", parent / "amn", url=_serve(server, "/a.zip", AMN_ZIP), timeout=5)
    _only(parent, "amn", "unrelated.txt")


@pytest.mark.parametrize("case", ["corrupt", "404", "down", "zip-slip", "tar-slip", "wrong", "timeout"])
def test_failures_leave_nothing(server, dead_url, parent, tmp_path, case):
    name = "audiomnist"
    if case == "corrupt":
        url, pat = _serve(server, "/c.zip", np.random.default_rng(0).bytes(5000)), "not a valid zip/tar archive"
    elif case == "404":
        url, pat = _serve(server, "/gone.zip", b"", mode="404"), "HTTP 404"
    elif case == "down":
        url, pat = dead_url, r"could not reach .*check your connection or pass --url"
    elif case == "zip-slip":
        url, pat = _serve(server, "/s.zip", _zip({**AMN, "../../evil.txt": b"x"})), "zip slip"
    elif case == "tar-slip":
        name = "fsdd"
        url, pat = _serve(server, "/s.tgz", _targz({**FSDD, "/tmp/../evil.txt": b"x"})), "zip slip"
    elif case == "wrong":
        url, pat = _serve(server, "/w.zip", _zip({"AudioMNIST-master/README.md": b"r"})), \
            r"archive does not contain 'data/' — is this the right dataset\?"
    else:
        url, pat = _serve(server, "/slow.zip", AMN_ZIP, mode="slow"), "timed out after 0.2 s"
    with pytest.raises(UserError, match=pat) as ei:
        download(name, parent / "d", url=url, timeout=0.2 if case == "timeout" else 5)
    assert "\n" not in str(ei.value)
    _only(parent)
    assert not (tmp_path / "evil.txt").exists() and not (parent / "evil.txt").exists()


def test_existing_destination(server, parent):
    url = _serve(server, "/amn.zip", AMN_ZIP)
    dest = parent / "amn"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(UserError, match="not empty; pass --overwrite"):
        download("audiomnist", dest, url=url, timeout=5)
    assert (dest / "old.txt").read_text() == "old"
    assert server.hits.get("/amn.zip", 0) == 0  # refused before downloading
    out = download("audiomnist", dest, url=url, timeout=5, overwrite=True)
    assert not (out / "old.txt").exists() and (out / "01" / "0_01_0.wav").is_file()
    _only(parent, "amn")


def test_failed_overwrite_keeps_old_copy(server, parent):
    dest = parent / "amn"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(UserError, match="checksum mismatch"):
        download("audiomnist", dest, url=_serve(server, "/a.zip", AMN_ZIP), sha256="1" * 64, overwrite=True)
    assert (dest / "old.txt").read_text() == "old"
    _only(parent, "amn")


def test_empty_destination_is_fine_and_unknown_name(server, parent):
    (parent / "amn").mkdir()
    out = download("audiomnist", parent / "amn", url=_serve(server, "/a.zip", AMN_ZIP), timeout=5)
    assert (out / "audioMNIST_meta.txt").is_file()
    with pytest.raises(UserError, match="unknown dataset 'librispeech'"):
        download("librispeech", parent / "x")
    assert dl.TEMP_PREFIX.startswith(".digit-denoise-download-")
