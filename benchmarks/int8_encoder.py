"""Would an int8 encoder pay on this CPU? The long-form question of docs/longform.md, measured.

Runs the long-form set twice in one process with our defaults (chunked, batch 8, int8 decoder,
`--eas auto`): once as shipped (float32 encoder linears) and once with every encoder linear (QKV,
output, both MLP layers) replaced by fbgemm's dynamic int8 linear: int8 weights per output
channel, activations quantized per call to 7 bits (`reduce_range`; 8-bit activations overflow
fbgemm's AVX2 kernel). The activation scale spans the tensor it is given, so each window goes
through its own call: a window's result does not depend on its batch. The conv stem and the
attention stay float32. Prints wall seconds, the runner's encoder seconds and WER for each,
alternating (shipped, int8, shipped, int8) so a slow spell of a shared machine hits both, and
the decoder steps (a window that decodes differently can fall into temperature fallback).

    python benchmarks/int8_encoder.py data/corpus/longform-dev.jsonl
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from whisper_eas import TranscribeOptions, WhisperModel  # noqa: E402
from whisper_eas.evaluation.manifest import load_dataset  # noqa: E402
from whisper_eas.evaluation.metrics import corpus_wer, word_errors  # noqa: E402
from whisper_eas.hardware import describe  # noqa: E402


class PerWindowInt8(nn.Module):
    """A dynamic int8 copy of `linear`, called once per window (dim 0) so that the activation
    scale of one window never depends on another."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        qconfig = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        self.q = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), qconfig, dtype=torch.qint8)[0]

    def forward(self, x):
        return torch.cat([self.q(x[i : i + 1]) for i in range(x.shape[0])])


def int8_encoder(whisper: WhisperModel) -> None:
    for block in whisper.model.encoder.blocks:
        block.attn.qkv = PerWindowInt8(block.attn.qkv)
        block.attn.out = PerWindowInt8(block.attn.out)
        block.mlp[0] = PerWindowInt8(block.mlp[0])
        block.mlp[2] = PerWindowInt8(block.mlp[2])


def run(whisper: WhisperModel, utts, batch: int):
    texts, encode, steps = [], 0.0, 0
    t0 = time.perf_counter()
    for u in utts:
        segments, info = whisper.transcribe(u.audio, TranscribeOptions(), batch_size=batch)
        texts.append(" ".join(s.text.strip() for s in segments).strip())
        encode += info.timings.get("encode", 0.0)
        steps += info.decoder_steps
    wall = time.perf_counter() - t0
    wer = corpus_wer([word_errors(u.text, t) for u, t in zip(utts, texts)])
    return wall, encode, steps, wer, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "fbgemm"
    utts = load_dataset(args.manifest)
    shipped = WhisperModel(args.model, eas="auto")
    quantized = WhisperModel(args.model, eas="auto")
    int8_encoder(quantized)
    print(f"# {args.model}, {len(utts)} files of {args.manifest}; {describe('cpu', args.threads)}")
    print(f"# defaults: {shipped.compute_type}, eas {shipped.eas.describe() if shipped.eas else 'off'}, batch {args.batch_size}")
    list(shipped.transcribe(utts[0].audio, TranscribeOptions())[0])  # warm-up
    list(quantized.transcribe(utts[0].audio, TranscribeOptions())[0])
    print("| encoder linears | pass | wall s | encoder s | decoder steps | WER | transcripts = shipped |")
    print("|---|---:|---:|---:|---:|---:|---|")
    first = None
    for r in range(args.repeats):
        for name, whisper in (("float32 (shipped)", shipped), ("int8, 7-bit activations", quantized)):
            wall, enc, steps, wer, texts = run(whisper, utts, args.batch_size)
            first = first or texts
            same = sum(a == b for a, b in zip(first, texts))
            print(f"| {name} | {r + 1} | {wall:.2f} | {enc:.2f} | {steps} | {100 * wer:.2f}% | {same}/{len(texts)} |",
                  flush=True)


if __name__ == "__main__":
    main()
