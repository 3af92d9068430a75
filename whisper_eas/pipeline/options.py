"""`TranscribeOptions`: every setting of one transcription, in one frozen dataclass.

The defaults are openai-whisper's `transcribe()` defaults, except that decoding is greedy
(`beam_size=1`) as in faster-whisper's batched mode. The options are validated once, here, with
one clear message (an `OptionsError`); whatever builds them (`WhisperModel.transcribe(**overrides)`,
the command line's flags, eval, search, bench) gets the same checks.

`EVAL_OPTIONS` is the preset that evaluation, the search and the benchmarks decode with: greedy,
no fallback, no timestamps, no prompt from the previous window - the way WER is usually reported
for Whisper and the way the parity and speed comparisons with faster-whisper run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Optional, Tuple, Union

from ..errors import OptionsError
from ..io.audio import PADDINGS
from ..network.eas import EASConfig, EASPolicy, parse_eas
from ..network.tokenizer import language_code

# TranscribeOptions.eas: the WhisperModel's own setting (its `eas=` argument, "auto" unless given)
MODEL_EAS = "model"
# TranscribeOptions.eas: the saved search profile for the model, device and compute type
AUTO_EAS = "auto"
CHUNKINGS = ("vad", "off")


@dataclass(frozen=True)
class TranscribeOptions:
    # -- what to decode
    language: Optional[str] = None  # code or name ('en', 'English'); None: detect (English for .en models)
    task: str = "transcribe"  # or "translate" (into English; multilingual models only)
    # -- how to decode
    beam_size: int = 1  # beams for beam search at temperature 0; 1: greedy
    best_of: int = 5  # samples drawn at temperatures > 0, the most likely one is kept
    patience: Optional[float] = None  # beam search: stop after round(beam_size * patience) finished beams (None: 1)
    length_penalty: Optional[float] = None  # ranks finished candidates; None: divide by the length
    suppress_blank: bool = True  # no blank or end-of-text as the first sampled token
    suppress_tokens: Tuple[int, ...] = (-1,)  # token ids never sampled; -1: the non-speech symbols
    without_timestamps: bool = False  # decode text only (one segment per window)
    max_initial_timestamp: Optional[float] = 1.0  # seconds: the latest the first timestamp may be
    # -- temperature fallback (openai-whisper's): a window whose result fails a threshold is decoded
    #    again at the next temperature; when all fail, the most likely attempt that did not loop wins
    temperature: Tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # tried in order; a number means one
    compression_ratio_threshold: Optional[float] = 2.4  # above it the text repeats itself: retry
    log_prob_threshold: Optional[float] = -1.0  # mean token log-probability below it: retry
    no_speech_threshold: Optional[float] = 0.6  # with a low log-probability as well: the window is silence
    seed: int = 0  # of the draws at temperatures > 0, per window: the same input gives the same output
    # -- the prompt: the text of earlier windows given to the decoder as context
    condition_on_previous_text: bool = True  # False: every window starts without context
    prompt_reset_on_temperature: float = 0.5  # a window decoded hotter than this starts a fresh context
    initial_prompt: Optional[str] = None  # context for the first window (names, spelling, style)
    prefix: Optional[str] = None  # text the first window's transcript is forced to begin with
    # -- word timestamps (cross-attention alignment)
    word_timestamps: bool = False  # fill Segment.words
    prepend_punctuations: str = "\"'“¿([{-"  # attached to the following word
    append_punctuations: str = "\"'.。,，!！?？:：”)]}、"  # attached to the preceding word
    # -- the encoder
    eas: Union[None, str, EASConfig, EASPolicy] = MODEL_EAS  # "model": the WhisperModel's setting; "auto":
    #    the saved profile; None or "off": dense; an EASConfig or a spec such as "1:0.5" or "-1:0 pad=32";
    #    an EASPolicy ('SHORT | SPEECH'): each window runs the configuration that fits its content
    padding: str = "silence"  # how a window past the end of the audio is filled (see io/audio.py)
    # -- long audio
    chunking: str = "vad"  # "vad": cut at silences into chunks of at most 30 s that decode together
    #    in batches (pipeline/sources.py, ChunkedWindows); "off": openai-whisper's sequential windows

    def __post_init__(self):
        temps = self.temperature
        if isinstance(temps, (int, float)):
            temps = (temps,)
        try:
            temps = tuple(float(t) for t in temps)
        except (TypeError, ValueError):
            raise OptionsError(f"temperature takes a number or a list of numbers, got {self.temperature!r}") from None
        object.__setattr__(self, "temperature", temps)
        if not temps or any(t < 0 for t in temps):
            raise OptionsError("temperatures must be a non-empty list of values >= 0")
        if self.beam_size < 1 or self.best_of < 1:
            raise OptionsError("beam size and best_of must be >= 1")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise OptionsError(f"seed must be an integer, got {self.seed!r}")
        if self.patience is not None and self.patience <= 0:
            raise OptionsError(f"patience must be > 0, got {self.patience}")
        if self.task not in ("transcribe", "translate"):
            raise OptionsError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if self.language is not None:
            language_code(self.language)  # an unknown language is an OptionsError here, not mid-file
        if self.chunking not in CHUNKINGS:
            raise OptionsError(f"chunking must be one of {', '.join(CHUNKINGS)}, got {self.chunking!r}")
        if self.padding not in PADDINGS:
            raise OptionsError(f"padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")
        object.__setattr__(self, "suppress_tokens", tuple(self.suppress_tokens or ()))
        if isinstance(self.eas, str) and self.eas.strip().lower() not in (MODEL_EAS, AUTO_EAS):
            object.__setattr__(self, "eas", parse_eas(self.eas))
        elif isinstance(self.eas, str):
            object.__setattr__(self, "eas", self.eas.strip().lower())
        elif self.eas is not None and not isinstance(self.eas, (EASConfig, EASPolicy)):
            raise OptionsError(f"eas takes None, 'auto', a spec such as '1:0.5', an EASConfig or an EASPolicy, "
                               f"got {self.eas!r}")

    def replace(self, **changes) -> "TranscribeOptions":
        """A copy with `changes` applied (validated again); an unknown name is an OptionsError."""
        unknown = sorted(set(changes) - FIELDS)
        if unknown:
            raise OptionsError(f"unknown transcribe option{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(map(repr, unknown))}: see TranscribeOptions")
        return dataclasses.replace(self, **changes) if changes else self


FIELDS = frozenset(f.name for f in fields(TranscribeOptions))

EVAL_OPTIONS = TranscribeOptions(beam_size=1, temperature=(0.0,), without_timestamps=True,
                                 condition_on_previous_text=False)
