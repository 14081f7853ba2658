"""digit-denoise serve: the HTTP API against a live server on a free 127.0.0.1 port, and the page in a
real headless Chromium (skipped, with the reason, when Chromium or its driver is absent)."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

uvicorn = pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed (test extra)")

from helpers import CHROMEDRIVER, CHROMIUM, NO_BROWSER, headless_chromium  # noqa: E402

from digit_denoise.serve.app import SAMPLES, ServerConfig, create_app  # noqa: E402

LIMIT_MB = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    cfg = ServerConfig(models={"fast": "fast", "gtcrn": "gtcrn"}, max_upload_mb=LIMIT_MB, workers=2, queue=4)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def wav(x: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def noisy_stereo(n: int = 9000, sr: int = 22050) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(n) / sr
    voice = 0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(np.pi * t / t[-1])
    return np.stack([voice + 0.05 * rng.standard_normal(n), 0.5 * voice + 0.05 * rng.standard_normal(n)], 1)


def test_round_trip_keeps_rate_channels_and_length(server):
    x = noisy_stereo()
    r = httpx.post(f"{server}/api/denoise", files={"file": ("a.wav", wav(x, 22050, "PCM_24"), "audio/wav")},
                   data={"model": "fast"}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert 'filename="a-denoised.wav"' in r.headers["content-disposition"]
    y, sr = sf.read(io.BytesIO(r.content), always_2d=True)
    info = sf.info(io.BytesIO(r.content))
    assert sr == 22050 and y.shape == x.shape and info.subtype == "PCM_24"
    assert np.abs(y).max() > 0.01  # not silence
    flac = io.BytesIO()
    sf.write(flac, x[:, 0], 22050, format="FLAC")
    r = httpx.post(f"{server}/api/denoise", files={"file": ("b.flac", flac.getvalue())}, timeout=60)  # default model
    assert r.status_code == 200 and sf.read(io.BytesIO(r.content))[0].shape == (x.shape[0],)


def test_atten_lim_field(server):
    """``atten_lim``: 0 gives the input back, ``none`` and the model's own denoise; a bad value is a 400 JSON error."""
    x = noisy_stereo()
    body = wav(x, 22050, "FLOAT")
    outs = {}
    for lim in ("0", "none", ""):
        r = httpx.post(f"{server}/api/denoise", files={"file": ("a.wav", body)}, data={"model": "fast", "atten_lim": lim},
                       timeout=60)
        assert r.status_code == 200, r.text
        outs[lim] = sf.read(io.BytesIO(r.content), always_2d=True)[0]
    np.testing.assert_allclose(outs["0"], x, atol=1e-6)
    np.testing.assert_allclose(outs["none"], outs[""], atol=1e-6)  # `fast` has no limit of its own
    assert not np.allclose(outs["none"], x, atol=1e-2)
    for bad in ("-3", "loud", "nan"):
        r = httpx.post(f"{server}/api/denoise", files={"file": ("a.wav", body)}, data={"atten_lim": bad}, timeout=60)
        assert r.status_code == 400 and "atten_lim" in r.json()["error"]
    r = httpx.post(f"{server}/api/playground", data={"sample": sorted(p.stem for p in SAMPLES.glob("*.flac"))[0],
                                                     "noise": "white", "snr": "0", "atten_lim": "0"}, timeout=60)
    assert r.status_code == 200 and abs(r.json()["metrics"]["si_sdr"] - r.json()["metrics"]["si_sdr_noisy"]) < 0.01


def test_models_health_and_samples(server):
    models = httpx.get(f"{server}/api/models", timeout=60).json()
    assert [m["name"] for m in models] == ["fast", "gtcrn"] and models[0]["default"] is True
    assert models[1]["sample_rate"] == 16000 and "GTCRN" in models[1]["summary"]
    h = httpx.get(f"{server}/api/health").json()
    assert h["status"] == "ok" and h["models"] == ["fast", "gtcrn"]
    assert sorted(httpx.get(f"{server}/api/samples").json()) == sorted(p.stem for p in SAMPLES.glob("*.flac"))
    page = httpx.get(server + "/")
    assert page.status_code == 200 and "<title>digit-denoise</title>" in page.text
    assert httpx.get(server + "/static/app.js").status_code == 200


def _post(server, files=None, data=None, path="/api/denoise", **kw):
    return httpx.post(server + path, files=files, data=data, timeout=60, **kw)


