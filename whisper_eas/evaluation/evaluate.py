"""`whisper-eas eval`: WER/CER and runtime of one configuration on a dataset."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..errors import OptionsError
from ..io.audio import SAMPLE_RATE, load_audio
from ..pipeline.options import EVAL_OPTIONS, TranscribeOptions
from .manifest import Utterance, load_dataset
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


def _audio_for(utt: Utterance):
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
        source = _audio_for(utt)
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


# ---------------------------------------------------------------------------------------------
# CLI

def add_eval_parser(sub, add_model_flags, add_eas_flags) -> None:
    p = sub.add_parser("eval", help="WER/CER and speed on a dataset",
                       description="Transcribe a dataset (JSONL/TSV manifest, a folder of audio + .txt, or "
                                   "hf:NAME[:CONFIG]:SPLIT) and report WER, CER and runtime.")
    p.add_argument("dataset", metavar="MANIFEST")
    add_model_flags(p)
    add_eas_flags(p)
    p.add_argument("--limit", type=int, default=None, help="first N utterances only")
    p.add_argument("--language", default="en", help="language of the references (normalizer; default: en)")
    p.add_argument("--beam-size", "--beam_size", type=int, default=1)
    p.add_argument("--output-dir", "--output_dir", "-o", default=None,
                   help="write per-utterance results (utterances.jsonl) and summary.json here")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args) -> int:
    from tqdm import tqdm

    from ..cli import load_whisper, resolve_eas

    if args.limit is not None and args.limit < 1:
        raise OptionsError("--limit must be >= 1")
    utterances = load_dataset(args.dataset, limit=args.limit)
    whisper = load_whisper(args)
    eas = resolve_eas(args, whisper.loaded.name, whisper.loaded.fingerprint, args.device, args.quiet,
                      whisper.compute_type)
    if eas is not None:
        eas.check_layers(whisper.model.dims.n_audio_layer)
    language = args.language
    options = EVAL_OPTIONS.replace(eas=eas, beam_size=args.beam_size)
    if whisper.tokenizer.multilingual and language:
        options = options.replace(language=language)
    bar = tqdm(total=len(utterances), unit="utt", disable=args.quiet or not sys.stderr.isatty(), file=sys.stderr)
    list(whisper.transcribe(_audio_for(utterances[0]), options)[0])  # warm-up, untimed
    result = evaluate(whisper, utterances, options, language=language, progress=lambda: bar.update(1))
    bar.close()
    summary = {"model": args.model, "eas": None if eas is None else eas.describe(), "dataset": args.dataset,
               **result.summary()}
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        result.write_jsonl(out / "utterances.jsonl")
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    return 0
