"""Load on OpenAI-compatible transcription servers, all on loopback: `whisper-eas serve` with its
default batching, the same with `--max-batch 1`, and a faster-whisper server on the same weights
(and, asked for by `--servers`, `ours-workers1`: `whisper-eas serve --workers 1`, one scheduler).

Each server runs as its own process on a free 127.0.0.1 port and gets the same load, one server
after the other: C concurrent clients (threads, each with its own HTTP connection) send N
multipart requests (response_format=json, model "whisper-1") drawn in order from the dev-short
clips, each client sending its next request when the last one is answered. Modes:

- `short`: the short clips only (the acceptance load: 16 clients, throughput and p95);
- `mixed`: the short clips with `--long` long recordings (longform-dev) spread among them;
- `interference` (`--interference-servers`, default ours): the short load alone, then the same
  short load while one `--long-minutes` upload (longform-dev recordings joined, default 10 min)
  is in flight; the short requests' p95 with it over p95 without it. The long request is dropped
  (its connection closed) when the short load is done.

Reported per server and mode: requests answered, failed (an HTTP error or a broken connection),
lost (no answer within the time limit, or never sent because the limit came), req/s, audio
seconds transcribed per second, p50/p95/p99 latency of the short requests (and of the long ones),
the server's RSS before and after the mode, and the CPU time (user + system) the server and the
clients (this process) spent per answered request: with the load saturating the machine, req/s is
about the cores over their sum, so it says where a server's throughput goes. Bounded: at most N
requests per mode, and each mode stops sending at `--time-limit` seconds and waits at most 60 s
more.

The faster-whisper server is the `faster-whisper-server` package (a YAML config with the local
CTranslate2 directory of the same weights, int8, beam size 1 like our greedy default), or, when
that package is missing or does not start offline, a minimal FastAPI wrapper around
faster-whisper int8 defined in this file; the output says which ran.

On a machine shared with other work, two OpenMP threads can run several times slower than one
(a descheduled thread stalls every parallel region, of torch and CTranslate2 alike): measure on a
quiet machine, or compare the servers at `--threads 1`.

    pip install -e '.[serve,bench]' && python benchmarks/corpus.py
    python benchmarks/serve_load.py                                   # 300 requests, 16 clients
    python benchmarks/serve_load.py --requests 20 --clients 4 --long 1 --interference-requests 12
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVERS = ("ours", "ours-batch1", "faster-whisper")
FLAGS = {"ours": [], "ours-batch1": ["--max-batch", "1"], "ours-workers1": ["--workers", "1"]}  # and a --servers name


# -- the audio ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clip:
    name: str
    data: bytes
    seconds: float
    long: bool = False


def read_clips(manifest: Path, long: bool = False, limit: Optional[int] = None) -> List[Clip]:
    from whisper_eas.io.audio import probe_duration

    clips = []
    for line in manifest.read_text(encoding="utf-8").splitlines()[:limit]:
        row = json.loads(line)
        path = manifest.parent / row["audio"]
        seconds = row.get("duration") or probe_duration(str(path)) or 0.0
        clips.append(Clip(path.name, path.read_bytes(), float(seconds), long))
    return clips


def joined_recording(manifest: Path, minutes: float, folder: Path) -> Clip:
    """The longform recordings end to end, cut at `minutes`, as one FLAC."""
    import numpy as np
    import soundfile as sf

    from whisper_eas.io.audio import SAMPLE_RATE, load_audio

    want = int(minutes * 60 * SAMPLE_RATE)
    parts, have = [], 0
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    while have < want:
        for row in rows:
            audio = load_audio(str(manifest.parent / row["audio"]))
            parts.append(audio)
            have += len(audio)
            if have >= want:
                break
    path = folder / f"joined-{minutes:g}min.flac"
    sf.write(path, np.concatenate(parts)[:want], SAMPLE_RATE)
    return Clip(path.name, path.read_bytes(), want / SAMPLE_RATE, long=True)


# -- the servers ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on loopback; `kind` names it, `note` says what it is."""

    def __init__(self, kind: str, args: argparse.Namespace, folder: Path):
        self.kind, self.args, self.folder = kind, args, folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None
        self.log = None  # the process's output file, closed when it stops
        self.note = ""

    def start(self) -> None:
        if self.kind.startswith("ours"):
            cmd = [sys.executable, "-m", "whisper_eas", "serve", "--model", self.args.model, "--port", str(self.port),
                   "--threads", str(self.args.threads), "--max-queue", "1024", "--max-upload-mb", "256", "--quiet"]
            cmd += FLAGS[self.kind]
            self.note = " ".join(["whisper-eas serve", *FLAGS[self.kind]])
            self._launch(cmd)
            return
        from whisper_eas.evaluation.bench import ct2_directory

        ct2 = ct2_directory(self.args.model)
        if importlib.util.find_spec("faster_whisper_server") is not None:
            config = self.folder / "faster-whisper-server.yaml"
            config.write_text(json.dumps({"models": [{  # JSON is YAML
                "name": "whisper-1", "path": ct2,
                "model_options": {"device": "cpu", "compute_type": "int8", "cpu_threads": self.args.threads},
                "transcribe_options": {"beam_size": 1}}]}))
            try:
                self._launch([sys.executable, "-m", "faster_whisper_server", "--config", str(config),
                              "--host", "127.0.0.1", "--port", str(self.port)])
                self.note = "faster-whisper-server (PyPI), int8, beam 1, local CTranslate2 directory"
                return
            except RuntimeError as e:
                print(f"  faster-whisper-server did not run ({e}); using the minimal wrapper", flush=True)
                self.stop()
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        self._launch([sys.executable, str(Path(__file__).resolve()), "--fw-wrapper", "--port", str(self.port),
                      "--ct2", ct2, "--threads", str(self.args.threads)])
        self.note = "minimal FastAPI wrapper around faster-whisper int8, beam 1 (in this file)"

    def _launch(self, cmd: List[str]) -> None:
        import httpx

        self.log = open(self.folder / f"{self.kind}.log", "w")
        log = self.log
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        else:
            raise RuntimeError("not ready after 180 s")
        # warm-up (and faster-whisper-server loads its model at the first request)
        for clip in self.args.warmup:
            r = post(self.url, clip, timeout=300)
            if r.status_code != 200:
                raise RuntimeError(f"warm-up request failed: HTTP {r.status_code} {r.text[:200]}")

    def cpu_s(self) -> Optional[float]:
        """CPU seconds (user + system) the server's processes have used so far."""
        import psutil

        try:
            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
            return sum(sum(p.cpu_times()[:2]) for p in procs)
        except (psutil.Error, AttributeError):
            return None

    def rss_mb(self) -> Optional[float]:
        import psutil

        try:
            proc = psutil.Process(self.proc.pid)
            return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20
        except (psutil.Error, AttributeError):
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None


