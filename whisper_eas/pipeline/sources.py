"""Where windows come from: the seam between the runner and audio.

The runner (runner.py) decodes 30-s windows in batches; it does not read audio. A job gets its
windows from a `WindowSource`, which alone decides what the next window is (the seek rule), so a
VAD chunker (speech regions cut from a file), a server's request stream (audio arriving in
pieces) or anything else that yields log-mel windows plugs in without touching the decoding loop.

The protocol, one job at a time:

    duration = source.open()            # read the header / first samples (AudioError if unreadable)
    while not source.done:
        for window in source.ready():   # at most one window per stream not waiting for its result
            ...                         # the runner decodes it, batched with other jobs' windows
            source.advance(window, consumed_frames)
    source.close()

`consumed_frames` is how many of the window's frames the decoder used up (the end of the last
complete segment, or the whole window); the source moves its stream on by that much - never
backwards. A source may hold several independent streams (`Window.stream`): the prompt and seek
state is kept per stream by the runner.

`FileWindows` is openai-whisper's sequential decoding: one stream over a file or an array, its
seek rule over `AudioWindows` (each window starts where the previous one's consumed frames end,
and the text so far is the next window's prompt).

`ChunkedWindows` is the default for long audio: the file is cut at silences (io/vad.py) into
chunks of at most 30 s, and each chunk is a stream of its own, so the windows of one file decode
together in a batch. Within a chunk the seek rule still holds (a chunk whose decoding stops short
of its end gets a follow-up window for the rest, prompted with the chunk's text so far); what a
chunk does not get is the previous chunk's text as its prompt. On the long-form sets that costs
no accuracy (docs/longform.md has the measurements), and the cuts at silences keep every word in
one piece, which a fixed 30-s grid does not.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, Iterator, List, Optional

import numpy as np
from torch import Tensor

from ..errors import AudioError
from ..io.audio import (HOP_LENGTH, SAMPLE_RATE, AudioSource, AudioWindows, RawFormat, probe_duration,
                        source_name, stream_audio)
from ..io.vad import VadOptions, quietest_cut


@dataclass
class Window:
    """One 30-s window of log-mel features, placed on its file's timeline."""

    features: Tensor  # (n_mels, 3000) log-mel, padded
    frames: int  # audio frames in it (the rest is padding)
    start: int  # first frame on the file's timeline (= openai-whisper's seek)
    offset: float  # seconds on the file's timeline of frame 0 of this window (timestamps are added to it)
    stream: int = 0  # which stream of the source it belongs to (prompt/seek state is per stream)
    end: Optional[float] = None  # seconds: where the stream's audio ends; timestamps are kept below it
    inaudible: bool = False  # every sample under -80 dBFS (digital silence): nothing to decode


class WindowSource(ABC):
    """Where one job's windows come from. The runner asks for the windows that are ready now,
    decodes them in batches with other jobs' windows, and hands each one back with how many of
    its frames the decoder consumed; the source alone decides what comes next (the seek rule)."""

    #: seconds of audio, known exactly once the stream is read to its end (None until then)
    duration: Optional[float] = None

    def length_hint(self) -> Optional[float]:
        """A cheap guess of the duration before `open` (a container header), for sorting a batch
        by length; None when there is none."""
        return None

    @abstractmethod
    def open(self) -> Optional[float]:
        """Read the header / first samples; returns the duration if known. Raises AudioError."""

    @abstractmethod
    def ready(self) -> List[Window]:
        """The windows that can be decoded now: at most one per stream that is not waiting for
        its result. Empty when everything is waiting or the source is done. Raises AudioError."""

    @abstractmethod
    def advance(self, window: Window, consumed_frames: int) -> None:
        """`window`'s result is in: its stream moves on by `consumed_frames` (always forward)."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """True once every stream has been consumed to its end."""

    def stream_done(self, stream: int) -> bool:
        """True once stream `stream` exists and has been consumed to its end. Streams are
        numbered 0, 1, 2, ... in the order of the audio, so the runner hands out a stream's
        segments only when every earlier stream is done: the text comes in the audio's order.
        (This default suits a source of one stream.)"""
        return stream == 0 and self.done

    def close(self) -> None:
        """Release buffers (the runner calls it when the job ends, also on an error)."""

    def warnings(self) -> List[str]:
        """What went wrong reading the input without stopping it (e.g. a stream truncated
        part-way), one line each; the runner puts them in the job's TranscriptionInfo."""
        return []


