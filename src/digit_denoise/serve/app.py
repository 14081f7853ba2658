"""The ASGI app of ``digit-denoise serve``: a page to hear and see denoising, and a small HTTP API.

Routes::

    GET  /                     the page (static files shipped in the package: no CDN, works offline)
    GET  /api/health           {"status": "ok", "models": [...], "busy": n, "waiting": n}
    GET  /api/models           [{"name", "summary", "sample_rate", "default"}]
    GET  /api/samples          ["seven-voice01", ...]  (short synthetic digits shipped in the package)
    POST /api/denoise          multipart `file` (+ `model`, `atten_lim`: dB or none): the denoised audio
                               as WAV, the input's rate, channel count and length
    POST /api/session          the same upload: JSON with links to noisy/denoised WAV and spectrograms
    POST /api/playground       `sample` (or `file`), `noise`, `snr` (+ `model`): mixes, denoises and
                               scores SI-SDR / PESQ / STOI of the noisy and denoised audio
    POST /api/voice            `file`: a recording of a voice → {"profile": ..., "warnings": [...]}
                               (/api/denoise and /api/session take `voice`: a profile or a recording)
    GET  /api/result/{id}/{part}   a stored session result (noisy.wav, denoised.wav, noisy.png, denoised.png)

Safe by default: the CLI binds 127.0.0.1; uploads are limited in size (413); at most ``workers``
requests compute at once and ``queue`` more wait, the rest get 503 with Retry-After; a bad upload
gets a 4xx JSON ``{"error": "..."}`` and the server goes on; uploads never touch the file system
beyond the multipart parser's own temporary files, which are closed (removed) after each request;
models are chosen by name from the server's own list, results by a random id from memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..checkpoint import load_model, read_meta, resolve
from ..data.manifest import manifest_paths
from ..data.noise import BUILTIN_KINDS, babble, clip_rng, mix_at_snr, noise_signal
from ..enhance import Denoiser, parse_atten_lim
from ..errors import UserError
from ..metrics import clip_metrics
from ..pretrained import available
from ..runtime import release_memory
from ..voice.profile import MAX_PROFILE_BYTES, VoiceProfile, enroll, profile_from_json
from .guard import HostOriginGuard
from .media import BadRequest, attachment, read_upload, spectrogram_png, wav_bytes
from .upload import FormError, read_form

STATIC = Path(__file__).resolve().parent / "static"
SAMPLES = Path(__file__).resolve().parent / "samples"
NOISES = BUILTIN_KINDS  # what the playground mixes
PLAYGROUND_SECONDS = 30.0  # a playground upload is a sample digit, not a recording
VOICE_SECONDS = 60.0  # a voice sample is a few spoken words
LOG = logging.getLogger("digit_denoise.serve")
RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
PARTS = {"noisy.wav": "audio/wav", "denoised.wav": "audio/wav", "noisy.png": "image/png",
         "denoised.png": "image/png"}


@dataclass
class Upload:
    """What a request sent: its plain fields, the audio file, and the voice (file name, bytes) if any."""

    fields: dict
    data: bytes
    name: str
    voice: tuple[str, bytes] | None = None


@dataclass
class ServerConfig:
    models: dict[str, str]  # name → model path or packaged name; the first is the default
    max_upload_mb: float = 50.0  # larger uploads get 413 (counted while the body arrives)
    max_seconds: float = 300.0  # longest audio a request may hold: duration × channels, at up to 48 kHz
    workers: int = 2  # requests computing at once
    queue: int = 8  # requests waiting for a worker; beyond that 503 with Retry-After
    results: int = 32  # session results kept in memory (oldest dropped first) ...
    results_mb: float = 256.0  # ... and at most this many MB of them
    allowed_hosts: tuple[str, ...] = ()  # Host names answered besides IP literals and localhost
    body_timeout: float = 30.0  # seconds the upload may stall between two chunks (408 after)


@dataclass
class State:
    cfg: ServerConfig
    denoisers: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: OrderedDict = field(default_factory=OrderedDict)
    busy: int = 0
    waiting: int = 0
    slots: asyncio.Semaphore | None = None

    def denoiser(self, name: str):
        """The loaded model called ``name`` (loaded once, on first use)."""
        if name not in self.cfg.models:
            raise BadRequest(400, f"unknown model {name[:40]!r}; choose one of {', '.join(self.cfg.models)}")
        with self.lock:
            if name not in self.denoisers:
                self.denoisers[name] = Denoiser.from_checkpoint(self.cfg.models[name])
            return self.denoisers[name]

    def keep(self, parts: dict[str, bytes]) -> str:
        """Store a result under a new random id; the oldest go first beyond ``results`` or ``results_mb``."""
        rid = secrets.token_hex(16)
        limit = int(self.cfg.results_mb * 2**20)
        with self.lock:
            self.results[rid] = parts
            while len(self.results) > 1 and (len(self.results) > self.cfg.results or sum(
                    len(b) for r in self.results.values() for b in r.values()) > limit):
                self.results.popitem(last=False)
        return rid


def denoise_array(state: State, model: str, x: np.ndarray, rate: int, voice: VoiceProfile | None = None,
                  atten_lim: float | None = None) -> np.ndarray:
    y = state.denoiser(model).enhance(x, rate, voice=voice, atten_lim_db=atten_lim)
    return np.asarray(y, np.float32).reshape(x.shape)


def atten_lim_of(fields: dict) -> float | None:
    """The ``atten_lim`` field: dB ≥ 0 or ``none``; absent or empty: the model's own."""
    try:
        return parse_atten_lim(fields.get("atten_lim") or None, "atten_lim")
    except UserError as e:
        raise BadRequest(400, str(e)) from None


