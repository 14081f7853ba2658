"""Voice profiles and personalised models: enrolment (its checks and file), the speaker encoder against
librosa's mel, Denoiser / CLI / ONNX with a voice, and training enrolments that never use the target clip."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import CHROMEDRIVER, CHROMIUM, NO_BROWSER, headless_chromium
from model_files import save_wave_model

from digit_denoise import Denoiser
from digit_denoise.audio import resample
from digit_denoise.cli import main
from digit_denoise.data.voices import Enrolments, enrollable, known_speaker
from digit_denoise.errors import UserError
from digit_denoise.models.speaker import SpeakerEncoder
from digit_denoise.voice import profile as vp
from digit_denoise.voice.encoder import speaker_encoder, speech
from digit_denoise.voice.profile import VoiceProfile, enroll, enroll_files, load_profile, load_voice

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
needs_fsdd = pytest.mark.skipif(not FSDD.is_dir(), reason="the Free Spoken Digit Dataset is not in ../shared")


def takes(speaker: str, n: int) -> list[str]:
    return sorted(glob.glob(str(FSDD / f"*_{speaker}_*.wav")))[:n]


@pytest.fixture(scope="module")
def personal(tmp_path_factory) -> Path:
    """A tiny personalised MaskNet whose FiLM is not zero, so the voice changes the output."""
    folder = save_wave_model(tmp_path_factory.mktemp("m") / "personal", config={"voice": 256}, seed=3)
    from digit_denoise import checkpoint as ck

    model, meta = ck.load_model(folder)
    with torch.no_grad():
        model.film.weight.normal_(0, 0.5)
    ck.save_checkpoint(folder, model, meta)
    return folder


def fake_profile(seed: int) -> VoiceProfile:
    e = np.abs(np.random.default_rng(seed).standard_normal(256)).astype(np.float32)
    return VoiceProfile(e / np.linalg.norm(e), 3.0, 1, 1.0)


@needs_fsdd
def test_the_encoder_hears_what_librosa_computes_and_tells_voices_apart():
    librosa = pytest.importorskip("librosa")
    x, sr = sf.read(takes("jackson", 1)[0], dtype="float32")
    w = resample(x, sr, 16000)
    ref = librosa.feature.melspectrogram(y=w, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    ours = speaker_encoder().mel(torch.from_numpy(w)).numpy()
    assert np.abs(ours - ref).max() <= 1e-5 * ref.max()
    a1, a2 = enroll_files(takes("jackson", 8)[:4]), enroll_files(takes("jackson", 8)[4:])
    b = enroll_files(takes("theo", 4))
    same, other = vp.similarity(a1.embedding, a2.embedding), vp.similarity(a1.embedding, b.embedding)
    assert same > 0.8 and other < same - 0.1, (same, other)


@needs_fsdd
def test_a_profile_file_round_trips_and_damaged_ones_are_refused(tmp_path):
    p = enroll_files(takes("theo", 6))
    assert p.recordings == 6 and p.speech_seconds > 2 and p.consistency > 0.75
    assert len(p.warnings) == 1 and "sampled under 16 kHz" in p.warnings[0]  # FSDD: 8 kHz
    path = p.save(tmp_path / "me.voice")
    back = load_profile(path)
    assert np.allclose(back.embedding, p.embedding, atol=1e-6) and back.recordings == 6
    assert np.allclose(load_voice(str(path)).embedding, p.embedding, atol=1e-6)
    with pytest.raises(UserError, match="already exists"):
        p.save(path)
    data = json.loads(path.read_text())
    bad = {"garbage.voice": "{not json", "format.voice": json.dumps({**data, "format": "x"}),
           "short.voice": json.dumps({**data, "embedding": data["embedding"][:255]}),
           "nan.voice": json.dumps({**data, "embedding": [float("nan")] * 256}).replace("NaN", "1e999"),
           "zero.voice": json.dumps({**data, "embedding": [0.0] * 256}),
           "huge.voice": json.dumps({**data, "pad": "x" * 100_000})}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError) as e:
            load_profile(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)


def test_enrolment_checks_speech_and_agreement(monkeypatch):
    e1, e2 = np.zeros(256, np.float32), np.zeros(256, np.float32)
    e1[0] = e2[1] = 1.0
    said = iter([(e1, 1.5), (e2, 1.0)])
    monkeypatch.setattr(vp, "embed", lambda x, sr: next(said))
    p = enroll([(np.ones(8000), 16000, "a.wav"), (np.ones(8000), 16000, "b.wav")])
    assert p.speech_seconds == 2.5 and p.consistency == 0.0
    assert len(p.warnings) == 1 and "a.wav may be another voice (similarity 0.00" in p.warnings[0]
    monkeypatch.setattr(vp, "embed", lambda x, sr: (e1, 0.6))
    with pytest.raises(UserError, match="only 0.6 s of speech"):
        enroll([(np.ones(8000), 16000, "a.wav")])
    monkeypatch.setattr(vp, "embed", lambda x, sr: (e1, 1.4))
    assert "only 1.4 s of speech" in enroll([(np.ones(8000), 16000, "a.wav")]).warnings[0]


def test_silence_has_no_speech():
    assert speech(np.zeros(32000, np.float32), 16000)[1] == 0.0
    with pytest.raises(UserError, match="no speech"):
        enroll([(np.zeros(32000, np.float32), 16000, "quiet.wav")])


@needs_fsdd
def test_voice_enroll_command(tmp_path, capsys):
    out = tmp_path / "me.voice"
    assert main(["voice", "enroll", *takes("george", 5), "-o", str(out)]) == 0
    said = capsys.readouterr()
    assert "voice profile of 5 recording(s)" in said.out and load_profile(out).recordings == 5
    assert "(8000 Hz) and others: sampled under 16 kHz" in said.err  # FSDD is 8 kHz: voices alike to the encoder
    assert main(["voice", "enroll", *takes("george", 1), "-o", str(out)]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    short = tmp_path / "short.wav"
    x, sr = sf.read(takes("george", 1)[0], dtype="float32")
    sf.write(str(short), x[: sr // 4], sr)
    assert main(["voice", "enroll", str(short), "-o", str(tmp_path / "s.voice")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s of speech" in err[0] and not (tmp_path / "s.voice").exists()
    (tmp_path / "x.txt").write_text("hello")
    assert main(["voice", "enroll", str(tmp_path / "x.txt"), "-o", str(tmp_path / "t.voice")]) == 2


def test_a_personalised_model_follows_the_voice_it_is_given(personal, tmp_path):
    den = Denoiser.from_checkpoint(personal)
    x = (0.1 * np.random.default_rng(0).standard_normal((2, 20000))).astype(np.float32)
    a, b = fake_profile(1), fake_profile(2)
    ya, yb = den.enhance(x, 22050, voice=a), den.enhance(x, 22050, voice=b)
    assert ya.shape == x.shape and np.isfinite(ya).all() and np.abs(ya - yb).max() > 1e-4
    np.testing.assert_allclose(den.enhance(x, 22050, voice=a), ya, atol=1e-6)
    blocks = list(den.stream(iter([x[:, :7000], x[:, 7000:]]), 22050, voice=a))
    np.testing.assert_allclose(np.concatenate(blocks, 1), ya, atol=1e-5)
    with pytest.raises(UserError, match="personalised: give a voice profile"):
        den.enhance(x, 22050)
    fixed = Denoiser.from_checkpoint(personal, voice=a)  # a voice of the Denoiser's own
    np.testing.assert_allclose(fixed.enhance(x, 22050), ya, atol=1e-6)
    blind = Denoiser.from_checkpoint(save_wave_model(tmp_path / "blind"))
    with pytest.raises(UserError, match="not personalised"):
        blind.enhance(x, 22050, voice=a)


def test_denoise_with_a_voice_from_the_command_line(personal, tmp_path, capsys):
    src = tmp_path / "in.wav"
    sf.write(str(src), (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 8000)
    profile = fake_profile(4).save(tmp_path / "me.voice")
    assert main(["denoise", str(src), "-o", str(tmp_path / "out.wav"), "--model", str(personal), "--voice",
                 str(profile)]) == 0
    assert sf.info(str(tmp_path / "out.wav")).frames == 8000
    assert main(["denoise", str(src), "-o", str(tmp_path / "o2.wav"), "--model", str(personal)]) == 2
    assert "personalised: give a voice profile" in capsys.readouterr().err
    blind = save_wave_model(tmp_path / "blind")
    assert main(["denoise", str(src), "-o", str(tmp_path / "o3.wav"), "--model", str(blind), "--voice",
                 str(profile)]) == 2
    assert "not personalised" in capsys.readouterr().err
    (tmp_path / "me.m4a").write_bytes(b"\x00\x00\x00 ftypM4A ")  # AAC: libsndfile does not read it
    assert main(["denoise", str(src), "-o", str(tmp_path / "o4.wav"), "--model", str(personal), "--voice",
                 str(tmp_path / "me.m4a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "me.m4a: neither a voice profile (not JSON) nor audio of a format read here" in err[0]


SPEECH = FSDD.parents[1] / "speech16k" / "speechcommands"
# three test speakers of the project's speech16k split (data prepare, seed 0): the shipped models never heard them
TEST_SPEAKERS = ("b97c9f77", "37dca74f", "aa80f517")


@pytest.mark.skipif(not SPEECH.is_dir(), reason="speech16k is not in ../shared")
def test_the_shipped_personalised_model_keeps_the_enrolled_voice_of_unseen_speakers(tmp_path, capsys):
    """One word of each unseen speaker mixed at 0 dB with the next one's: with the target's profile (seven
    other words) `denoise --voice` (no --model: the shipped `voice`) beats the blind default by a wide margin,
    and with the interferer's profile it keeps the interferer instead. (Measured at release: own 4.5 dB,
    blind -0.1, the other's profile -4.6; on FSDD's 8 kHz test speakers it does not help: docs/status.md.)"""
    words = {s: sorted(SPEECH.glob(f"*/{s}_nohash_*.flac")) for s in TEST_SPEAKERS}

    def score(y, t):
        a = np.dot(y, t) / np.dot(t, t) * t
        return 10 * np.log10(np.sum(a ** 2) / np.sum((y - a) ** 2))

    for s in TEST_SPEAKERS:
        assert main(["voice", "enroll", *map(str, words[s][1:8]), "-o", str(tmp_path / f"{s}.voice")]) == 0
        assert "warning" not in capsys.readouterr().err
    blind, own, other = [], [], []
    for k, s in enumerate(TEST_SPEAKERS):
        o_s = TEST_SPEAKERS[(k + 1) % 3]
        t = sf.read(str(words[s][0]), dtype="float64")[0]
        o = np.resize(sf.read(str(words[o_s][0]), dtype="float64")[0], len(t))
        src = tmp_path / f"mix{k}.wav"
        sf.write(str(src), t + o * np.sqrt(np.mean(t ** 2) / np.mean(o ** 2)), 16000, subtype="FLOAT")
        for who, got in ((s, own), (o_s, other)):
            out = tmp_path / f"out{k}-{who}.wav"
            assert main(["denoise", str(src), "-o", str(out), "--voice", str(tmp_path / f"{who}.voice")]) == 0
            got.append(score(sf.read(str(out), dtype="float64")[0], t))
        blind.append(score(Denoiser.default().enhance(sf.read(str(src), dtype="float32")[0], 16000), t))
    assert np.mean(own) > np.mean(blind) + 3.0 and np.mean(own) > np.mean(other) + 3.0, (own, blind, other)


def test_a_personalised_model_exports_with_the_voice_as_a_second_input(personal, tmp_path):
    pytest.importorskip("onnxruntime")
    from digit_denoise.export import export_onnx

    s = export_onnx(str(personal), tmp_path / "p.onnx")
    assert s["max_abs_diff"] is not None and s["max_abs_diff"] < 1e-4
    assert "voice [batch, 256]" in s["input"]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["noisy", "voice"]


def test_training_enrolments_never_use_the_target_clip():
    speakers = ["a", "a", "a", "b", "b", "c"]
    emb = np.eye(6, 256, dtype=np.float32)  # clip i's embedding is the unit vector i
    enr = Enrolments(emb, speakers)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        e = enr.enrol(torch.tensor([0, 1, 2, 3, 4]), gen)
        assert torch.allclose(e.norm(dim=1), torch.ones(5))
        for i in range(5):  # no weight on the clip itself, only on other clips of its speaker
            assert float(e[i, i]) == 0.0
            same = [j for j, s in enumerate(speakers) if s == speakers[i] and j != i]
            assert float(e[i, same].sum()) > 0 and float(e[i, [j for j in range(6) if j not in same]].sum()) == 0
    with pytest.raises(ValueError, match="no other clip"):
        enr.enrol(torch.tensor([5]), gen)
    assert not known_speaker("wakewords/unlabelled") and known_speaker("0:jackson")

    class R:  # rows: only speakers with two or more clips can be enrolled
        def __init__(self, s):
            self.speaker = s
    assert [r.speaker for r in enrollable([R("a"), R("a"), R("c"), R("wakewords/unlabelled"),
                                           R("wakewords/unlabelled")])] == ["a", "a"]


def test_a_blind_model_s_weights_start_a_personalised_one_with_the_same_outputs():
    from digit_denoise.models import build_model

    blind = build_model("masknet", {"channels": 8, "dilations": [1, 2]})
    pers = build_model("masknet", {"channels": 8, "dilations": [1, 2], "voice": 256})
    pers.load_state_dict(pers.adapt_state(blind.state_dict()), strict=True)
    x = torch.randn(1, 4000)
    v = torch.nn.functional.normalize(torch.rand(1, 256), dim=1)
    with torch.no_grad():
        assert torch.allclose(pers(x, v), blind(x), atol=1e-6)
    assert SpeakerEncoder.partials(16000)[0] == (0, 160)


def test_compare_gives_each_clip_its_speaker_s_profile_and_the_failure_case(personal, tmp_path, monkeypatch):
    """Personalised conditions: a competing talker; the model with the clip's speaker's profile (made of other
    clips of that speaker) and, as ``@other``, with another speaker's."""
    from helpers import make_manifest

    from digit_denoise.compare.core import compare
    from digit_denoise.compare.methods import Enroller
    from digit_denoise.data.manifest import load_manifest, select

    monkeypatch.setenv("DIGIT_DENOISE_QUIET", "1")
    manifest = make_manifest(tmp_path / "d", test_speakers="2")
    s = compare(str(manifest), tmp_path / "rep", methods=f"noisy,{personal},{personal}@other", noise="talker,white",
                snr="0", limit=4, examples=0, workers=1, enroll=2)
    names = [m["name"] for m in s["methods"]]
    assert names == ["noisy", "personal", "personal@other"] and s["enroll"]["clips_per_profile"] == 2
    assert {c["name"] for c in s["conditions"]} == {"talker@0dB", "white@0dB"}
    mine = {r["id"]: r["si_sdr"] for r in s["rows"] if r["method"] == "personal" and r["condition"] == "talker@0dB"}
    wrong = {r["id"]: r["si_sdr"] for r in s["rows"] if r["method"] == "personal@other" and r["condition"] == "talker@0dB"}
    assert mine.keys() == wrong.keys() and any(abs(mine[k] - wrong[k]) > 1e-3 for k in mine)
    rows = select(load_manifest(manifest), "test")
    enr = Enroller(rows, n=2, seed=0)
    target = rows[0]
    own = enr._pick([o for o in enr.by_speaker[(target.split, target.speaker)] if o.id != target.id], target.id)
    assert len(own) == 2 and all(o.id != target.id and o.speaker == target.speaker for o in own)
    with pytest.raises(UserError, match="only a personalised model"):
        compare(str(manifest), tmp_path / "r2", methods=f"noisy,{save_wave_model(tmp_path / 'blind')}@other",
                noise="white", snr="0", limit=2, examples=0, workers=1)