def test_bad_uploads_get_a_4xx_json_error_and_the_server_goes_on(server):
    good = wav(noisy_stereo(4000, 16000), 16000)
    nan = noisy_stereo(4000, 16000).astype(np.float32)
    nan[100, 0] = np.nan
    cases = [
        (dict(files={"file": ("e.wav", b"")}), 400, "empty"),
        (dict(files={"file": ("r.md", b"# not audio at all\n" * 50)}), 415, "not a readable audio file"),
        (dict(files={"file": ("t.wav", good[: len(good) // 2])}), 422, "truncated"),
        (dict(files={"file": ("n.wav", wav(nan, 16000, "FLOAT"))}), 422, "NaN"),
        (dict(files={"audio": ("a.wav", good)}), 400, "missing multipart field 'file'"),
        (dict(files={"file": ("a.wav", good)}, data={"model": "../../etc/passwd"}), 400, "unknown model"),
        (dict(files={"file": ("big.wav", b"\0" * int(1.2 * LIMIT_MB * 2**20))}), 413, "too large"),
        (dict(content=good, headers={"content-type": "audio/wav"}), 415, "multipart/form-data"),
        (dict(data={"sample": "/etc/passwd"}, path="/api/playground"), 400, "sample"),
        (dict(data={"sample": "nine-zero-three", "noise": "rain"}, path="/api/playground"), 400, "noise"),
        (dict(data={"sample": "nine-zero-three", "snr": "loud"}, path="/api/playground"), 400, "snr"),
    ]
    for kw, status, text in cases:
        r = _post(server, **kw)
        assert r.status_code == status, (kw.get("files") or kw.get("data"), r.text)
        msg = r.json()["error"]
        assert text in msg and "\n" not in msg and "Traceback" not in msg, msg
    assert httpx.get(f"{server}/api/result/{'0' * 32}/noisy.wav").status_code == 404
    assert httpx.get(f"{server}/api/result/..%2F..%2Fetc/noisy.wav").status_code == 404
    assert _post(server, files={"file": ("a.wav", good)}).status_code == 200  # still serving


def test_session_and_playground_give_audio_pictures_and_metrics(server):
    x = noisy_stereo(16000, 16000)
    s = _post(server, files={"file": ("a.wav", wav(x, 16000))}, path="/api/session").json()
    assert s["channels"] == 2 and s["sample_rate"] == 16000
    for key in ("noisy_wav", "denoised_wav", "noisy_png", "denoised_png"):
        r = httpx.get(server + s[key])
        assert r.status_code == 200 and len(r.content) > 1000
    assert httpx.get(server + s["denoised_png"]).content[:8] == b"\x89PNG\r\n\x1a\n"
    p = _post(server, data={"sample": "one-two-three-four", "noise": "white", "snr": "-5", "model": "fast"},
              path="/api/playground").json()
    m = p["metrics"]
    assert m["si_sdr_noisy"] == pytest.approx(-5, abs=0.5) and m["si_sdr"] > m["si_sdr_noisy"] + 3
    assert 0 < m["stoi"] <= 1 and 1 <= m["pesq"] <= 4.6


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_forty_concurrent_requests_are_all_answered_within_bounds(server):
    """2 workers + 4 waiting: the rest get 503 with Retry-After at once; nothing is lost or left open."""
    body = wav(noisy_stereo(16000, 16000), 16000)
    fds_before = len(os.listdir("/proc/self/fd"))
    rss_before = _rss_mb()

    async def burst():
        async with httpx.AsyncClient(timeout=120) as client:
            async def one(i):
                return await client.post(f"{server}/api/denoise", files={"file": (f"{i}.wav", body)})
            return await asyncio.gather(*(one(i) for i in range(40)))

    for _ in range(2):  # bounded: two bursts of 40
        answers = asyncio.run(burst())
        codes = [r.status_code for r in answers]
        assert len(codes) == 40 and set(codes) <= {200, 503}, codes
        assert codes.count(200) >= 6  # every worker and queue place did its job
        for r in answers:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "5" and "busy" in r.json()["error"]
            else:
                assert sf.info(io.BytesIO(r.content)).frames == 16000
    h = httpx.get(f"{server}/api/health").json()
    assert h["busy"] == 0 and h["waiting"] == 0
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 8  # no leaked temp files or sockets
    assert _rss_mb() - rss_before < 300


# ------------------------------------------------------------------------------- the browser
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=NO_BROWSER)
def test_the_page_in_headless_chromium(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium(tmp_path) as driver:
        driver.get(server + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 2)
        clip = tmp_path / "noisy.wav"
        sf.write(str(clip), noisy_stereo(16000, 16000), 16000, subtype="PCM_16")
        driver.find_element(By.ID, "file").send_keys(str(clip))
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: d.execute_script(
            "const a = document.getElementById('after-audio'), i = document.getElementById('after-spec');"
            "return a.src.includes('/api/result/') && a.readyState >= 1 && i.complete && i.naturalWidth > 0;"))
        assert "done:" in driver.find_element(By.ID, "status").text
        duration = driver.execute_script("return document.getElementById('after-audio').duration")
        assert duration == pytest.approx(1.0, abs=0.05)  # a playable source of the input's length
        href = driver.find_element(By.ID, "download").get_attribute("href")
        assert "/denoised.wav" in href
        shot = tmp_path / "page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10000
        # the playground on a shipped sample
        driver.find_element(By.ID, "snr").clear()
        driver.find_element(By.ID, "snr").send_keys("-5")
        driver.find_element(By.ID, "play").click()
        wait.until(lambda d: "denoised" in d.find_element(By.ID, "metrics").text)
        driver.save_screenshot(str(tmp_path / "playground.png"))
