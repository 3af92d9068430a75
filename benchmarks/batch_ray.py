"""`whisper-eas batch --ray` with 1 and 2 actors against the single-process CLI on the same files:
files per second and real-time factor, and Ray's fixed overhead.

Every run is a fresh `whisper-eas` process, as a user starts it, so each figure includes the
process start, the model load and (on Ray) starting a local Ray and its actors:

    transcribe      whisper-eas transcribe FILES -o DIR            one process, all cores
    batch           whisper-eas batch MANIFEST -o DIR              the same, through the batch runner
    ray xN          whisper-eas batch MANIFEST -o DIR --ray --actors N --cpus-per-actor CORES/N

Ray's fixed overhead is measured on one short file: `ray x1` minus `batch` there. It is paid once
per run (Ray starting, the actors starting and loading their model), so it matters for a small
corpus only; `rate w/o overhead` is files / (wall - overhead).

    python benchmarks/batch_ray.py                        # 16 files of dev-short, actors 1 and 2
    python benchmarks/batch_ray.py --limit 80 --repeat 3  # the measurement for docs/batch.md

Run it on a quiet machine: the runs are timed by the wall clock."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from whisper_eas.evaluation.manifest import load_dataset  # noqa: E402
from whisper_eas.io.audio import probe_duration  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default=str(ROOT / "data" / "corpus" / "dev-short.jsonl"))
    p.add_argument("--limit", type=int, default=16, help="first N files of the manifest (default 16)")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--actors", default="1,2", help="actor counts to run (default 1,2)")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration; the fastest counts")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="cores to share out (default: all)")
    args = p.parse_args()

    files = [dict(id=u.id, audio=u.audio) for u in load_dataset(args.manifest, args.limit)]
    audio_s = sum(probe_duration(f["audio"]) or 0.0 for f in files)
    work = Path(tempfile.mkdtemp(prefix="batch-ray-bench-"))
    try:
        manifest, one = _manifest(work / "all.jsonl", files), _manifest(work / "one.jsonl", files[:1])
        common = ["--model", args.model, "-f", "txt", "-q"]
        runs = {"transcribe": ["transcribe", *(f["audio"] for f in files), *common],
                "batch": ["batch", str(manifest), *common]}
        for n in (int(a) for a in args.actors.split(",")):
            runs[f"ray x{n}"] = ["batch", str(manifest), *common, "--ray", "--actors", str(n),
                                 "--cpus-per-actor", str(max(1, args.cores // n))]
        one_file = {"batch": ["batch", str(one), *common],
                    "ray x1": ["batch", str(one), *common, "--ray", "--actors", "1", "--cpus-per-actor", str(args.cores)]}
        overhead = _timed(one_file["ray x1"], work, args.repeat) - _timed(one_file["batch"], work, args.repeat)
        walls = {name: _timed(argv, work, args.repeat) for name, argv in runs.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{len(files)} files, {audio_s:.1f} s of audio, {args.model}, {args.cores} cores; "
          f"best of {args.repeat}; Ray's fixed overhead (1 file, ray x1 - batch): {overhead:.1f} s\n")
    print("| run | wall s | files/s | real-time factor | rate w/o overhead (files/s) | vs transcribe |")
    print("|---|---|---|---|---|---|")
    for name, wall in walls.items():
        fixed = overhead if name.startswith("ray") else 0.0
        print(f"| {name} | {wall:.1f} | {len(files) / wall:.2f} | {wall / audio_s:.3f} | "
              f"{len(files) / max(wall - fixed, 1e-9):.2f} | {walls['transcribe'] / wall:.2f}x |")


def _manifest(path: Path, files) -> Path:
    path.write_text("".join(json.dumps(f) + "\n" for f in files))
    return path


def _timed(argv, work: Path, repeat: int) -> float:
    """The fastest of `repeat` runs of `whisper-eas ARGV -o <fresh folder>`, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        out = Path(tempfile.mkdtemp(dir=work))
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "whisper_eas", *argv, "-o", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"whisper-eas {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        best = min(best, wall)
    return best


if __name__ == "__main__":
    main()