def post(url: str, clip: Clip, timeout: float, client=None):
    import httpx

    return (client or httpx).post(f"{url}/v1/audio/transcriptions", timeout=timeout,
                                  files={"file": (clip.name, clip.data, "application/octet-stream")},
                                  data={"model": "whisper-1", "response_format": "json"})


# -- the load -------------------------------------------------------------------------------------

@dataclass
class Outcome:
    clip: str
    long: bool
    seconds: float  # audio
    latency: Optional[float] = None  # None: no answer
    status: Optional[int] = None
    error: Optional[str] = None


@dataclass
class Result:
    server: str
    mode: str
    note: str
    requests: int
    answered: int
    failed: int
    lost: int
    wall_s: float
    req_per_s: float
    audio_s_per_s: float
    p50_s: Optional[float]
    p95_s: Optional[float]
    p99_s: Optional[float]
    long_latencies_s: List[float] = field(default_factory=list)
    rss_before_mb: Optional[float] = None
    rss_after_mb: Optional[float] = None
    server_cpu_ms: Optional[float] = None  # the server's CPU time per answered request
    client_cpu_ms: Optional[float] = None  # this process's (the clients'), per answered request
    extra: Dict[str, object] = field(default_factory=dict)


def run_load(url: str, plan: List[Clip], clients: int, time_limit: float) -> tuple:
    """Send `plan` with `clients` concurrent clients, each sending its next request when the last
    one is answered; stop sending after `time_limit` s. -> (outcomes, wall seconds, not sent)."""
    import httpx

    outcomes: List[Outcome] = []
    lock = threading.Lock()
    todo = list(reversed(plan))
    start = time.monotonic()
    deadline = start + time_limit

    def client_loop():
        with httpx.Client() as client:
            while True:
                with lock:
                    if not todo or time.monotonic() > deadline:
                        return
                    clip = todo.pop()
                t0 = time.monotonic()
                outcome = Outcome(clip.name, clip.long, clip.seconds)
                try:
                    r = post(url, clip, timeout=max(1.0, deadline + 60 - t0), client=client)
                    outcome.status = r.status_code
                    outcome.latency = time.monotonic() - t0
                    if r.status_code != 200:
                        outcome.error = f"HTTP {r.status_code}: {r.text[:120]}"
                except httpx.TimeoutException:
                    outcome.error = "timeout"  # lost: no answer in time
                except httpx.HTTPError as e:
                    outcome.error = f"{type(e).__name__}: {e}"
                    outcome.status = -1
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes, time.monotonic() - start, len(todo)


