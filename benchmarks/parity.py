"""Dense parity and speed against faster-whisper with the same CTranslate2 weights.

For each utterance of a manifest: our dense greedy transcript and faster-whisper's (beam 1,
temperature 0, no timestamps, same thread count), the share of identical transcripts, both WERs
(Whisper's English normalizer), and end-to-end time per engine measured side by side in one run
(faster-whisper in float32 and int8).

Parity runs our engine with `padding="zeros"`, the feature padding faster-whisper uses; our
default `padding="silence"` is reported beside it.

    python benchmarks/parity.py data/corpus/dev.jsonl --model tiny.en
    python benchmarks/parity.py data/corpus/dev.jsonl --model base --json runs/parity-base.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whisper_eas import EVAL_OPTIONS  # noqa: E402
from whisper_eas.evaluation.bench import ct2_directory  # noqa: E402
from whisper_eas.evaluation.manifest import load_dataset  # noqa: E402
from whisper_eas.evaluation.metrics import corpus_wer, word_errors  # noqa: E402


def run_ours(model, utterances, threads, padding):
    from whisper_eas import WhisperModel

    whisper = WhisperModel(model, cpu_threads=threads, eas=None)
    opts = EVAL_OPTIONS.replace(padding=padding)
    list(whisper.transcribe(utterances[0].audio, opts)[0])  # warm-up
    texts, t0 = [], time.perf_counter()
    for u in utterances:
        segments, _ = whisper.transcribe(u.audio, opts)
        texts.append("".join(s.text for s in segments).strip())
    return texts, time.perf_counter() - t0


def run_faster_whisper(path, utterances, threads, compute_type):
    from faster_whisper import WhisperModel

    fw = WhisperModel(path, device="cpu", compute_type=compute_type, cpu_threads=threads)
    opts = dict(beam_size=1, temperature=0.0, without_timestamps=True, condition_on_previous_text=False,
                language="en" if not fw.model.is_multilingual else None)
    list(fw.transcribe(utterances[0].audio, **opts)[0])
    texts, t0 = [], time.perf_counter()
    for u in utterances:
        segments, _ = fw.transcribe(u.audio, **opts)
        texts.append("".join(s.text for s in segments).strip())
    return texts, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--no-int8", action="store_true", help="skip the faster-whisper int8 run")
    ap.add_argument("--json", default=None, help="write the per-utterance comparison here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    utts = load_dataset(args.manifest, limit=args.limit)
    path = ct2_directory(args.model)
    ours, t_ours = run_ours(args.model, utts, args.threads, "zeros")
    ours_silence, t_silence = run_ours(args.model, utts, args.threads, "silence")
    fw32, t_fw32 = run_faster_whisper(path, utts, args.threads, "float32")
    fw8, t_fw8 = (None, None) if args.no_int8 else run_faster_whisper(path, utts, args.threads, "int8")

    same = sum(a == b for a, b in zip(ours, fw32))
    wer = lambda texts: corpus_wer([word_errors(u.text, t) for u, t in zip(utts, texts)])  # noqa: E731
    rows = [("ours, zeros padding", wer(ours), t_ours), ("ours, silence padding", wer(ours_silence), t_silence),
            ("faster-whisper float32", wer(fw32), t_fw32)]
    if fw8 is not None:
        rows.append(("faster-whisper int8", wer(fw8), t_fw8))
    print(f"# parity: {args.model} on {args.manifest} ({len(utts)} utterances), {args.threads} threads, "
          f"{platform.processor() or platform.machine()}")
    print(f"identical transcripts (ours with zeros padding vs faster-whisper float32): "
          f"{same}/{len(utts)} = {same / len(utts):.1%}")
    print(f"{'engine':<24} {'WER':>7} {'seconds':>8} {'x ours':>7}")
    for name, w, t in rows:
        print(f"{name:<24} {w:7.2%} {t:8.2f} {t / t_ours:7.2f}")
    diffs = [(u.id, u.text, a, b) for u, a, b in zip(utts, ours, fw32) if a != b]
    for uid, ref, a, b in diffs[:20]:
        print(f"- {uid}\n    ref:  {ref}\n    ours: {a}\n    fw:   {b}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "model": args.model, "manifest": args.manifest, "threads": args.threads, "identical": same,
            "n": len(utts), "rows": [dict(engine=n, wer=w, seconds=t) for n, w, t in rows],
            "utterances": [dict(id=u.id, ref=u.text, ours=a, faster_whisper=b) for u, a, b in zip(utts, ours, fw32)],
        }, indent=1))


if __name__ == "__main__":
    main()
