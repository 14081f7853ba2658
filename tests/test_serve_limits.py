"""A hostile client against ``digit-denoise serve`` (a real server in a subprocess, or in-process where a
timeout is shortened): the work is bounded by what was sent, byte limits hold while a chunked body arrives,
any file name round-trips, foreign hosts and cross-origin posts are refused, every error is JSON."""

from __future__ import annotations

import io
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf

uvicorn = pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed (test extra)")

from digit_denoise.serve import guard  # noqa: E402
from digit_denoise.serve.app import ServerConfig, State, create_app  # noqa: E402
from digit_denoise.serve.guard import host_allowed  # noqa: E402
from digit_denoise.serve.media import attachment  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wav(x: np.ndarray, sr: int, subtype: str = "PCM_16", format: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=format, subtype=subtype)
    return buf.getvalue()


def status_kb(pid: int, key: str) -> int:
    return int(next(line for line in open(f"/proc/{pid}/status") if line.startswith(key)).split()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """``digit-denoise serve --max-upload-mb 1`` in a subprocess with its own empty TMPDIR."""
    tmp = tmp_path_factory.mktemp("srv-tmp")
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "DIGIT_DENOISE_QUIET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "digit_denoise", "serve", "--port", str(port), "--max-upload-mb",
                             "1", "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the server did not start: " + proc.stderr.read()[-2000:])
    yield {"url": url, "pid": proc.pid, "tmp": tmp, "port": port, "proc": proc}
    proc.terminate()
    proc.wait(timeout=20)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RSS is read from /proc (Linux)")
