"""Decoder milliseconds per generated token, by batch size and by the number of encoder tokens the
cross-attention reads: what EAS saves in the decoder of a long recording.

In long-form decoding the decoder dominates: every step of every row reads the cross-attention
keys and values of all kept encoder tokens in every layer. This measures one steady-state step
(self-attention cache filled to `--context` tokens) for batch sizes 1 and 8 and for 1500 (dense),
and fewer, kept tokens, in our default compute type and float32; `--kv-bf16` also times the
cross-attention keys/values held in bfloat16 (the query cast to match), which halves the bytes
read per step but on a CPU without native bfloat16 runs emulated. `--threads 1,2` times each
configuration at each thread count in turn: how much a second core buys a decoder step.

    python benchmarks/decoder_steps.py --model tiny.en --kept 1500,725,272
    python benchmarks/decoder_steps.py --compute-types default --batches 1,16 --kept 150 --threads 1,2

Prints a markdown table; the CPU is named in its first line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from whisper_eas import WhisperModel  # noqa: E402
from whisper_eas.hardware import describe  # noqa: E402
from whisper_eas.network import model as network  # noqa: E402
from whisper_eas.network.model import TokenSet  # noqa: E402


def step_ms(whisper: WhisperModel, batch: int, kept: int, context: int, steps: int, kv_bf16: bool) -> float:
    net = whisper.model
    dtype = next(net.encoder.parameters()).dtype
    # fewer tokens than a window holds come from merging: each carries its size, which the
    # cross-attention reads as a bias (proportional attention), as in a real EAS window
    size = None if kept == net.dims.n_audio_ctx else torch.ones(batch, kept)
    audio = TokenSet(torch.randn(batch, kept, net.dims.n_audio_state, dtype=dtype),
                     torch.arange(kept).repeat(batch, 1), size)
    dec = net.decoder
    with torch.inference_mode():
        cache = dec.new_cache(audio)
        if kv_bf16:
            cache.cross_k = [k.to(torch.bfloat16) for k in cache.cross_k]
            cache.cross_v = [v.to(torch.bfloat16) for v in cache.cross_v]
        tokens = torch.randint(0, 50000, (batch, context))
        dec(tokens, cache)
        last = tokens[:, -1:]
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            dec.logits(dec(last, cache)[:, -1])
            times.append(time.perf_counter() - t)
            cache.length = context  # every step at the same position: steady state
    return 1000 * statistics.median(times)


def _bf16_cross_attention():
    """Let decoder_attention take float32 queries against bfloat16 keys/values."""
    plain = network.decoder_attention

    def attention(q, k, v, mask=None):
        if k.dtype == torch.bfloat16 and q.dtype != torch.bfloat16:
            return plain(q.to(torch.bfloat16), k, v, None if mask is None else mask.to(torch.bfloat16)).to(q.dtype)
        return plain(q, k, v, mask)

    network.decoder_attention = attention


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--compute-types", default="default,float32")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--kept", default="1500,725,272", help="encoder tokens the cross-attention reads")
    p.add_argument("--context", type=int, default=40, help="decoder tokens already in the cache")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--kv-bf16", action="store_true", help="also time bfloat16 cross-attention keys/values")
    p.add_argument("--threads", default="", help="torch threads, e.g. 1,2: each is timed in turn (default: torch's)")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    if args.kv_bf16:
        _bf16_cross_attention()
    print(f"{describe('cpu')}, torch {torch.__version__}, {args.model}, context {args.context}, "
          f"median of {args.steps} steps\n")
    kept = [int(k) for k in args.kept.split(",")]
    variants = [False, True] if args.kv_bf16 else [False]
    print("| compute type | batch | cross K/V | threads | " + " | ".join(f"{k} tokens" for k in kept) + " |")
    print("|---|---:|---|---:|" + "---:|" * len(kept))
    for ct in args.compute_types.split(","):
        whisper = WhisperModel(args.model, compute_type=ct, eas=None)
        for b in (int(x) for x in args.batches.split(",")):
            for bf16 in variants:
                if bf16 and whisper.model.decoder.blocks[0].cross_kv.weight.dtype == torch.bfloat16:
                    continue
                kv = "bfloat16" if bf16 else str(next(whisper.model.encoder.parameters()).dtype).removeprefix("torch.")
                for t in threads:  # in turns, one after the other on the same model
                    torch.set_num_threads(t)
                    cells = [f"{step_ms(whisper, b, k, args.context, args.steps, bf16):.2f}" for k in kept]
                    print(f"| {whisper.compute_type} | {b} | {kv} | {t} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
