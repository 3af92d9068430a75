"""Component timings against the issue's targets: the audio front end, the encoder on one 30-s
window, and the decoder's steady-state time per token, for each compute type.

- front end: decode + resample + log-mel of a 5-s clip, from a 16 kHz FLAC and from a 44.1 kHz
  stereo MP3 (made from the JFK sample with PyAV), median of 20 runs;
- encoder: one full 30-s window, dense and with the padding rule (`-1:0 pad=32`, jfk's 11 s),
  median of 5;
- decoder: ms per generated token in steady state (one stream, cache filled to 20 tokens,
  cross-attention over 1500 tokens dense or the EAS-kept ones), median of 5 runs of 30 steps.

    python benchmarks/components.py --model tiny.en
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from whisper_eas.io.audio import SAMPLE_RATE, AudioWindows, load_audio  # noqa: E402
from whisper_eas.network.eas import parse_eas  # noqa: E402
from whisper_eas import WhisperModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JFK = ROOT / "samples" / "jfk.flac"


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def five_second_clips(tmp: Path):
    import av
    import soundfile

    audio = load_audio(JFK)[: 5 * SAMPLE_RATE]
    flac = tmp / "clip5.flac"
    soundfile.write(flac, audio, SAMPLE_RATE)
    mp3 = tmp / "clip5_44k_stereo.mp3"
    up = np.interp(np.arange(0, len(audio), SAMPLE_RATE / 44100), np.arange(len(audio)), audio).astype(np.float32)
    with av.open(str(mp3), "w") as out:
        stream = out.add_stream("mp3", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([up, up])[None].reshape(1, -1), format="flt", layout="stereo")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return flac, mp3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compute-types", default="float32,bfloat16,int8")
    ap.add_argument("--eas", default="-1:0 pad=32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        flac, mp3 = five_second_clips(Path(tmp))
        print(f"# components: {args.model}, {args.threads} threads\n")
        print("| front end (5-s clip: decode + resample + log-mel) | ms |\n|---|---:|")
        for label, path in (("16 kHz mono FLAC", flac), ("44.1 kHz stereo MP3", mp3)):
            run = lambda: AudioWindows(path).window(0)  # noqa: E731
            run()
            print(f"| {label} | {1000 * median_time(run, 20):.1f} |")

    eas = parse_eas(args.eas)
    feats, n = AudioWindows(JFK).window(0)
    print(f"\n| compute type | encoder, dense 30-s window (ms) | encoder, `{args.eas}` (ms) | "
          f"decoder ms/token, dense | decoder ms/token, `{args.eas}` |\n|---|---:|---:|---:|---:|")
    for compute in args.compute_types.split(","):
        whisper = WhisperModel(args.model, compute_type=compute, eas=None)
        row = [compute]
        with torch.inference_mode():
            for config in (None, eas):
                encode = lambda: whisper.encode(feats[None], [n], config)  # noqa: E731
                encode()
                row.append(f"{1000 * median_time(encode, 5):.0f}")
            for config in (None, eas):
                audio = whisper.encode(feats[None], [n], config)
                dec = whisper.model.decoder
                token = torch.tensor([[whisper.tokenizer.sot] + whisper.tokenizer.encode(" And so my fellow")])

                def steps():
                    cache = dec.new_cache(audio)
                    dec(token, cache)
                    last = token[:, -1]
                    for _ in range(30):
                        last = dec.logits(dec(last[:, None], cache)[:, 0]).float().argmax(-1)

                steps()
                per_run = median_time(steps, 5)
                cache_only = median_time(lambda: dec(token, dec.new_cache(audio)), 5)
                row.append(f"{1000 * (per_run - cache_only) / 30:.2f}")
        print("| " + " | ".join(row[:1] + row[1:3] + row[3:5]) + " |")


if __name__ == "__main__":
    main()