class FileWindows(WindowSource):
    """One stream over a file or an array, read as a stream with bounded memory: each window
    starts where the previous one's consumed frames end (openai-whisper's seek rule)."""

    def __init__(self, audio: AudioSource, raw: Optional[RawFormat] = None, n_mels: int = 80,
                 padding: str = "silence"):
        self.audio, self.raw, self.n_mels, self.padding = audio, raw, n_mels, padding
        self.seek = 0  # the next window's first frame
        self._windows: Optional[AudioWindows] = None
        self._waiting = False
        self._done = False
        self.duration: Optional[float] = None
        self._warnings: List[str] = []  # filled by the audio reader

    def length_hint(self) -> Optional[float]:
        return self.header_duration

    @cached_property
    def header_duration(self) -> Optional[float]:
        """The duration in the container's header (None: unknown), read once: batching sorts by
        it before the job starts, and `open` needs it again."""
        return probe_duration(self.audio, self.raw)

    def open(self) -> Optional[float]:
        self._windows = AudioWindows(self.audio, self.raw, self.n_mels, self.padding, warnings=self._warnings)
        duration = self.header_duration
        first = self._windows.available_frames(0)  # decodes the first window's samples
        self._read_duration()
        if self.duration is not None:
            duration = self.duration
        if first == 0:
            raise AudioError(f"{source_name(self.audio)}: too short to transcribe (under 10 ms of audio)")
        return duration

    def ready(self) -> List[Window]:
        if self._done or self._waiting:
            return []
        n = self._windows.available_frames(self.seek)
        if n <= 0:
            self._finish()
            return []
        features, n = self._windows.window(self.seek)
        self._waiting = True
        quiet = self._windows.inaudible(self.seek, n)
        return [Window(features, n, self.seek, self.seek * HOP_LENGTH / SAMPLE_RATE, inaudible=quiet)]

    def advance(self, window: Window, consumed_frames: int) -> None:
        if consumed_frames <= 0:  # always move forward
            consumed_frames = window.frames
        self.seek = window.start + consumed_frames
        self._waiting = False
        self._windows.release_before(self.seek * HOP_LENGTH)
        if self._windows.available_frames(self.seek) <= 0:
            self._finish()

    @property
    def done(self) -> bool:
        return self._done

    def close(self) -> None:
        self._windows = None

    def warnings(self) -> List[str]:
        return list(self._warnings)

    def _finish(self) -> None:
        self._done = True
        self._read_duration()

    def _read_duration(self) -> None:
        if self._windows is not None and self._windows.n_samples is not None:
            self.duration = self._windows.n_samples / SAMPLE_RATE


class _Chunk:
    """One chunk of a `ChunkedWindows` source: its samples as a little file of their own."""

    def __init__(self, index: int, start: int, samples: np.ndarray, n_mels: int, padding: str):
        self.index, self.start, self.n_samples = index, start, len(samples)
        self.windows = AudioWindows(samples, None, n_mels, padding)
        self.seek = 0  # frames into the chunk
        self.waiting = False
        self.done = self.windows.available_frames(0) <= 0  # under 10 ms: nothing to decode

    def window(self) -> Window:
        features, n = self.windows.window(self.seek)
        start = self.start / SAMPLE_RATE
        self.waiting = True
        return Window(features, n, self.start // HOP_LENGTH + self.seek, start + self.seek * HOP_LENGTH / SAMPLE_RATE,
                      stream=self.index, end=start + self.n_samples / SAMPLE_RATE,
                      inaudible=self.windows.inaudible(self.seek, n))

    def advance(self, consumed_frames: int) -> None:
        self.seek += consumed_frames
        self.waiting = False
        self.done = self.windows.available_frames(self.seek) <= 0


