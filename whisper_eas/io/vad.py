"""Voice activity detection: where to cut long audio so that no word is cut in two.

A long recording is transcribed as chunks of at most 30 s (pipeline/sources.py,
`ChunkedWindows`), and each cut must fall where nobody speaks. Silero VAD decides: its 16 kHz
model scores every 32 ms (512 samples, with 64 samples of context) for the probability of speech.

Which VAD, and how it runs:

- The model is Silero VAD from the `silero-vad` package (MIT, maintained by its authors, with a
  release every few months), which ships the networks as files. We run its *sequence* export
  (`silero_vad_16k_sequence.onnx`: one call scores a whole region, the recurrent state carried
  inside) with onnxruntime. The package's own PyTorch entry point calls the network once per
  32 ms frame from Python, several times slower; faster-whisper bundles the same kind of export
  for the same reason.
- It scores only the search region before each cut (`VadOptions.search`, 6 s of every ~28-s
  chunk), not the whole file: on the 2-core AMD EPYC this was written on, Silero costs about
  2.5 ms of CPU per second of audio, so the whole of a 15-minute file would cost ~2 s, a third of
  what transcribing it with the int8 decoder takes. A region is scored from a fresh state with
  `VadOptions.context` seconds in front of it, which the model needs to settle.
- The cut goes at the quietest point of the region (the lowest speech probability, smoothed over
  `smooth` frames); among points within `tolerance` of the quietest, the latest wins, so chunks
  stay long. A region that is all speech still gets its least speech-like point.

Nothing is removed: every sample ends up in exactly one chunk, so what a VAD misses (soft speech
it scores as silence) is still transcribed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import MissingDependency

SAMPLE_RATE = 16000
FRAME = 512  # samples scored at once (32 ms)
CONTEXT_SAMPLES = 64  # samples of the previous frame each frame is scored with
MODEL_FILE = "silero_vad_16k_sequence.onnx"


@dataclass(frozen=True)
class VadOptions:
    """Where `ChunkedWindows` cuts long audio."""

    max_chunk: float = 30.0  # seconds: the longest chunk (one Whisper window)
    search: float = 6.0  # seconds before the longest possible end in which the cut is sought
    context: float = 0.5  # seconds scored in front of the search region, for the model's state
    smooth: int = 5  # frames (32 ms each) the speech probability is averaged over
    tolerance: float = 0.02  # probabilities this close to the quietest count as equally quiet

    def __post_init__(self):
        if not 1.0 <= self.max_chunk <= 30.0:
            raise ValueError(f"max_chunk must be between 1 and 30 s, got {self.max_chunk}")
        if not 0.0 < self.search < self.max_chunk:
            raise ValueError(f"search must be between 0 and max_chunk, got {self.search}")


@lru_cache(maxsize=None)
def _session():
    try:
        import onnxruntime
        import silero_vad
    except ImportError as e:
        raise MissingDependency(f"cutting long audio at silences needs the {e.name} package "
                             f"(pip install silero-vad onnxruntime), or transcribe with chunking='off'") from None
    path = os.path.join(os.path.dirname(silero_vad.__file__), "data", MODEL_FILE)
    if not os.path.isfile(path):
        raise MissingDependency(f"this silero-vad version has no {MODEL_FILE}: pip install 'silero-vad>=6.2'")
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1  # a recurrent net over one region: more threads do not help
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=options)


_lock = threading.Lock()


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """The probability of speech of every 32-ms frame of 16-kHz mono `audio` (a trailing part
    frame is dropped), scored from a fresh state."""
    n = len(audio) // FRAME
    if n == 0:
        return np.zeros(0, np.float32)
    frames = np.ascontiguousarray(audio[: n * FRAME], dtype=np.float32).reshape(n, FRAME)
    context = np.zeros((n, CONTEXT_SAMPLES), np.float32)
    context[1:] = frames[:-1, -CONTEXT_SAMPLES:]
    state = np.zeros((1, 1, 128), np.float32)
    session = _session()
    with _lock:  # one session, shared: onnxruntime's run is thread-safe, but 2 cores gain nothing
        out = session.run(None, {"input": np.concatenate([context, frames], axis=1), "h": state, "c": state})
    return np.asarray(out[0], np.float32).reshape(-1)


def quietest_cut(audio: np.ndarray, lo: int, hi: int, options: VadOptions = VadOptions()) -> int:
    """The sample in [lo, hi) of `audio` where speech is least likely: the middle of the quietest
    32-ms frame of that region (smoothed; the latest among equally quiet ones)."""
    lo, hi = max(0, lo), min(len(audio), hi)
    if hi - lo < FRAME:
        return hi
    start = max(0, lo - int(options.context * SAMPLE_RATE))
    start = lo - (lo - start) // FRAME * FRAME  # frames stay aligned with the region
    probs = speech_probabilities(audio[start:hi])[(lo - start) // FRAME:]
    if len(probs) == 0:
        return hi
    k = max(1, min(options.smooth, len(probs)))
    smooth = np.convolve(np.pad(probs, (k // 2, k - 1 - k // 2), mode="edge"), np.ones(k) / k, mode="valid")
    quiet = np.flatnonzero(smooth <= smooth.min() + options.tolerance)
    return lo + int(quiet[-1]) * FRAME + FRAME // 2
