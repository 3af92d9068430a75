"""The small measurements docs/performance.md quotes to explain the big tables, one subcommand
each (tiny.en, 2 threads):

    python benchmarks/probes.py frontend      # a 5-s 44.1 kHz stereo MP3 / 16 kHz FLAC, part by part
    python benchmarks/probes.py matvec        # the output embedding's x @ W.T: memory bandwidth
    python benchmarks/probes.py mixed-batch   # 8 dev windows encoded one by one vs as one padded batch
    python benchmarks/probes.py batch-split   # encoder / decoder seconds over dev-short, batch 1 vs 16
    python benchmarks/probes.py rss-curve [--compute-type int8] [--eas auto|off]
                                              # RSS per minute of the 3-hour file's start
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from components import five_second_clips, median_time  # noqa: E402
from whisper_eas.io.audio import AudioWindows, load_audio, log_mel_spectrogram  # noqa: E402
from whisper_eas import EVAL_OPTIONS  # noqa: E402
from whisper_eas.evaluation.manifest import load_dataset  # noqa: E402
from whisper_eas import WhisperModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV_SHORT = ROOT / "data" / "corpus" / "dev-short.jsonl"


def frontend(args):
    import av

    flac, mp3 = five_second_clips(Path(tempfile.mkdtemp()))
    for path in (flac, mp3):
        def decode_only():
            with av.open(str(path)) as c:
                for _ in c.decode(audio=0):
                    pass

        audio = load_audio(path)
        parts = {"decode only": decode_only, "decode + resample (load_audio)": lambda: load_audio(path),
                 "log-mel": lambda: log_mel_spectrogram(audio, 80),
                 "all (AudioWindows.window)": lambda: AudioWindows(path).window(0)}
        print(path.name)
        for name, fn in parts.items():
            fn()
            print(f"  {name}: {1000 * median_time(fn, 20):.2f} ms")


def matvec(args):
    w = WhisperModel("tiny.en", eas=None).model.decoder.token_embedding.weight.detach()
    for dtype in (torch.float32, torch.bfloat16):
        m, x = w.to(dtype), torch.randn(1, w.shape[1], dtype=dtype)
        seconds = median_time(lambda: x @ m.T, 50)
        print(f"{dtype}: {1000 * seconds:.2f} ms, {m.numel() * m.element_size() / seconds / 1e9:.1f} GB/s")


def mixed_batch(args):
    whisper = WhisperModel("tiny.en", compute_type="int8", eas="auto")
    files = [u.audio for u in load_dataset(str(DEV_SHORT))][:8]
    windows = [AudioWindows(f).window(0) for f in files]
    feats, frames = torch.stack([f for f, _ in windows]), [n for _, n in windows]
    with torch.inference_mode():
        alone = lambda: [whisper.encode(feats[i : i + 1], [frames[i]], whisper.eas) for i in range(8)]  # noqa: E731
        together = lambda: whisper.encode(feats, frames, whisper.eas)  # noqa: E731
        print("tokens kept one by one:", [t.x.shape[1] for t in alone()], "; as one batch:", tuple(together().x.shape))
        print(f"one by one: {median_time(alone, 3):.3f} s; one padded batch: {median_time(together, 3):.3f} s")


def batch_split(args):
    files = [u.audio for u in load_dataset(str(DEV_SHORT))]
    whisper = WhisperModel("tiny.en", compute_type="int8", eas="auto")
    list(whisper.transcribe_batch(files[:8], EVAL_OPTIONS, batch_size=8))
    for b in (1, 16):
        t0, totals = time.perf_counter(), collections.Counter()
        for r in whisper.transcribe_batch(files, EVAL_OPTIONS, batch_size=b):
            totals.update(r.info.timings)
        print(f"batch {b}: {time.perf_counter() - t0:.2f} s, encoder {totals['encode']:.2f} s, "
              f"decoder {totals['decode']:.2f} s")


def rss_curve(args):
    import psutil

    path = ROOT / "data" / "scratch" / "long-3h.flac"
    if not path.exists():
        sys.exit("probes: make the file first: python benchmarks/longform_memory.py --hours 3")
    proc = psutil.Process(os.getpid())
    eas = None if args.eas == "off" else args.eas
    whisper = WhisperModel("tiny.en", compute_type=args.compute_type, eas=eas)
    line, minute = [f"{proc.memory_info().rss / 2**20:.0f}"], 0
    for s in whisper.transcribe(path)[0]:
        if s.end >= 60 * (minute + 1):
            minute += 1
            line.append(f"{proc.memory_info().rss / 2**20:.0f}")
        if minute >= 3:
            break
    print(f"{args.compute_type} --eas {args.eas}: RSS MB after loading, then at minutes 1-3: {' -> '.join(line)}")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probe", choices=["frontend", "matvec", "mixed-batch", "batch-split", "rss-curve"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compute-type", default="int8", help="rss-curve: compute type")
    ap.add_argument("--eas", default="auto", help="rss-curve: auto or off (one process per run: RSS is a high-water mark)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    {"frontend": frontend, "matvec": matvec, "mixed-batch": mixed_batch, "batch-split": batch_split,
     "rss-curve": rss_curve}[args.probe](args)


if __name__ == "__main__":
    main()