# ------------------------------------------------------------------------------ serve: API and page
@pytest.fixture(scope="module")
def voice_server(personal):
    uvicorn = pytest.importorskip("uvicorn")
    import socket
    import threading
    import time

    from digit_denoise.serve.app import ServerConfig, create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = ServerConfig(models={"fast": "fast", "personal": str(personal)}, max_upload_mb=5)
    srv = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _wav_bytes(x: np.ndarray, sr: int) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@needs_fsdd
def test_the_api_takes_a_voice_as_a_profile_or_a_recording(voice_server):
    httpx = pytest.importorskip("httpx")
    voice_audio = np.concatenate([sf.read(f, dtype="float32")[0] for f in takes("lucas", 6)])
    noisy = _wav_bytes((0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 8000)
    r = httpx.post(voice_server + "/api/voice", files={"file": ("me.wav", _wav_bytes(voice_audio, 8000))}, timeout=60)
    assert r.status_code == 200 and r.json()["speech_seconds"] > 2
    profile = json.dumps(r.json()["profile"]).encode()
    models = {m["name"]: m["personalised"] for m in httpx.get(voice_server + "/api/models", timeout=60).json()}
    assert models == {"fast": False, "personal": True}
    for voice in (("me.voice", profile), ("me.wav", _wav_bytes(voice_audio, 8000))):
        r = httpx.post(voice_server + "/api/denoise", files={"file": ("n.wav", noisy), "voice": voice}, timeout=60)
        assert r.status_code == 200, r.text  # no model named: the personalised one is chosen
        assert sf.info(__import__("io").BytesIO(r.content)).frames == 8000
    bad = [({"file": ("n.wav", noisy)}, {"model": "personal"}, 422, "personalised: give a voice profile"),
           ({"file": ("n.wav", noisy), "voice": ("me.voice", profile)}, {"model": "fast"}, 422, "not personalised"),
           ({"file": ("n.wav", noisy), "voice": ("v.voice", b"{nope")}, {}, 400, "not a voice profile"),
           ({"file": ("n.wav", noisy), "voice": ("q.wav", _wav_bytes(np.zeros(16000, np.float32), 16000))}, {}, 422,
            "no speech")]
    for files, data, status, words in bad:
        r = httpx.post(voice_server + "/api/denoise", files=files, data=data, timeout=60)
        assert r.status_code == status and words in r.json()["error"], r.text


@needs_fsdd
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=NO_BROWSER)
def test_the_page_enrols_a_voice_and_denoises_with_it(voice_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium(tmp_path, 1600) as driver:
        driver.get(voice_server + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 2)
        me = tmp_path / "me.wav"
        sf.write(str(me), np.concatenate([sf.read(f, dtype="float32")[0] for f in takes("lucas", 6)]), 8000)
        driver.find_element(By.ID, "voice-file").send_keys(str(me))
        driver.find_element(By.ID, "voice-go").click()
        wait.until(lambda d: "using this voice" in d.find_element(By.ID, "voice-status").text)
        noisy = tmp_path / "noisy.wav"
        sf.write(str(noisy), (0.1 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32), 16000)
        driver.find_element(By.ID, "file").send_keys(str(noisy))
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: "done:" in d.find_element(By.ID, "status").text or "error" in
                   (d.find_element(By.ID, "status").get_attribute("class") or ""))
        status = driver.find_element(By.ID, "status").text
        assert "done:" in status and "model personal" in status, status  # switched to the personalised model
        driver.save_screenshot(str(tmp_path / "voice-page.png"))
        driver.find_element(By.ID, "voice-clear").click()
        assert "blind" in driver.find_element(By.ID, "voice-status").text