def summarize(server: Server, mode: str, plan: List[Clip], outcomes: List[Outcome], wall: float,
              not_sent: int) -> Result:
    import numpy as np

    ok = [o for o in outcomes if o.status == 200]
    failed = [o for o in outcomes if o.status is not None and o.status != 200]
    lost = len(outcomes) - len(ok) - len(failed) + not_sent
    short = [o.latency for o in ok if not o.long]

    def pct(q):
        return round(float(np.percentile(short, q)), 3) if short else None

    return Result(server.kind, mode, server.note, len(plan), len(ok), len(failed), lost, round(wall, 2),
                  round(len(ok) / wall, 3), round(sum(o.seconds for o in ok) / wall, 2), pct(50), pct(95), pct(99),
                  [round(o.latency, 2) for o in ok if o.long],
                  extra={"errors": sorted({o.error for o in failed + [o for o in outcomes if o.error]})[:5]})


def interleave(shorts: List[Clip], longs: List[Clip], n: int) -> List[Clip]:
    """`n` requests: the short clips in order (cycling), with the long ones spread evenly."""
    plan = [shorts[i % len(shorts)] for i in range(n - len(longs))]
    for k, clip in enumerate(longs):
        plan.insert(round((k + 0.5) * len(plan) / len(longs)), clip)
    return plan


def interference(server: Server, args, shorts: List[Clip], long: Clip) -> Result:
    """The short load alone, then with one long upload in flight."""
    import httpx

    plan = interleave(shorts, [], args.interference_requests)
    rss_before = server.rss_mb()
    alone, wall_alone, not_sent_alone = run_load(server.url, plan, args.clients, args.time_limit)
    base = summarize(server, "interference", plan, alone, wall_alone, not_sent_alone)
    state: Dict[str, object] = {}

    def upload():
        t0 = time.monotonic()
        try:
            with httpx.Client() as client:
                r = post(server.url, long, timeout=args.time_limit + 120, client=client)
                state.update(end=time.monotonic(), outcome=f"answered in {time.monotonic() - t0:.1f} s "
                                                          f"(HTTP {r.status_code})")
        except httpx.HTTPError as e:
            state.update(end=time.monotonic(), outcome=f"{type(e).__name__} after {time.monotonic() - t0:.1f} s")

    # a daemon thread: when the short load is done the long request is left to the server's stop
    threading.Thread(target=upload, daemon=True).start()
    time.sleep(args.long_head_start)  # the upload is read and its first window is in the scheduler
    beside, wall, not_sent = run_load(server.url, plan, args.clients, args.time_limit)
    ended = time.monotonic()
    result = summarize(server, "interference", plan, beside, wall, not_sent)
    result.rss_before_mb, result.rss_after_mb = rss_before, server.rss_mb()
    result.extra.update(
        p95_alone_s=base.p95_s, req_per_s_alone=base.req_per_s,
        p95_ratio=round(result.p95_s / base.p95_s, 2) if base.p95_s and result.p95_s else None,
        long_minutes=round(long.seconds / 60, 1),
        long_in_flight_throughout="end" not in state or state["end"] >= ended,
        long_outcome=state.get("outcome", "still running when the short load ended (dropped with the server)"))
    return result


# -- the faster-whisper wrapper (a server process of its own) -----------------------------------

