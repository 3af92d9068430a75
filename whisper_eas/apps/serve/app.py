"""The HTTP face of `whisper-eas serve`: OpenAI's audio API on FastAPI, over one model and the
scheduler (scheduler.py).

    POST /v1/audio/transcriptions   multipart: file, model, language, prompt, response_format,
                                    temperature, timestamp_granularities[], stream
    POST /v1/audio/translations     the same, into English (multilingual models)
    GET  /v1/models, /v1/models/ID  the one model served
    GET  /health                    200 once the model is loaded, 503 before (no key needed)

A request goes: API key (401) -> model loaded (503) -> a place in the queue (429) -> the upload,
read up to the limit (413, uploads.py) -> its fields, checked into the `TranscribeOptions` the
command line would build for them (400) -> a job in the scheduler -> the answer in the format
asked for, or server-sent events as segments come (responses.py). If the client goes away while
its job runs, the job is cancelled at the next round. The upload's temporary file is removed
when the answer has been sent, on every path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ...errors import AudioError, OptionsError, RequestError, ServerBusy
from ...pipeline.options import TranscribeOptions
from ...pipeline.runner import Job
from ...types import Segment
from ..flags import fallback_temperatures
from . import responses
from .scheduler import Schedulers, Ticket
from .uploads import FILE_FIELD, Upload, check_length, read_upload

log = logging.getLogger("whisper_eas.serve")
POLL_S = 0.1  # how often a waiting request checks whether its client is still there
OPENAI_MODEL = "whisper-1"  # what OpenAI's clients send by default: the served model answers to it


@dataclass(frozen=True)
class ServeConfig:
    """The server's settings (the `whisper-eas serve` flags)."""

    max_batch: int = 16  # windows per encoder/decoder batch
    max_upload_bytes: int = 25 * 2**20  # OpenAI's own limit is 25 MB
    max_queue: int = 64  # requests in flight (uploading, waiting or running); more get a 429
    api_key: Optional[str] = None  # None: no key needed
    batch_wait: float = 0.02  # seconds the scheduler waits to fill a batch
    solo_windows: int = 2  # windows a long file takes per round when no other request runs (scheduler.py)
    workers: int = 0  # schedulers side by side, each with its share of rows and threads (0: 2 on 2+ threads)
    upload_dir: Optional[str] = None  # None: a fresh private folder, removed at shutdown


# what `load` returns: the model, the options a request starts from (its EAS setting resolved as
# the command line resolves it) and the id the model is served under
Loaded = Tuple[object, TranscribeOptions, str]


class ServerState:
    """The model (once loaded), the scheduler, the admission count and the upload folder."""

    def __init__(self, config: ServeConfig, load: Callable[[], Loaded],
                 on_load_error: Optional[Callable[[BaseException], None]] = None):
        self.config = config
        self._load = load
        self._on_load_error = on_load_error
        self.model = None
        self.base_options: Optional[TranscribeOptions] = None
        self.model_id: Optional[str] = None
        self.scheduler: Optional[Schedulers] = None
        self.load_error: Optional[BaseException] = None
        self.created = int(time.time())
        self.admitted = 0
        self._own_dir = config.upload_dir is None
        self.upload_dir = config.upload_dir or tempfile.mkdtemp(prefix="whisper-eas-serve-")
        self._loader = threading.Thread(target=self._load_model, name="whisper-eas-load", daemon=True)

    def start(self) -> None:
        self._loader.start()

    def _load_model(self) -> None:
        try:
            model, options, model_id = self._load()
            scheduler = Schedulers(model, self.config.workers, max_batch=self.config.max_batch,
                                   batch_wait=self.config.batch_wait, solo_windows=self.config.solo_windows)
            scheduler.start()
            self.model, self.base_options, self.model_id = model, options, model_id
            self.scheduler = scheduler  # set last: ready
            log.info("model %s loaded: ready", model_id)
        except BaseException as e:  # noqa: BLE001 - reported through /health and the callback
            self.load_error = e
            if self._on_load_error:
                self._on_load_error(e)
            else:
                log.error("the model failed to load: %s", e)

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop(timeout=30)
        if self._own_dir:
            shutil.rmtree(self.upload_dir, ignore_errors=True)

    def ready(self) -> Schedulers:
        if self.scheduler is None:
            message = "the model failed to load" if self.load_error else "the model is loading"
            raise ServerBusy(message, status=503, retry_after=5,
                             code="model_failed" if self.load_error else "model_loading")
        return self.scheduler

    @contextlib.contextmanager
    def admission(self):
        """A place among the requests in flight, or a 429 when they are `max_queue` already."""
        if self.admitted >= self.config.max_queue:  # one event loop: no lock needed
            raise ServerBusy(f"the server has {self.config.max_queue} requests in flight; retry shortly",
                             status=429, retry_after=1, code="queue_full")
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1


