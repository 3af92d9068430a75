"""WER/CER and runtime of one configuration on a dataset (`whisper-eas eval`)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..io.audio import SAMPLE_RATE, load_audio
from ..pipeline.options import EVAL_OPTIONS, TranscribeOptions
from .manifest import Utterance
from .metrics import ErrorCounts, char_errors, corpus_wer, word_errors



@dataclass
class UtteranceResult:
    id: str
    reference: str
    hypothesis: str
    words: ErrorCounts
    chars: ErrorCounts
    audio_seconds: float
    seconds: float  # wall time, audio decoding included
    encode_seconds: float
    decode_seconds: float
    tokens: int  # decoder steps
    tokens_kept: List[int] = field(default_factory=list)


@dataclass
class EvalResult:
    utterances: List[UtteranceResult]
    language: str = "en"

    @property
    def wer(self) -> float:
        return corpus_wer([u.words for u in self.utterances])

    @property
    def cer(self) -> float:
        return corpus_wer([u.chars for u in self.utterances])

    def total(self, key: str) -> float:
        return float(sum(getattr(u, key) for u in self.utterances))

    def summary(self) -> Dict[str, float]:
        n = len(self.utterances)
        seconds, tokens = self.total("seconds"), self.total("tokens")
        kept = [k for u in self.utterances for k in u.tokens_kept]
        return {
            "utterances": n,
            "wer": round(self.wer, 5),
            "cer": round(self.cer, 5),
            "audio_seconds": round(self.total("audio_seconds"), 3),
            "seconds": round(seconds, 4),
            "encode_seconds": round(self.total("encode_seconds"), 4),
            "decode_seconds": round(self.total("decode_seconds"), 4),
            "tokens": int(tokens),
            "ms_per_token": round(1000 * self.total("decode_seconds") / max(tokens, 1), 3),
            "rtf": round(seconds / max(self.total("audio_seconds"), 1e-9), 5),
            "mean_tokens_kept": round(float(np.mean(kept)), 1) if kept else None,
        }

    def write_jsonl(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for u in self.utterances:
                row = asdict(u)
                row["wer"] = u.words.wer if u.words.ref_len else None
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def audio_for(utt: Utterance):
    """A path when the whole file is wanted (so decoding is timed as a user would see it),
    else the cut-out samples."""
    if utt.start is None and utt.end is None:
        return utt.audio
    audio = load_audio(utt.audio)
    lo = int(round((utt.start or 0.0) * SAMPLE_RATE))
    hi = len(audio) if utt.end is None else int(round(utt.end * SAMPLE_RATE))
    return audio[lo:hi]


def evaluate(whisper, utterances: Sequence[Utterance], options: Optional[TranscribeOptions] = None,
             language: str = "en", progress: Optional[Callable[[], None]] = None) -> EvalResult:
    """Transcribe each utterance with `whisper` (a WhisperModel) and score it; `options`
    default to EVAL_OPTIONS (greedy, no fallback, no timestamps)."""
    opts = EVAL_OPTIONS if options is None else options
    out = []
    for utt in utterances:
        source = audio_for(utt)
        t0 = time.perf_counter()
        segments, info = whisper.transcribe(source, opts)
        hypothesis = "".join(s.text for s in segments).strip()
        seconds = time.perf_counter() - t0
        out.append(UtteranceResult(
            id=utt.id, reference=utt.text, hypothesis=hypothesis,
            words=word_errors(utt.text, hypothesis, language=language),
            chars=char_errors(utt.text, hypothesis, language=language),
            audio_seconds=round(info.duration, 3), seconds=seconds,
            encode_seconds=info.timings.get("encode", 0.0), decode_seconds=info.timings.get("decode", 0.0),
            tokens=info.decoder_steps, tokens_kept=list(info.tokens_kept),
        ))
        if progress:
            progress()
    return EvalResult(out, language)