def voice_of(upload: tuple[str, bytes] | None, max_seconds: float) -> VoiceProfile | None:
    """The ``voice`` field: a profile (JSON from ``voice enroll``) or a recording of the voice (enrolled here)."""
    if upload is None:
        return None
    name, data = upload
    if data.lstrip()[:1] == b"{":
        if len(data) > MAX_PROFILE_BYTES:
            raise BadRequest(413, f"{name}: too large for a voice profile")
        try:
            return profile_from_json(json.loads(data), name)
        except (ValueError, RecursionError):
            raise BadRequest(400, f"{name}: not a voice profile (not JSON)") from None
    x, rate, _ = read_upload(data, name, min(max_seconds, VOICE_SECONDS))
    return enroll([(x, rate, name)])


def personalised(path: str) -> bool:
    """Whether the model at ``path`` (a shipped name or a file) takes a voice profile (its JSON says)."""
    _, js = resolve(path)
    return int((read_meta(js).get("config") or {}).get("voice") or 0) > 0


def session_parts(noisy: np.ndarray, clean: np.ndarray, rate: int, subtype: str) -> dict[str, bytes]:
    return {"noisy.wav": wav_bytes(noisy, rate, subtype), "denoised.wav": wav_bytes(clean, rate, subtype),
            "noisy.png": spectrogram_png(noisy, rate, "before"), "denoised.png": spectrogram_png(clean, rate, "after")}


def playground(state: State, model: str, clean: np.ndarray, rate: int, noise: str, snr: float, seed: int,
               atten_lim: float | None = None) -> dict:
    """Mix ``clean`` (mono) with ``noise`` at ``snr``, denoise, score; returns parts and metrics."""
    rng = clip_rng(seed, "playground", noise, snr)
    if noise in ("babble", "talker"):  # other voices: the shipped samples (one for a talker), looped
        others = [read_upload(p.read_bytes(), p.name)[0][0] for p in sorted(SAMPLES.glob("*.flac"))]
        n = babble(others[:1] if noise == "talker" else others, clean.size, rng)
    else:
        n = noise_signal(noise, clean.size, rng, sr=rate)
    noisy, _ = mix_at_snr(clean, n, snr)
    enhanced = denoise_array(state, model, noisy[None], rate, atten_lim=atten_lim)[0]
    m = clip_metrics(clean, noisy, enhanced, rate)
    metrics = {k: (None if v is None or not np.isfinite(v) else round(float(v), 3)) for k, v in m.items()}
    return {"parts": session_parts(noisy[None], enhanced[None], rate, "FLOAT"), "metrics": metrics}