def create_app(config: ServeConfig, load: Callable[[], Loaded],
               on_load_error: Optional[Callable[[BaseException], None]] = None) -> FastAPI:
    """The app; `load` runs in a thread once the server is up (so /health answers 503 until it
    returns) and gives the model, the base options and the model's id."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        try:
            yield
        finally:
            state.stop()

    state = ServerState(config, load, on_load_error)
    app = FastAPI(title="whisper-eas", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state

    @app.exception_handler(RequestError)
    @app.exception_handler(ServerBusy)
    @app.exception_handler(HTTPException)
    @app.exception_handler(RequestValidationError)
    @app.exception_handler(Exception)
    async def error(request: Request, e: Exception):
        status, body, headers = _error(e)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.get("/health")
    async def health():
        if state.scheduler is None:
            status = "failed" if state.load_error else "loading"
            return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": "5"})
        return {"status": "ok", "model": state.model_id, **state.scheduler.snapshot()}

    @app.get("/v1/models")
    async def models(request: Request):
        _authorize(request, config.api_key)
        state.ready()
        return {"object": "list", "data": [_model_card(state)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request):
        _authorize(request, config.api_key)
        state.ready()
        if model_id not in (state.model_id, OPENAI_MODEL):
            raise RequestError(f"the model {model_id!r} is not served here (this server runs {state.model_id})",
                               status=404, param="model", code="model_not_found")
        return _model_card(state)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        return await _audio(request, state, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request):
        return await _audio(request, state, "translate")

    return app


def _model_card(state: ServerState) -> dict:
    return {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "whisper-eas"}


def _error(e: BaseException) -> Tuple[int, dict, Optional[dict]]:
    """(status, OpenAI's error object, headers) for an exception; one that is not the client's
    is a 500 that says no more (the log has it)."""
    if isinstance(e, RequestError):
        # 401 and 413 come before the body is read (or all of it): the connection closes, so
        # that the rest of the body is not read either
        close = {"Connection": "close"} if e.status in (401, 413) else None
        return e.status, responses.error_body(str(e), e.status, e.param, e.code), close
    if isinstance(e, ServerBusy):
        return e.status, responses.error_body(str(e), e.status, code=e.code), {
            "Retry-After": str(e.retry_after), "Connection": "close"}
    if isinstance(e, HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return e.status_code, responses.error_body(str(e.detail), e.status_code, code=code), e.headers
    if isinstance(e, RequestValidationError):
        return 400, responses.error_body("invalid request", 400, code="invalid_request"), None
    log.error("a request failed: %r", e)
    return 500, responses.error_body("the server failed on this request", 500, code="server_error"), None


def _authorize(request: Request, key: Optional[str]) -> None:
    """`Authorization: Bearer KEY`, compared in constant time."""
    if key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise RequestError("incorrect or missing API key (send Authorization: Bearer KEY)",
                           status=401, code="invalid_api_key")


# -- a transcription or translation request ------------------------------------------------------

@dataclass(frozen=True)
class AudioRequest:
    """The fields of one request, checked."""

    options: TranscribeOptions
    fmt: str
    granularities: Tuple[str, ...]
    stream: bool


async def _audio(request: Request, state: ServerState, task: str) -> Response:
    _authorize(request, state.config.api_key)
    scheduler = state.ready()
    cleanup = contextlib.ExitStack()
    with cleanup:
        cleanup.enter_context(state.admission())
        check_length(request.headers.get("content-length"), state.config.max_upload_bytes)
        try:
            upload = await read_upload(request.headers.get("content-type", ""), request.stream(),
                                       state.config.max_upload_bytes, state.upload_dir)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody reads it
        cleanup.callback(upload.remove)
        parsed = _parse(upload, task, state)
        source = state.model.window_source(upload.path, None, parsed.options, state.config.max_batch)
        ticket = scheduler.submit(Job(0, source, parsed.options, label="upload"), asyncio.get_running_loop())
        # however the request ends before its job does (the client left, a stream was cut, the
        # server is stopping), the job stops at the next round
        cleanup.callback(lambda: ticket.finished or scheduler.cancel(ticket))
        if parsed.stream:
            return await _stream(request, ticket, upload, cleanup.pop_all())
        segments: List[Segment] = []
        while True:
            kind, value = await _next_event(request, ticket)
            if kind == "gone":
                return Response(status_code=499)  # the client left: nobody reads it
            if kind == "segments":
                segments.extend(value)
            elif kind == "error":
                raise _public(value, upload)
            elif kind == "done":
                body, media = responses.render(parsed.fmt, segments, value, parsed.granularities)
                return Response(body, media_type=media)


async def _stream(request: Request, ticket: Ticket, upload: Upload, cleanup: contextlib.ExitStack) -> Response:
    """Server-sent events. The first event decides the status: an upload that is not audio is a
    400 like any other, found before the stream starts."""
    with cleanup:
        kind, value = await _next_event(request, ticket)
        if kind == "error":
            raise _public(value, upload)
        if kind == "gone":
            return Response(status_code=499)

        async def events():
            segments: List[Segment] = []
            first = True
            event = (kind, value)
            while event[0] not in ("done", "error", "gone"):
                if event[0] == "segments":
                    segments.extend(event[1])
                    text, first = responses.delta_events(event[1], first)
                    if text:
                        yield text
                event = await _next_event(request, ticket)
            if event[0] == "done":
                yield responses.done_event(segments)
            elif event[0] == "error":
                yield responses.event(_error(_public(event[1], upload))[1])

        # the job, the upload and the place in the queue live as long as the stream
        return _EventStream(events(), cleanup.pop_all().close)


class _EventStream(StreamingResponse):
    """Server-sent events with `on_close` run however the response ends (sent, cut, never started)."""

    def __init__(self, events, on_close: Callable[[], None]):
        super().__init__(events, media_type=responses.EVENT_STREAM,
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def _next_event(request: Request, ticket: Ticket) -> tuple:
    """The ticket's next event, or ("gone", None) once the client has disconnected."""
    getter = asyncio.ensure_future(ticket.events.get())
    try:
        while True:
            done, _ = await asyncio.wait({getter}, timeout=POLL_S)
            if done:
                return getter.result()
            if await request.is_disconnected():
                return ("gone", None)
    finally:
        if not getter.done():
            getter.cancel()


def _public(error: BaseException, upload: Upload) -> BaseException:
    """The error as the client may see it: an unreadable upload is a 400 that names no server
    path; anything else is as it is (not one of ours: a 500 that says no more)."""
    if isinstance(error, AudioError):
        message = str(error)
        if upload.path:
            message = message.replace(upload.path, "the uploaded file")
        return RequestError(message, status=400, param=FILE_FIELD, code="invalid_audio")
    return error


def _parse(upload: Upload, task: str, state: ServerState) -> AudioRequest:
    """The request's fields -> the TranscribeOptions the command line would build for the same
    file and flags (`--task`, `--language`, `--initial-prompt`, `--temperature` with its
    fallback schedule, `--word-timestamps`), and how to answer."""
    if upload.path is None:
        raise RequestError("the request has no file (a multipart field named 'file')", param=FILE_FIELD,
                           code="missing_file")
    model = upload.value("model")
    if model not in (None, "", state.model_id, OPENAI_MODEL):
        raise RequestError(f"the model {model!r} is not served here (this server runs {state.model_id}; "
                           f"'{OPENAI_MODEL}' names it too)", param="model", code="model_not_found")
    fmt = (upload.value("response_format") or "json").strip().lower()
    if fmt not in responses.FORMATS:
        raise RequestError(f"response_format must be one of {', '.join(responses.FORMATS)}, got {fmt!r}",
                           param="response_format", code="invalid_value")
    granularities = tuple(g.strip().lower() for name in ("timestamp_granularities[]", "timestamp_granularities")
                          for g in upload.fields.get(name, ()))
    bad = [g for g in granularities if g not in responses.GRANULARITIES]
    if bad:
        raise RequestError(f"timestamp_granularities takes word and segment, got {bad[0]!r}",
                           param="timestamp_granularities", code="invalid_value")
    if "word" in granularities and fmt != "verbose_json":
        raise RequestError("word timestamps need response_format=verbose_json", param="timestamp_granularities",
                           code="invalid_value")
    stream = _flag(upload.value("stream"), "stream")
    if stream and fmt not in ("json", "text"):
        raise RequestError("stream=true sends text events: use response_format json or text", param="stream",
                           code="invalid_value")
    temperature = _number(upload.value("temperature"), "temperature", 0.0)
    if not 0.0 <= temperature <= 1.0:
        raise RequestError(f"temperature must be between 0 and 1, got {temperature:g}", param="temperature",
                           code="invalid_value")
    language = upload.value("language")  # translations take it too, as `--task translate --language` does
    if task == "translate" and not state.model.tokenizer.multilingual:
        raise RequestError(f"translation needs a multilingual model; this server runs {state.model_id}",
                           param="model", code="model_not_multilingual")
    prompt = upload.value("prompt")
    try:
        options = state.model.resolve_options(
            state.base_options, task=task, language=language.strip() or None if language else None,
            initial_prompt=prompt if prompt and prompt.strip() else None,
            temperature=fallback_temperatures(temperature), word_timestamps="word" in granularities)
    except OptionsError as e:
        raise RequestError(str(e), param="language" if language else None, code="invalid_value") from None
    return AudioRequest(options, fmt, granularities, stream)


def _flag(text: Optional[str], name: str) -> bool:
    if text is None or text.strip().lower() in ("", "false", "0"):
        return False
    if text.strip().lower() in ("true", "1"):
        return True
    raise RequestError(f"{name} must be true or false, got {text!r}", param=name, code="invalid_value")


def _number(text: Optional[str], name: str, default: float) -> float:
    if text is None or not text.strip():
        return default
    try:
        return float(text)
    except ValueError:
        raise RequestError(f"{name} must be a number, got {text!r}", param=name, code="invalid_value") from None