def test_a_1_hz_file_and_other_tiny_giants_are_refused_from_their_header(live):
    """A 2 KB WAV at 1 Hz (16,000× resampling), 89 KB of FLAC silence that decodes to hours, a WAV just under
    the upload limit: each is a quick 4xx; two at once; peak RSS < 1 GB, and back near idle afterwards."""
    url, pid = live["url"], live["pid"]
    warm = wav((0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    assert httpx.post(url + "/api/denoise", files={"file": ("w.wav", warm)}, timeout=120).status_code == 200
    idle = status_kb(pid, "VmRSS")
    r1 = wav((0.1 * np.random.default_rng(1).standard_normal(1000)).astype(np.float32), 1)
    silence = io.BytesIO()
    with sf.SoundFile(silence, "w", 48000, 2, format="FLAC", subtype="PCM_16") as f:
        for _ in range(60):
            f.write(np.zeros((48000 * 60, 2), np.float32))  # an hour of stereo silence
    flac = silence.getvalue()
    assert len(flac) < 1024 * 1024
    long_wav = wav(np.zeros(int(0.99 * 2**20) // 2 - 100, np.float32), 1600)  # under 1 MB, 5 min at 1.6 kHz
    results = {}

    def post(key, name, data):
        t = time.perf_counter()
        r = httpx.post(url + "/api/denoise", files={"file": (name, data)}, timeout=120)
        results[key] = (r.status_code, r.json()["error"], time.perf_counter() - t)

    threads = [threading.Thread(target=post, args=(k, n, d)) for k, n, d in
               (("r1a", "r1.wav", r1), ("r1b", "r1.wav", r1), ("flac", "s.flac", flac), ("long", "l.wav", long_wav))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["r1a"][0] == results["r1b"][0] == 422 and "sample rate 1 Hz is outside" in results["r1a"][1]
    assert results["flac"][0] == 413 and "3600 s × 2 channel(s)" in results["flac"][1]
    assert results["long"][0] == 422 and "1600 Hz is outside" in results["long"][1]
    assert all(s < 5 for _, _, s in results.values()), results
    assert status_kb(pid, "VmHWM") < 1024 * 1024
    assert status_kb(pid, "VmRSS") < idle + 200 * 1024
    long16 = wav(np.zeros(16000 * 310, np.float32), 16000, "PCM_U8" if False else "PCM_16")[: 2**20 - 4096]
    r = httpx.post(url + "/api/denoise", files={"file": ("cut.wav", long16)}, timeout=60)
    assert r.status_code in (413, 422)  # 310 s in the header (> 300 s) or, cut short, truncated


def _read_answer(s: socket.socket) -> bytes:
    """An HTTP answer: its headers and its Content-Length of body (or what came before the server closed)."""
    s.settimeout(10)
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                next((line.split(b":")[1] for line in data.split(b"\r\n") if line.lower().startswith(b"content-length")),
                     b"0")):
            got = s.recv(65536)
            if not got:
                break
            data += got
    except OSError:
        pass
    return data


def _chunked_upload(port: int, total_mb: int) -> tuple[bytes, int]:
    """POST a multipart body of ``total_mb`` MB with chunked transfer encoding over a raw socket; stop
    sending as soon as the server answers. Returns (the answer, bytes sent)."""
    boundary = "xyzzy"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"POST /api/denoise HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n"
              f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode())
    sent, answer = 0, b""
    chunk = head + b"\0" * (64 * 1024 - len(head))
    try:
        while sent < total_mb * 2**20:
            s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
            chunk = b"\0" * 64 * 1024
            if select.select([s], [], [], 0)[0]:
                break
        answer = _read_answer(s)
    except (BrokenPipeError, ConnectionResetError):
        answer = _read_answer(s)
    finally:
        s.close()
    return answer, sent


def test_a_chunked_upload_gets_413_near_the_limit_with_nothing_on_disk(live):
    answer, sent = _chunked_upload(live["port"], 100)
    assert answer.startswith(b"HTTP/1.1 413") and b'"error"' in answer and b"too large" in answer, answer[:300]
    assert sent < 8 * 2**20  # the server answered while the client was a few MB in, not after 100 MB
    assert list(Path(live["tmp"]).rglob("*")) == []  # never spooled to disk


def test_a_non_latin_or_quoted_file_name_round_trips(live):
    x = wav((0.1 * np.random.default_rng(2).standard_normal(8000)).astype(np.float32), 16000)
    for name in ("漢字.wav", 'a"b;c.wav'):
        r = httpx.post(live["url"] + "/api/denoise", files={"file": (name, x)}, timeout=60)
        assert r.status_code == 200, r.text
        cd = r.headers["content-disposition"]
        star = cd.split("filename*=UTF-8''", 1)[1]
        want = name.rsplit(".", 1)[0] + "-denoised.wav"
        assert unquote(star) in (want, want.replace('"', "%22"))  # httpx, as browsers, sends " as %22
        assert cd.count('"') == 2  # the ASCII fallback is one well-formed quoted string
    assert attachment("漢字.wav") == "attachment; filename=\"audio.wav\"; filename*=UTF-8''%E6%BC%A2%E5%AD%97.wav"
    assert attachment('a"b.wav').startswith('attachment; filename="a_b.wav"; ')


def test_foreign_hosts_and_cross_origin_posts_are_refused(live):
    url, x = live["url"], wav(np.zeros(1600, np.float32), 16000)
    r = httpx.post(url + "/api/denoise", files={"file": ("a.wav", x)},
                   headers={"Host": "evil.example", "Origin": "http://evil.example"})
    assert r.status_code == 403 and "host 'evil.example'" in r.json()["error"]
    r = httpx.post(url + "/api/denoise", files={"file": ("a.wav", x)}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    r = httpx.post(url + "/api/denoise", files={"file": ("a.wav", x)}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert httpx.get(url + "/api/health", headers={"Host": "rebind.example:80"}).status_code == 403
    own = f"http://127.0.0.1:{live['port']}"
    assert httpx.post(url + "/api/denoise", files={"file": ("a.wav", x)}, headers={"Origin": own}).status_code == 200
    assert httpx.get(url + "/api/health", headers={"Host": f"localhost:{live['port']}"}).status_code == 200
    assert host_allowed("[::1]:8000", frozenset()) and host_allowed("192.168.1.5", frozenset())
    assert host_allowed("box.lan:8000", frozenset({"box.lan"})) and not host_allowed("box.lan", frozenset())


def test_every_error_is_short_json(live):
    url = live["url"]
    r = httpx.post(url + "/api/denoise", content=b"--b\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json" and "error" in r.json()
    for r in (httpx.get(url + "/no/such/page"), httpx.put(url + "/api/denoise")):
        assert r.status_code in (404, 405) and r.headers["content-type"] == "application/json", r.text
    x = wav(np.zeros(1600, np.float32), 16000)
    r = httpx.post(url + "/api/denoise", files={"file": ("a.wav", x)}, data={"model": "m" * 60000})
    assert r.status_code == 400 and len(r.text) < 400  # the 60 KB value is not echoed back
    r = httpx.post(url + "/api/denoise", files={"file": ("a.wav", x)}, data={"model": "m" * (2**20 - 9000)})
    assert r.status_code == 413 and "larger than 64 KB" in r.json()["error"]


def test_a_client_that_goes_away_leaves_no_traceback(live):
    s = socket.create_connection(("127.0.0.1", live["port"]))
    s.sendall("POST /api/denoise HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
              "Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n".encode())
    s.close()
    time.sleep(0.5)
    assert httpx.get(live["url"] + "/api/health").status_code == 200
    live["proc"].terminate()
    _, err = live["proc"].communicate(timeout=20)
    assert "Traceback" not in err, err[-2000:]


@pytest.fixture()
def inproc(monkeypatch):
    """An in-process server with a 0.5-s header deadline and body timeout."""
    monkeypatch.setattr(guard, "HEADER_TIMEOUT", 0.5)
    cfg = ServerConfig(models={"fast": "fast"}, max_upload_mb=1, body_timeout=0.5)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning",
                                        http=guard.SlowHeadersH11))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield port
    srv.should_exit = True
    thread.join(timeout=10)


def test_slow_headers_and_stalled_bodies_time_out(inproc):
    s = socket.create_connection(("127.0.0.1", inproc))
    s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes its headers
    s.settimeout(5)
    t = time.perf_counter()
    assert s.recv(100) == b""  # closed by the server
    assert time.perf_counter() - t < 3
    s.close()
    s = socket.create_connection(("127.0.0.1", inproc))
    s.sendall(b"POST /api/denoise HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n"
              b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")  # then nothing
    answer = _read_answer(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"stalled" in answer


def test_the_result_cache_is_bounded_in_bytes():
    state = State(ServerConfig(models={"x": "x"}, results=100, results_mb=1.0))
    ids = [state.keep({"noisy.wav": b"\0" * 300_000}) for _ in range(10)]
    assert len(state.results) == 3 and list(state.results) == ids[-3:]
    json.dumps(list(state.results))