# ------------------------------------------------------------------------------------- app
class Api:
    """The routes of one server: its config, its state (models, results, worker slots) and the handlers."""

    def __init__(self, cfg: ServerConfig):
        if not cfg.models:
            raise UserError("serve: give at least one model")
        self.cfg = cfg
        self.state = State(cfg, slots=asyncio.Semaphore(cfg.workers))  # binds to the serving loop on first use
        self.limit = int(cfg.max_upload_mb * 1024 * 1024)

    async def form_of(self, request, need_file: bool = True) -> Upload:
        """The form of a request within every limit (see :mod:`.upload`): fields, the audio, the voice."""
        try:
            form = await read_form(request, self.limit, urlencoded=not need_file, body_timeout=self.cfg.body_timeout,
                                   file_fields=("file", "voice"))
        except FormError as e:
            raise BadRequest(e.status, str(e)) from None
        voice = form.files.get("voice")
        if voice is not None:
            voice = ((Path(voice[0]).name or "voice")[:80], voice[1])
        elif form.fields.get("voice"):  # a profile pasted as text
            voice = ("voice", form.fields["voice"].encode())
        if "file" not in form.files:
            if need_file:
                raise BadRequest(400, "missing multipart field 'file' (the audio to denoise)")
            return Upload(form.fields, b"", "", voice)
        filename, data = form.files["file"]
        return Upload(form.fields, data, (Path(filename).name or "upload")[:80], voice)

    async def compute(self, fn, *args):
        """Run ``fn`` in a worker thread: at most ``workers`` at once, ``queue`` waiting, else 503."""
        if self.state.busy >= self.cfg.workers and self.state.waiting >= self.cfg.queue:
            raise BadRequest(503, "busy: every worker is taken and the queue is full; retry in a few seconds")
        self.state.waiting += 1
        try:
            await self.state.slots.acquire()
        finally:
            self.state.waiting -= 1
        self.state.busy += 1
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            self.state.busy -= 1
            self.state.slots.release()
            if self.state.busy == 0:
                release_memory()  # freed arenas back to the system once no request computes

    async def index(self, request):
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def health(self, request):
        return JSONResponse({"status": "ok", "models": list(self.cfg.models), "busy": self.state.busy,
                             "waiting": self.state.waiting})

    async def models(self, request):
        out = []
        for i, name in enumerate(self.cfg.models):
            info = await run_in_threadpool(_model_info, self.cfg.models[name])
            out.append({"name": name, "default": i == 0, "personalised": personalised(self.cfg.models[name]), **info})
        return JSONResponse(out)

    async def samples(self, request):
        return JSONResponse([p.stem for p in sorted(SAMPLES.glob("*.flac"))])

    def model_name(self, fields: dict, voice: bool = False) -> str:
        """The model asked for; with a voice and none asked for, the first personalised one of the list."""
        name = fields.get("model")
        if not name and voice:
            name = next((n for n in self.cfg.models if personalised(self.cfg.models[n])), None)
            if name is None:
                raise BadRequest(400, "a voice was given, but this server offers no personalised model")
        name = name or next(iter(self.cfg.models))
        if name not in self.cfg.models:
            raise BadRequest(400, f"unknown model {name[:40]!r}; choose one of {', '.join(self.cfg.models)}")
        return name

    async def denoise(self, request):
        up = await self.form_of(request)
        fields, data, name = up.fields, up.data, up.name
        model, lim = self.model_name(fields, up.voice is not None), atten_lim_of(fields)
        x, rate, subtype = read_upload(data, name, self.cfg.max_seconds)
        voice = await self.compute(voice_of, up.voice, self.cfg.max_seconds) if up.voice else None
        y = await self.compute(denoise_array, self.state, model, x, rate, voice, lim)
        body = await run_in_threadpool(wav_bytes, y, rate, subtype)
        stem = (Path(name).stem or "audio")[:60]
        return Response(body, media_type="audio/wav", headers={"Content-Disposition": attachment(f"{stem}-denoised.wav")})

    async def session(self, request):
        up = await self.form_of(request)
        fields, data, name = up.fields, up.data, up.name
        model, lim = self.model_name(fields, up.voice is not None), atten_lim_of(fields)
        x, rate, subtype = read_upload(data, name, self.cfg.max_seconds)

        def work():
            y = denoise_array(self.state, model, x, rate, voice_of(up.voice, self.cfg.max_seconds), lim)
            return session_parts(x, y, rate, subtype)

        rid = self.state.keep(await self.compute(work))
        return JSONResponse({"id": rid, "model": model, "sample_rate": rate, "channels": int(x.shape[0]),
                             "seconds": round(x.shape[1] / rate, 3), "name": name,
                             **{k.replace(".", "_"): f"/api/result/{rid}/{k}" for k in PARTS}})

    async def voice(self, request):
        """A profile from a recording of a voice (field ``file``): the JSON to keep and send as ``voice``."""
        up = await self.form_of(request)
        profile = await self.compute(voice_of, ((up.name or "voice"), up.data), self.cfg.max_seconds)
        return JSONResponse({"profile": profile.to_json(), "warnings": profile.warnings,
                             "speech_seconds": round(profile.speech_seconds, 2)})

    async def play(self, request):
        up = await self.form_of(request, need_file=False)
        fields, data, name = up.fields, up.data, up.name
        model, lim = self.model_name(fields), atten_lim_of(fields)
        noise = fields.get("noise", "white")
        if noise not in NOISES:
            raise BadRequest(400, f"noise {noise[:40]!r}: choose one of {', '.join(NOISES)}")
        try:
            snr = float(fields.get("snr", "0"))
        except ValueError:
            snr = float("nan")
        if not -30 <= snr <= 40:
            raise BadRequest(400, f"snr {str(fields.get('snr'))[:40]!r}: give a number of dB between -30 and 40")
        if data:
            x, rate, _ = read_upload(data, name, min(self.cfg.max_seconds, PLAYGROUND_SECONDS))
        else:
            sample = fields.get("sample", "")
            known = {p.stem: p for p in SAMPLES.glob("*.flac")}
            if sample not in known:  # a name from our own list, never a path
                raise BadRequest(400, f"sample {sample[:40]!r}: choose one of {', '.join(sorted(known))} or upload a file")
            x, rate, _ = read_upload(known[sample].read_bytes(), sample)
        out = await self.compute(playground, self.state, model, x.mean(0), rate, noise, snr, 0, lim)
        rid = self.state.keep(out["parts"])
        return JSONResponse({"id": rid, "model": model, "noise": noise, "snr": snr, "metrics": out["metrics"],
                             **{k.replace(".", "_"): f"/api/result/{rid}/{k}" for k in PARTS}})

    async def result(self, request):
        rid, part = request.path_params["rid"], request.path_params["part"]
        if not RESULT_ID.match(rid) or part not in PARTS:
            raise BadRequest(404, "no such result")
        with self.state.lock:
            parts = self.state.results.get(rid)
        if parts is None:
            raise BadRequest(404, "result expired or unknown; denoise the file again")
        return Response(parts[part], media_type=PARTS[part])


