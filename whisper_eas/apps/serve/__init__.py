"""`whisper-eas serve`: an OpenAI-compatible transcription server that batches the windows of
concurrent requests on one model.

    scheduler.py   one thread, one model: every in-flight request's job, round by round,
                   fair by compute time (imports no web framework)
    uploads.py     the multipart body, streamed to a temporary file up to the size limit
    responses.py   OpenAI's response shapes: json, text, srt, vtt, verbose_json, events, errors
    app.py         the FastAPI app: routes, API key, admission, disconnects

This module is the command: its flags, and `run`, which starts uvicorn. FastAPI, uvicorn and
python-multipart are an optional extra (`pip install 'whisper-eas[serve]'`), imported only when
the server starts, so the rest of the command line works without them. See docs/serve.md."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys

from ...errors import OptionsError, UserError
from .. import flags
from ..flags import flag

API_KEY_ENV = "WHISPER_EAS_API_KEY"


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="serve OpenAI's audio API (transcriptions, translations) over HTTP",
                       description="An OpenAI-compatible transcription server: the windows of all requests "
                       "in flight share encoder and decoder batches on one model. Needs the serve extra: "
                       "pip install 'whisper-eas[serve]'.")
    flags.add_model_flags(s)
    flags.add_eas_flags(s)
    g = s.add_argument_group("server")
    flag(g, "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    flag(g, "--port", type=int, default=8000, help="port (default: 8000)")
    flag(g, "--max-batch", type=flags.positive_int, default=16,
         help="windows per encoder/decoder batch; 1 turns batching across requests off (default: 16)")
    flag(g, "--workers", type=int, default=0,
         help="schedulers side by side, each with its share of --max-batch rows and of the threads, one "
              "model; 0: two where there are two threads or more, else one (default: 0)")
    flag(g, "--max-upload-mb", type=float, default=25.0,
         help="largest upload accepted, in MB; larger ones get a 413 unread (default: 25, as OpenAI)")
    flag(g, "--max-queue", type=flags.positive_int, default=64,
         help="requests in flight (uploading, waiting or running) before new ones get a 429 (default: 64)")
    flag(g, "--api-key", default=None,
         help=f"require 'Authorization: Bearer KEY' (default: the {API_KEY_ENV} environment variable; "
              "none: no key)")
    flags.add_output_flags(s, None)
    s.set_defaults(handler=run)


def run(args) -> int:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise UserError(f"whisper-eas serve needs the serve extra ({e.name} is missing): "
                        "pip install 'whisper-eas[serve]'") from None
    from .app import ServeConfig, create_app

    if not 0 < args.port < 65536:
        raise OptionsError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise OptionsError(f"--max-upload-mb must be > 0, got {args.max_upload_mb:g}")
    if args.threads < 0:
        raise OptionsError("--threads must be >= 0")
    if args.workers < 0:
        raise OptionsError(f"--workers must be >= 0, got {args.workers}")
    flags.check_device(args.device)
    note = flags.stderr_note(args.quiet)
    if not args.quiet:  # "model loaded", and with --verbose each round of the scheduler
        logging.getLogger("whisper_eas.serve").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    if api_key is None and not _loopback(args.host):
        note(f"warning: listening on {args.host} without an API key: anyone who can reach it may use it "
             f"(set --api-key or {API_KEY_ENV})")
    config = ServeConfig(max_batch=args.max_batch, max_upload_bytes=int(args.max_upload_mb * 2**20),
                         max_queue=args.max_queue, api_key=api_key, workers=args.workers)

    def load():
        return served(flags.load_whisper(args), args, note)

    failure = []

    def failed(error: BaseException) -> None:
        failure.append(error)
        server.should_exit = True

    # the address is taken before anything starts, so a port in use is one line and the model
    # is never loaded for nothing
    try:
        listener = socket.create_server((args.host, args.port),
                                        family=socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    with listener:
        app = create_app(config, load, on_load_error=failed)
        server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"
                                               if args.quiet else "info", timeout_graceful_shutdown=5))
        note(f"serving OpenAI's audio API on http://{_url_host(args.host)}:{args.port}/v1 "
             f"(model {args.model}; /health says when it is loaded)")
        server.run(sockets=[listener])
    if failure:
        raise failure[0]
    if not server.started:  # uvicorn said why on stderr
        print("whisper-eas: error: the server could not start", file=sys.stderr)
        return 1
    return 0


def served(whisper, args, note=lambda text: None):
    """What the server runs (app.Loaded): the model, the options every request starts from (the
    EAS setting resolved from the flags as `transcribe` resolves it, the other fields
    `TranscribeOptions()`'s defaults) and the id it is served under."""
    eas, _ = flags.resolve_eas(args, whisper, note)
    return whisper, whisper.resolve_options(eas=eas), model_id(whisper.loaded.name)


def model_id(name: str) -> str:
    """The id the model is served under: its name, or a directory's or file's last component
    (a server path is not shown to clients)."""
    if os.path.sep in name or (os.altsep and os.altsep in name) or os.path.exists(name):
        return os.path.basename(os.path.normpath(name)) or name
    return name


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
