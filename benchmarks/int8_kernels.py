"""The probes behind docs/longform.md's kernel and encoder figures, side by side in one run.

1. One linear layer of tiny.en's decoder shapes (384 -> 1536, and the 384 -> 51,864 output
   embedding) at 1 and 8 rows, milliseconds per call (median of 30): float32, PyTorch's
   weight-only `_weight_int8pack_mm` ('pack'), fbgemm's fp16 kernel on the int8 rows ('fbgemm',
   what `int8_kernel` picks without AVX-512) and fbgemm's dynamic int8 linear (not used: its
   activation scale spans the batch).
2. tiny.en's encoder on 1, 2, 4 and 8 random 30-s windows: milliseconds per window (one warm-up,
   then one timed pass).

    python benchmarks/int8_kernels.py
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from whisper_eas import WhisperModel  # noqa: E402
from whisper_eas.hardware import describe  # noqa: E402
from whisper_eas.network.quantize import Int8Linear  # noqa: E402


def ms(fn, n=30):
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning)  # torch's quantized-tensor deprecation
    print(f"{describe('cpu')}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| product | rows | float32 | pack | fbgemm fp16 (used) | fbgemm dynamic int8 |")
    print("|---|---:|---:|---:|---:|---:|")
    with torch.inference_mode():
        for out_f, in_f in ((1536, 384), (51864, 384)):
            w, b = torch.randn(out_f, in_f), torch.randn(out_f)
            layer = Int8Linear(w, b, torch.float32)  # the package's int8 rows and scales, and their fp16 packing
            q, scale = layer.qweight, layer.scale
            fp16 = layer._fbgemm()[0]
            qt = torch._make_per_channel_quantized_tensor(q, scale.double(), torch.zeros(out_f, dtype=torch.long), 0)
            dyn = torch.ops.quantized.linear_prepack(qt, b)
            for rows in (1, 8):
                x = torch.randn(rows, in_f)
                cells = [ms(lambda: torch.nn.functional.linear(x, w, b)),
                         ms(lambda: torch.ops.aten._weight_int8pack_mm(x, q, scale) + b),
                         ms(lambda: torch.ops.quantized.linear_dynamic_fp16(x, fp16)),
                         ms(lambda: torch.ops.quantized.linear_dynamic(x, dyn, True))]
                print(f"| {rows}x{in_f} by {in_f}x{out_f} | {rows} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
        print("\n| encoder windows per batch | ms per window |\n|---:|---:|")
        encoder = WhisperModel("tiny.en", eas=None).model.encoder
        for n in (1, 2, 4, 8):
            mel = torch.randn(n, 80, 3000)
            encoder(mel)
            t = time.perf_counter()
            encoder(mel)
            print(f"| {n} | {1000 * (time.perf_counter() - t) / n:.0f} |")


if __name__ == "__main__":
    main()
