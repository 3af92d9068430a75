"""Throughput mode: files per second with `--batch-size N` against batch size 1.

Windows of several files share the encoder and decoder batches; finished items leave the decoder
batch. For each configuration and batch size this prints files/s, the ratio to batch size 1, and
the share of transcripts identical to the batch-1 ones (batching changes float summation order,
which can flip a rare near-tie).

    python benchmarks/throughput.py data/corpus/dev-short.jsonl --batch-sizes 1,4,8,16 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from whisper_eas.hardware import describe as describe_machine  # noqa: E402
from whisper_eas import EVAL_OPTIONS  # noqa: E402
from whisper_eas.evaluation.manifest import load_dataset  # noqa: E402
from whisper_eas.evaluation.metrics import corpus_wer, word_errors  # noqa: E402
from whisper_eas import WhisperModel  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,4,8,16")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--configs", nargs="+", default=None,
                    help="COMPUTE:EAS pairs (default: float32:off float32:auto int8:auto on CPU, "
                         "float16:off float16:auto on CUDA)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per batch size (median reported)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    utts = load_dataset(args.manifest, limit=args.limit)
    files = [u.audio for u in utts]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    cuda = args.device.startswith("cuda")
    configs = args.configs or (["float16:off", "float16:auto"] if cuda else ["float32:off", "float32:auto", "int8:auto"])
    print(f"# throughput: {args.model}, {len(files)} files from {args.manifest}; "
          f"{describe_machine(args.device, args.threads)}")
    print("| compute | EAS | batch | seconds, median (range) | files/s | vs batch 1 | WER | identical to batch 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for config in configs:
        compute, eas = config.split(":", 1)
        whisper = WhisperModel(args.model, device=args.device, compute_type=compute, eas=eas)
        list(whisper.transcribe_batch(files[:4], EVAL_OPTIONS, batch_size=4))  # warm-up
        # the batch sizes take turns within each repeat, so that a busy spell of a shared machine
        # hits them alike; the median of the repeats is reported
        runs = {b: [] for b in sizes}
        texts = {}
        for _ in range(args.repeats):
            for b in sizes:
                t0 = time.perf_counter()
                results = sorted(whisper.transcribe_batch(files, EVAL_OPTIONS, batch_size=b), key=lambda r: r.index)
                runs[b].append(time.perf_counter() - t0)
                texts.setdefault(b, ["".join(s.text for s in r.segments).strip() for r in results])
        label = whisper.eas.describe() if whisper.eas else "dense"
        base_rate = len(files) / statistics.median(runs[sizes[0]])
        for b in sizes:
            seconds = statistics.median(runs[b])
            rate = len(files) / seconds
            same = sum(x == y for x, y in zip(texts[b], texts[sizes[0]])) / len(files)
            wer = corpus_wer([word_errors(u.text, t) for u, t in zip(utts, texts[b])])
            spread = f"{min(runs[b]):.2f}-{max(runs[b]):.2f}" if len(runs[b]) > 1 else f"{seconds:.2f}"
            print(f"| {compute} | {label} | {b} | {seconds:.2f} ({spread}) | {rate:.2f} | {rate / base_rate:.2f}x | "
                  f"{wer:.2%} | {same:.0%} |", flush=True)

if __name__ == "__main__":
    main()
