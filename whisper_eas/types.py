"""The results of a transcription: plain dataclasses, as in faster-whisper (a leaf module: it
imports nothing of ours at run time)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

if TYPE_CHECKING:  # for the annotation only: the options live in the pipeline layer above
    from .pipeline.options import TranscribeOptions


@dataclass
class Word:
    start: float  # seconds on the file's timeline
    end: float
    word: str  # with its leading space, as the tokenizer spells it
    probability: float


@dataclass
class Segment:
    id: int  # 0, 1, ... in the order the segments were made
    seek: int  # first mel frame of the window it came from (100 frames per second)
    start: float  # seconds on the file's timeline
    end: float
    text: str
    tokens: List[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: Optional[List[Word]]  # with word timestamps, else None
    temperature: Optional[float]  # of the decoding attempt that was kept


@dataclass
class TranscriptionInfo:
    language: str
    language_probability: float
    duration: float  # seconds (from the header until the stream has been read to its end)
    all_language_probs: Optional[List[Tuple[str, float]]]
    options: "TranscribeOptions"  # as resolved for this run (eas is an EASConfig or None)
    windows: int = 0  # 30-s windows decoded
    decoder_steps: int = 0  # tokens generated, fallback attempts included
    tokens_kept: List[int] = field(default_factory=list)  # encoder tokens kept per window (EAS)
    eas_windows: List[str] = field(default_factory=list)  # the EAS configuration each window ran ("dense": none)
    timings: Dict[str, float] = field(default_factory=dict)  # seconds spent per stage
    # what went wrong but did not stop it, one line each, e.g. a stream truncated part-way (known
    # once the segments have been read)
    warnings: List[str] = field(default_factory=list)


@dataclass
class FileResult:
    """One input of `WhisperModel.transcribe_batch`: its segments, or why it failed."""

    index: int  # position in the list of inputs
    source: Union[str, os.PathLike, Any]  # the input as given (a path, an array, a window source)
    segments: List[Segment]
    info: Optional[TranscriptionInfo]
    error: Optional[str] = None  # one line naming the input, when it could not be transcribed
