"""``digit-denoise serve``: a local web page and HTTP API to hear, see and download denoised audio.

The app is in :mod:`.app` (Starlette); :func:`serve` runs it with uvicorn. Static assets and three
short synthetic sample digits ship in the package, so the page works offline. Starlette, uvicorn and
python-multipart are the optional extra ``[serve]``.
"""

from __future__ import annotations

import socket

from ..errors import UserError

try:
    import uvicorn

    from .app import ServerConfig, create_app, default_models
    from .guard import SlowHeadersH11
except ImportError:  # the [serve] extra is not installed: serve() says so
    uvicorn = None

def serve(host: str = "127.0.0.1", port: int = 8000, models: list[str] | None = None, workers: int = 2,
          queue: int = 8, max_upload_mb: float = 50.0, max_seconds: float = 300.0,
          allowed_hosts: list[str] | tuple[str, ...] = ()) -> None:
    """Serve until interrupted (Ctrl-C)."""
    if uvicorn is None:
        raise UserError("serve needs its extra: pip install 'digit-denoise[serve]' (starlette, uvicorn, "
                        "python-multipart)")

    if workers < 1 or queue < 0 or not max_upload_mb > 0 or not max_seconds > 0:
        raise UserError("--workers must be ≥ 1, --queue ≥ 0, --max-upload-mb and --max-seconds > 0")
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: give a port between 1 and 65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror}); "
                            "choose another --port") from None
    cfg = ServerConfig(models=default_models(models or []), max_upload_mb=max_upload_mb, max_seconds=max_seconds,
                       workers=workers, queue=queue, allowed_hosts=tuple(allowed_hosts))
    app = create_app(cfg)
    print(f"digit-denoise serve: http://{host}:{port}/  (models: {', '.join(cfg.models)}; Ctrl-C stops)", flush=True)
    # request headers within HEADER_TIMEOUT s (slow-loris), idle keep-alive connections closed after 5 s, and
    # connections beyond what the workers and the queue can use refused (503) instead of held open
    uvicorn.run(app, host=host, port=port, log_level="warning", http=SlowHeadersH11, timeout_keep_alive=5,
                limit_concurrency=4 * (workers + queue) + 8, h11_max_incomplete_event_size=16 * 1024)
