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

`FileWindows` is today's behaviour: one stream over a file or an array, openai-whisper's seek
rule over `AudioWindows` (each window starts where the previous one's consumed frames end).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import List, Optional

from torch import Tensor

from ..errors import AudioError
from ..io.audio import HOP_LENGTH, SAMPLE_RATE, AudioSource, AudioWindows, RawFormat, probe_duration, source_name


@dataclass
class Window:
    """One 30-s window of log-mel features, placed on its file's timeline."""

    features: Tensor  # (n_mels, 3000) log-mel, padded
    frames: int  # audio frames in it (the rest is padding)
    start: int  # first frame on the file's timeline (= openai-whisper's seek)
    offset: float  # seconds on the file's timeline of frame 0 of this window (timestamps are added to it)
    stream: int = 0  # which stream of the source it belongs to (prompt/seek state is per stream)


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
        return [Window(features, n, self.seek, self.seek * HOP_LENGTH / SAMPLE_RATE)]

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