def handled(endpoint):
    """A route whose client mistakes (:class:`BadRequest`, :class:`UserError`) become 4xx/503 JSON errors; a
    client that went away ends its request quietly; anything else is a 500 JSON error and one log line."""
    async def wrapper(request):
        try:
            return await endpoint(request)
        except BadRequest as e:
            headers = {"Retry-After": "5"} if e.status == 503 else None
            return JSONResponse({"error": str(e)}, status_code=e.status, headers=headers)
        except UserError as e:
            return JSONResponse({"error": str(e)}, status_code=422)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening: no traceback, no log
        except Exception as e:  # a bug of ours: the client gets JSON, the log one line
            LOG.error("%s %s: %s: %s", request.method, request.url.path, type(e).__name__, str(e)[:200])
            return JSONResponse({"error": "internal error; the server goes on"}, status_code=500)
    return wrapper


async def _http_error(request, exc: HTTPException):
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


def create_app(cfg: ServerConfig):
    """The Starlette app for ``cfg`` (models are loaded on first use), behind the Host/Origin guard."""
    api = Api(cfg)
    routes = [Route("/", api.index), Route("/api/health", handled(api.health)), Route("/api/models", handled(api.models)),
              Route("/api/samples", handled(api.samples)),
              Route("/api/denoise", handled(api.denoise), methods=["POST"]),
              Route("/api/session", handled(api.session), methods=["POST"]),
              Route("/api/playground", handled(api.play), methods=["POST"]),
              Route("/api/voice", handled(api.voice), methods=["POST"]),
              Route("/api/result/{rid}/{part}", handled(api.result)),
              Mount("/static", StaticFiles(directory=str(STATIC)), name="static")]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.server = api.state
    return HostOriginGuard(app, cfg.allowed_hosts)


def _model_info(path: str) -> dict:
    model, meta = load_model(path)
    return {"summary": model.summary(), "sample_rate": int(meta["sample_rate"]),
            "trained_on": meta.get("trained_on") or ", ".join(
                Path(m).stem for m in manifest_paths((meta.get("training") or {}).get("manifest") or ""))}


def default_models(extra: list[str]) -> dict[str, str]:
    """The shipped models (default first) plus run folders / model files given on the command line."""
    models = {name: name for name in available()}
    for spec in extra:
        path = Path(spec).expanduser()
        if not path.exists():
            raise UserError(f"--model {spec}: not found; give a run folder, checkpoint folder or .safetensors file")
        name, k = (path.name if path.is_dir() else path.stem), 2
        base = name
        while name in models:
            name, k = f"{base}-{k}", k + 1
        models[name] = str(path.resolve())
    return models