class ChunkedWindows(WindowSource):
    """A file or an array cut at silences into chunks of at most `vad.max_chunk` seconds, each
    chunk its own stream, at most `max_streams` of them open at a time.

    The audio is read as a stream: a cut is sought (io/vad.py: the quietest point of the last
    `vad.search` seconds before the longest possible end) only when a stream is free to start
    the next chunk, and a chunk's samples are dropped when it is done, so memory stays bounded
    by `max_streams` chunks plus one read-ahead block, however long the file. Audio shorter than
    one chunk is one chunk: the same single window `FileWindows` gives."""

    def __init__(self, audio: AudioSource, raw: Optional[RawFormat] = None, n_mels: int = 80,
                 padding: str = "silence", max_streams: int = 8, vad: VadOptions = VadOptions()):
        if max_streams < 1:
            raise ValueError("max_streams must be >= 1")
        self.audio, self.raw, self.n_mels, self.padding = audio, raw, n_mels, padding
        self.max_streams, self.vad = max_streams, vad
        self.duration: Optional[float] = None
        self._blocks: Optional[Iterator[np.ndarray]] = None
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0  # sample index of _buf[0]
        self._eof = False
        self._next = 0  # sample where the next chunk starts
        self._open: Dict[int, _Chunk] = {}
        self._cut = 0  # chunks made so far
        self._warnings: List[str] = []  # filled by the audio reader

    def length_hint(self) -> Optional[float]:
        return self.header_duration

    @cached_property
    def header_duration(self) -> Optional[float]:
        return probe_duration(self.audio, self.raw)

    def open(self) -> Optional[float]:
        self._blocks = stream_audio(self.audio, self.raw, warnings=self._warnings)
        self._fill(HOP_LENGTH)
        if self._eof and self._buf_end == 0:
            raise AudioError(f"{source_name(self.audio)}: contains no audio samples")
        if self._eof and self._buf_end < HOP_LENGTH:
            raise AudioError(f"{source_name(self.audio)}: too short to transcribe (under 10 ms of audio)")
        return self.duration if self.duration is not None else self.header_duration

    def ready(self) -> List[Window]:
        while len(self._open) < self.max_streams and self._cut_next():
            pass
        return [chunk.window() for chunk in self._open.values() if not chunk.waiting]

    def advance(self, window: Window, consumed_frames: int) -> None:
        chunk = self._open[window.stream]
        chunk.advance(consumed_frames if consumed_frames > 0 else window.frames)  # always forward
        if chunk.done:
            del self._open[chunk.index]

    @property
    def done(self) -> bool:
        return not self._open and self._eof and self._next >= self._buf_end

    def stream_done(self, stream: int) -> bool:
        return stream < self._cut and stream not in self._open

    def close(self) -> None:
        self._open.clear()
        self._buf = np.zeros(0, np.float32)
        self._blocks = None

    def warnings(self) -> List[str]:
        return list(self._warnings)

    # -- reading and cutting ------------------------------------------------------------------

    @property
    def _buf_end(self) -> int:
        return self._buf_start + len(self._buf)

    def _fill(self, upto: int) -> None:
        """Read until sample `upto` is in the buffer or the stream ends."""
        parts = [self._buf]
        end = self._buf_end
        while not self._eof and end < upto:
            block = next(self._blocks, None)
            if block is None:
                self._eof = True
                self.duration = end / SAMPLE_RATE
            else:
                parts.append(block)
                end += len(block)
        if len(parts) > 1:
            self._buf = np.concatenate(parts)

    def _cut_next(self) -> bool:
        """Make the next chunk and open its stream; False when the audio is used up."""
        longest = int(self.vad.max_chunk * SAMPLE_RATE)
        a = self._next
        self._fill(a + longest + 1)  # one sample past the longest chunk says whether it must be cut
        if a >= self._buf_end:
            return False
        if self._buf_end - a <= longest:
            b = self._buf_end  # the rest fits in one chunk
        else:
            lo = a + longest - int(self.vad.search * SAMPLE_RATE)
            b = self._buf_start + quietest_cut(self._buf, lo - self._buf_start, a + longest - self._buf_start,
                                               self.vad)
        # a view: _release leaves the chunk the only holder of these samples
        chunk = _Chunk(self._cut, a, self._buf[a - self._buf_start : b - self._buf_start], self.n_mels, self.padding)
        self._cut += 1
        self._next = b
        self._release(b)
        if not chunk.done:
            self._open[chunk.index] = chunk
        return True

    def _release(self, sample: int) -> None:
        """Drop the samples before `sample` (a chunk made of them holds its own view). The rest,
        at most the search span and a read-ahead block, is copied out, so that the buffer the
        chunk views is not also kept by the reader."""
        cut = sample - self._buf_start
        if cut > 0:
            self._buf = self._buf[cut:].copy()
            self._buf_start = sample