def fw_wrapper(port: int, ct2: str, threads: int) -> None:
    import uvicorn
    from fastapi import FastAPI, File, Form, UploadFile
    from faster_whisper import WhisperModel

    model = WhisperModel(ct2, device="cpu", compute_type="int8", cpu_threads=threads)
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/v1/audio/transcriptions")
    def transcriptions(file: UploadFile = File(...), model_name: str = Form("whisper-1", alias="model"),
                       response_format: str = Form("json")):
        segments, _ = model.transcribe(file.file, beam_size=1)
        return {"text": "".join(s.text for s in segments).strip()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- the report -----------------------------------------------------------------------------------

def table(results: List[Result]) -> str:
    rows = ["| server | mode | answered | failed | lost | req/s | audio s/s | p50 s | p95 s | p99 s | long s "
            "| RSS before MB | RSS after MB | server CPU ms/req | client CPU ms/req |", "|---" * 15 + "|"]
    for r in results:
        def f(x):
            return "-" if x is None else (f"{x:.0f}" if isinstance(x, float) and x > 100 else str(x))
        rows.append(f"| {r.server} | {r.mode} | {r.answered}/{r.requests} | {r.failed} | {r.lost} | {r.req_per_s} "
                    f"| {r.audio_s_per_s} | {f(r.p50_s)} | {f(r.p95_s)} | {f(r.p99_s)} "
                    f"| {', '.join(map(str, r.long_latencies_s)) or '-'} | {f(r.rss_before_mb)} | {f(r.rss_after_mb)} "
                    f"| {f(r.server_cpu_ms)} | {f(r.client_cpu_ms)} |")
    return "\n".join(rows)


def measured_load(server: Server, mode: str, plan: List[Clip], args) -> Result:
    """`plan` sent to `server` by `args.clients` clients (`run_load`), summarised with the
    server's RSS before and after and the CPU time the server and the clients spent per answered
    request (on a machine the load saturates, req/s is about the cores over the sum of the two);
    its table row printed."""
    rss, cpu, mine = server.rss_mb(), server.cpu_s(), sum(os.times()[:2])
    outcomes, wall, not_sent = run_load(server.url, plan, args.clients, args.time_limit)
    result = summarize(server, mode, plan, outcomes, wall, not_sent)
    result.rss_before_mb, result.rss_after_mb = rss, server.rss_mb()
    after = server.cpu_s()
    if result.answered and cpu is not None and after is not None:
        result.server_cpu_ms = round(1000 * (after - cpu) / result.answered, 1)
        result.client_cpu_ms = round(1000 * (sum(os.times()[:2]) - mine) / result.answered, 1)
    print(table([result]).splitlines()[-1], flush=True)
    return result


def started(server: Server) -> bool:
    """Start `server` and say so; False (and why) when it did not start. The caller stops it
    on every path."""
    print(f"## {server.kind}: starting", flush=True)
    try:
        server.start()
    except RuntimeError as e:
        print(f"  {server.kind} did not start: {e}", flush=True)
        return False
    print(f"  {server.note}; RSS {server.rss_mb() or 0:.0f} MB", flush=True)
    return True


def repeated_short(servers: List[str], args, folder: Path, shorts: List[Clip]) -> List[Result]:
    """The short load `args.repeat` times per server, every server up at once and their runs
    taking turns (ours, ours-batch1, ours, ...), so that a drift in the machine's speed falls on
    all of them alike. -> one Result per run, mode "short#i"."""
    up, results = [], []
    try:
        for kind in servers:
            server = Server(kind, args, folder)
            up.append(server)
            if not started(server):
                up.remove(server)
                server.stop()
        plan = interleave(shorts, [], args.requests)
        for i in range(args.repeat):
            for server in up:
                results.append(measured_load(server, f"short#{i + 1}", plan, args))
    finally:
        for server in up:
            server.stop()
    return results


TARGETS = (("faster-whisper", 3.0), ("ours-batch1", 2.0))  # ours' short-load throughput over each, wanted


def verdicts(results: List[Result]) -> List[str]:
    by = {(r.server, r.mode): r for r in results}
    lines = []
    runs = sorted({r.mode for r in results if r.mode.startswith("short#")})
    for peer, need in TARGETS:
        pairs = [(by[("ours", m)], by[(peer, m)]) for m in runs if ("ours", m) in by and (peer, m) in by]
        if pairs:
            ratios = sorted(a.req_per_s / b.req_per_s for a, b in pairs if b.req_per_s)
            median = statistics.median(ratios)
            p95 = sum(a.p95_s < b.p95_s for a, b in pairs if a.p95_s and b.p95_s)
            lines.append(f"short load, ours vs {peer}, {len(pairs)} runs each taking turns: req/s ratios "
                         f"{', '.join(f'{r:.2f}' for r in ratios)}, median {median:.2f}x (want >= {need:g}x: "
                         f"{'met' if median >= need else 'NOT met'}); p95 lower in {p95} of {len(pairs)} runs")
    if runs:
        failed = sum(r.failed + r.lost for r in results if r.server == "ours")
        lines.append(f"short load, ours: {failed} failed or lost in {len(runs)} runs (want 0)")
    ours = by.get(("ours", "short"))
    for peer, need in TARGETS:
        other = by.get((peer, "short"))
        if ours and other and other.req_per_s:
            ratio = ours.req_per_s / other.req_per_s
            lines.append(f"short load, ours vs {peer}: {ratio:.2f}x req/s (want >= {need:g}x: "
                         f"{'met' if ratio >= need else 'NOT met'}); p95 {ours.p95_s} s vs {other.p95_s} s "
                         f"({'lower' if (ours.p95_s or 1e9) < (other.p95_s or 1e9) else 'NOT lower'})")
    if ours:
        lines.append(f"short load, ours: {ours.failed} failed, {ours.lost} lost (want 0)")
    for r in results:
        if r.mode == "interference" and r.extra.get("p95_ratio") is not None:
            ratio = r.extra["p95_ratio"]
            lines.append(f"{r.server}: one {r.extra['long_minutes']}-min upload in flight moves the short p95 "
                         f"{r.extra['p95_alone_s']} s -> {r.p95_s} s = {ratio}x (want <= 2x: "
                         f"{'met' if ratio <= 2 else 'NOT met'}); long upload: {r.extra['long_outcome']}"
                         + ("" if r.extra.get("long_in_flight_throughout") else
                            " - it ended before the short load did, so the ratio understates its effect"))
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help=f"some of {', '.join(SERVERS)}, ours-workers1 (`--workers 1`: one scheduler)")
    ap.add_argument("--modes", default="short,mixed,interference")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--requests", type=int, default=300, help="requests per mode (short and mixed)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--long", type=int, default=3, help="long recordings among the mixed load's requests")
    ap.add_argument("--interference-servers", default="ours")
    ap.add_argument("--interference-requests", type=int, default=150, help="short requests per phase")
    ap.add_argument("--long-minutes", type=float, default=10.0, help="the interference mode's upload")
    ap.add_argument("--long-head-start", type=float, default=3.0,
                    help="seconds the long upload runs before the short load starts")
    ap.add_argument("--time-limit", type=float, default=900.0, help="seconds per mode before sending stops")
    ap.add_argument("--repeat", type=int, default=1,
                    help="short load only: run it this many times per server, the servers' runs taking turns "
                         "(all servers up at once); the verdicts use the median of each pair's ratio")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of every server")
    ap.add_argument("--corpus", default=str(ROOT / "data" / "corpus"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "serve-load"))
    ap.add_argument("--fw-wrapper", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ct2", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fw_wrapper:
        fw_wrapper(args.port, args.ct2, args.threads)
        return 0

    from whisper_eas.hardware import describe as describe_machine

    corpus = Path(args.corpus)
    if not (corpus / "dev-short.jsonl").exists():
        sys.exit("serve_load: build the corpus first: python benchmarks/corpus.py")
    servers = [s for s in args.servers.split(",") if s]
    # interference last: its long upload is left running until the server stops
    modes = sorted((m for m in args.modes.split(",") if m), key=lambda m: m == "interference")
    unknown = sorted(set(servers) - set(SERVERS) - set(FLAGS)) + sorted(set(modes) - {"short", "mixed", "interference"})
    if unknown:
        sys.exit(f"serve_load: unknown server or mode {', '.join(unknown)}")
    shorts = read_clips(corpus / "dev-short.jsonl")
    longs = read_clips(corpus / "longform-dev.jsonl", long=True, limit=args.long) if args.long else []
    args.warmup = shorts[:2]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"# serve_load: {args.model}, {args.clients} clients; {describe_machine('cpu', args.threads)}", flush=True)
    results: List[Result] = []
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        folder = Path(tmp)
        joined = None
        if "interference" in modes:
            joined = joined_recording(corpus / "longform-dev.jsonl", args.long_minutes, folder)
        if args.repeat > 1:
            results = repeated_short(servers, args, folder, shorts)
            servers = []
        for kind in servers:
            server = Server(kind, args, folder)
            try:  # the server stops on every path: a failed start, an error, Ctrl-C
                if not started(server):
                    continue
                for mode in modes:
                    if mode == "interference":
                        if kind not in args.interference_servers.split(","):
                            continue
                        result = interference(server, args, shorts, joined)
                        print(table([result]).splitlines()[-1], flush=True)
                    else:
                        plan = interleave(shorts, longs if mode == "mixed" else [], args.requests)
                        result = measured_load(server, mode, plan, args)
                    results.append(result)
            finally:
                server.stop()
    print()
    print(table(results))
    print()
    for line in verdicts(results):
        print(f"- {line}")
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    print(f"\n(written to {out / 'results.json'})")
    return 0 if results and all(r.failed == 0 and r.lost == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
