"""Reading a request's form with every limit enforced while the body arrives.

Starlette's form parser spools file parts to temporary files and checks ``Content-Length`` only, so a
chunked upload could put far more than the limit on disk before it was refused. Here the body is read
chunk by chunk (chunked or not), every byte is counted, and the request is refused with 413 the moment
it crosses the upload limit, a field its own limit, or the form its field count; a chunk that does not
come within ``body_timeout`` seconds ends the request with 408. Parts are held in memory only (the
upload limit bounds them), so nothing is ever written to disk.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

FIELD_LIMIT = 64 * 1024  # bytes of a plain (non-file) form field
MAX_FIELDS = 8  # parts per request, files included
HEADER_LIMIT = 4096  # bytes of one part's headers


class FormError(Exception):
    """A form the client can fix: ``status`` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)  # plain fields (UTF-8 text)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # name → (client's file name, bytes)


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_name: bytes = b""
    header_value: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    name: str = ""
    filename: str | None = None


def _disposition(part: _Part) -> tuple[str, str | None]:
    """(field name, file name or None) of a part's Content-Disposition."""
    kind, options = parse_options_header(part.headers.get(b"content-disposition", b""))
    if kind != b"form-data" or b"name" not in options:
        raise FormError(400, "a multipart part without a form-data name")
    name = options[b"name"].decode("utf-8", "replace")
    filename = options.get(b"filename")
    return name, (filename.decode("utf-8", "replace") if filename is not None else None)


async def _chunks(request: Request, limit: int, body_timeout: float):
    """The body's chunks as they arrive, at most ``limit`` bytes in all (413 the moment it is crossed),
    each within ``body_timeout`` seconds (408)."""
    received, stream = 0, request.stream()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), body_timeout)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise FormError(408, f"the upload stalled (nothing for {body_timeout:g} s); send it again") from None
        received += len(chunk)
        if received > limit:
            raise FormError(413, f"upload too large (more than {limit / 2**20:g} MB)")
        yield chunk


class _Collector:
    """python-multipart callbacks that collect the parts and note the first limit crossed."""

    def __init__(self, field_limit: int, max_fields: int, file_fields: tuple[str, ...]):
        self.field_limit, self.max_fields, self.file_fields = field_limit, max_fields, file_fields
        self.form, self.parts, self.current = Form(), [], _Part()
        self.errors: list[FormError] = []

    def callbacks(self) -> dict:
        return {k: getattr(self, k) for k in ("on_part_begin", "on_part_data", "on_part_end", "on_header_field",
                                              "on_header_value", "on_header_end", "on_headers_finished")}

    def fail(self, status: int, message: str) -> None:
        if not self.errors:
            self.errors.append(FormError(status, message))

    def on_part_begin(self):
        if len(self.parts) >= self.max_fields:
            self.fail(413, f"too many form fields (more than {self.max_fields})")
        self.current = _Part()
        self.parts.append(self.current)

    def on_header_field(self, data: bytes, start: int, end: int):
        self.current.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int):
        self.current.header_value += data[start:end]
        if len(self.current.header_value) > HEADER_LIMIT:
            self.fail(431, "a multipart part header is too long")

    def on_header_end(self):
        part = self.current
        part.headers[part.header_name.lower()] = part.header_value
        part.header_name, part.header_value = b"", b""

    def on_headers_finished(self):
        part = self.current
        part.name, part.filename = _disposition(part)
        if part.filename is not None and part.name not in self.file_fields:
            self.fail(400, f"missing multipart field {' or '.join(map(repr, self.file_fields))}: a file came in field "
                           f"{part.name[:40]!r}")

    def on_part_data(self, data: bytes, start: int, end: int):
        part = self.current
        part.size += end - start
        part.chunks.append(data[start:end])
        if part.filename is None and part.size > self.field_limit:
            self.fail(413, f"form field {part.name[:40]!r} is larger than {self.field_limit // 1024} KB")

    def on_part_end(self):
        part = self.current
        data, part.chunks = b"".join(part.chunks), []
        if part.filename is not None:
            self.form.files[part.name] = (part.filename, data)
            return
        try:
            self.form.fields[part.name] = data.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(400, f"field {part.name[:40]!r} is not UTF-8 text")


async def read_form(request: Request, limit: int, *, field_limit: int = FIELD_LIMIT, max_fields: int = MAX_FIELDS,
                    body_timeout: float = 30.0, file_fields: tuple[str, ...] = ("file",),
                    urlencoded: bool = False) -> Form:
    """The multipart form of ``request`` (or, with ``urlencoded``, a small url-encoded one), whole bodies at
    most ``limit`` bytes; file parts only in ``file_fields``. Raises :class:`FormError` (400, 408, 413, 415)
    on the first limit crossed."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise FormError(413, f"upload too large ({int(length) / 2**20:.1f} MB > {limit / 2**20:g} MB)")
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if urlencoded and kind == b"application/x-www-form-urlencoded":
        body = b"".join([c async for c in _chunks(request, min(limit, field_limit * max_fields), body_timeout)])
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=max_fields)
        except (UnicodeDecodeError, ValueError):
            raise FormError(400, f"a url-encoded form of at most {max_fields} UTF-8 fields, please") from None
        return Form(fields=dict(pairs))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise FormError(415, "send multipart/form-data (e.g. curl -F file=@audio.wav)")
    got = _Collector(field_limit, max_fields, file_fields)
    parser = MultipartParser(options[b"boundary"], got.callbacks(), max_header_count=8, max_header_size=HEADER_LIMIT)
    async for chunk in _chunks(request, limit, body_timeout):
        try:
            parser.write(chunk)
        except FormError:
            raise
        except Exception as e:  # python-multipart's parse errors
            raise FormError(400, f"malformed multipart body ({str(e).splitlines()[0][:80]})") from None
        if got.errors:
            raise got.errors[0]
    try:
        parser.finalize()
    except Exception as e:
        raise FormError(400, f"malformed multipart body ({str(e).splitlines()[0][:80]})") from None
    if got.errors:
        raise got.errors[0]
    return got.form
