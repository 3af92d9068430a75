"""Where a batching server's time goes, without HTTP: the scheduler's stream rounds run in this
process on C clients' worth of dev-short clips, and the time of each part is added up per request.

This is `whisper-eas serve`'s work with the network taken out: C jobs in flight (a finished job
is replaced at once by the next clip, as a client sends its next request when answered), each
round `Runner.stream_round(jobs, per_job=1, steps=STEPS)` as the scheduler calls it, with
`--max-batch` rows (16: the default; 1: `serve --max-batch 1`). The parts are timed by wrapping
the runner's and the stream's methods:

    start     opening a clip (decoding it, the log-mel)
    encode    the encoder passes (the groups of new windows)
    join      new windows joining the stream (their cross-attention K/V: `new cache`)
    step      the stream's decoder steps: `forward` (the decoder) and `rules` (logit rules, choice);
              a window's fallback temperatures decode in the stream too
    finish    a window's end: its segments
    take      picking the round's windows

The batch sizes run in turns, `--repeat` times each, and the ratio of their req/s is printed per
turn with its median: this VM's speed drifts between runs, a ratio within one turn does not.

    python benchmarks/stream_rounds.py                       # 16 vs 1 rows, 160 requests, 2 turns
    python benchmarks/stream_rounds.py --batches 16 --requests 80 --repeat 1

Prints a markdown table; the CPU is named in its first line.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from whisper_eas import WhisperModel  # noqa: E402
from whisper_eas.apps.serve.scheduler import STEPS  # noqa: E402
from whisper_eas.hardware import describe  # noqa: E402
from whisper_eas.network import decoding  # noqa: E402
from whisper_eas.network.model import TextDecoder  # noqa: E402
from whisper_eas.pipeline.runner import Job, Runner  # noqa: E402

PARTS = [  # (owner, method, label): the parts timed, in the order they are printed
    (Runner, "start", "start"), (Runner, "_encode", "encode"), (decoding.DecodingStream, "join", "join"),
    (TextDecoder, "new_cache", "new cache"), (decoding.DecodingStream, "step", "step"),
    (decoding.Decoder, "_next_logits", "forward"), (decoding.DecodingStream, "_choose", "rules"),
    (Runner, "_finish_window", "finish"), (Runner, "_take", "take"),
]


def timed(seconds: collections.Counter) -> None:
    """Wrap every part so that its time adds to `seconds[label]` (a part inside another counts
    in both: forward and rules inside step, new cache inside join)."""
    for owner, name, label in PARTS:
        plain = getattr(owner, name)

        def wrapper(*args, _plain=plain, _label=label, **kwargs):
            t0 = time.perf_counter()
            try:
                return _plain(*args, **kwargs)
            finally:
                seconds[_label] += time.perf_counter() - t0

        setattr(owner, name, wrapper)


def serve(whisper: WhisperModel, clips: list, requests: int, clients: int, max_batch: int) -> float:
    """`requests` clips through stream rounds, `clients` in flight; returns the wall seconds."""
    options = whisper.resolve_options(eas="auto")
    runner = Runner(whisper, batch_size=max_batch)
    todo, active = list(range(requests)), []
    t0 = time.perf_counter()
    with torch.inference_mode():
        while todo or active:
            while todo and len(active) < clients:
                i = todo.pop(0)
                active.append(Job(i, whisper.window_source(clips[i % len(clips)], None, options, max_batch), options))
            for job in active:
                if job.info is None:
                    runner.start(job)
            # the scheduler picks max_batch jobs, oldest first, and lets each one window in flight
            runner.stream_round(active[:max_batch], per_job=1, steps=STEPS)
            active = [job for job in active if not job.done]
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=str(ROOT / "data" / "corpus"))
    p.add_argument("--model", default=None, help="default: the embedded default model")
    p.add_argument("--requests", type=int, default=160)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--batches", default="16,1", help="--max-batch values, run in turns")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    manifest = Path(args.corpus) / "dev-short.jsonl"
    if not manifest.exists():
        sys.exit("stream_rounds: build the corpus first: python benchmarks/corpus.py")
    clips = [str(manifest.parent / json.loads(line)["audio"]) for line in manifest.read_text().splitlines()]
    whisper = WhisperModel(args.model) if args.model else WhisperModel()
    batches = [int(b) for b in args.batches.split(",")]
    seconds: collections.Counter = collections.Counter()
    timed(seconds)
    for b in batches:  # warm-up: packed weights, allocator, caches
        serve(whisper, clips, min(args.clients, args.requests), args.clients, b)
    labels = [label for _, _, label in PARTS]
    print(f"{describe()}; {whisper.loaded.name}, {whisper.compute_type}, --eas auto; "
          f"{args.requests} dev-short requests, {args.clients} in flight\n")
    print("| max batch | turn | req/s | " + " | ".join(f"{label} ms" for label in labels) + " |")
    print("|---:|---:|---:|" + "---:|" * len(labels))
    rates = collections.defaultdict(list)
    for turn in range(1, args.repeat + 1):
        for b in batches:
            seconds.clear()
            wall = serve(whisper, clips, args.requests, args.clients, b)
            rates[b].append(args.requests / wall)
            per = [f"{1000 * seconds[label] / args.requests:.1f}" for label in labels]
            print(f"| {b} | {turn} | {rates[b][-1]:.2f} | " + " | ".join(per) + " |", flush=True)
    print("\nms: per request, each part's total time over the requests.")
    if len(batches) == 2:
        ratios = [x / y for x, y in zip(rates[batches[0]], rates[batches[1]])]
        print(f"req/s ratio {batches[0]} / {batches[1]} rows per turn: {', '.join(f'{r:.2f}' for r in ratios)}; "
              f"median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
