"""What the server answers, in the shapes of OpenAI's audio API, made from our segments.

- `json`: `{"text": ...}`; `text`: the text and a newline; `srt` and `vtt`: the subtitle files
  the command line writes (io/outputs.py);
- `verbose_json`: `{"task", "language" (its name, e.g. "english"), "duration", "text",
  "segments": [{"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
  "compression_ratio", "no_speech_prob"}], "words": [{"word", "start", "end"}]}`, segments with
  the `segment` timestamp granularity (the default) and words with `word`;
- streaming (server-sent events): `{"type": "transcript.text.delta", "delta": ...}` per segment as
  it is made, then `{"type": "transcript.text.done", "text": ...}`;
- errors: `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import io
import json
from typing import List, Optional, Sequence, Tuple

from ...io.outputs import write_srt, write_vtt
from ...network.tokenizer import LANGUAGES
from ...types import Segment, TranscriptionInfo

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
TEXT = "text/plain; charset=utf-8"
EVENT_STREAM = "text/event-stream"
ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error",
               413: "invalid_request_error", 429: "rate_limit_error", 503: "server_error"}


def transcript_text(segments: Sequence[Segment]) -> str:
    return "".join(s.text for s in segments).strip()


def render(fmt: str, segments: List[Segment], info: TranscriptionInfo, granularities: Sequence[str] = ()
           ) -> Tuple[str, str]:
    """(body, media type) of a finished transcription in `fmt`."""
    if fmt == "json":
        return json.dumps({"text": transcript_text(segments)}, ensure_ascii=False), "application/json"
    if fmt == "verbose_json":
        return json.dumps(verbose(segments, info, granularities), ensure_ascii=False), "application/json"
    if fmt == "text":
        return transcript_text(segments) + "\n", TEXT
    out = io.StringIO()
    (write_srt if fmt == "srt" else write_vtt)(segments, out)
    return out.getvalue(), TEXT


def verbose(segments: List[Segment], info: TranscriptionInfo, granularities: Sequence[str] = ()) -> dict:
    task = info.options.task
    body = {"task": task,
            # OpenAI names the language; a translation's is English
            "language": "english" if task == "translate" else LANGUAGES.get(info.language, info.language),
            "duration": round(info.duration, 3), "text": transcript_text(segments)}
    if "segment" in granularities or not granularities:
        body["segments"] = [dict(id=s.id, seek=s.seek, start=s.start, end=s.end, text=s.text, tokens=s.tokens,
                                 temperature=s.temperature or 0.0, avg_logprob=s.avg_logprob,
                                 compression_ratio=s.compression_ratio, no_speech_prob=s.no_speech_prob)
                            for s in segments]
    if "word" in granularities:
        body["words"] = [dict(word=w.word.strip(), start=w.start, end=w.end) for s in segments for w in s.words or ()]
    return body


def event(payload: dict) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def delta_events(segments: Sequence[Segment], first: bool) -> Tuple[str, bool]:
    """The delta events of `segments` (the first delta of a stream without its leading space),
    and whether the next one is still the first."""
    out = []
    for s in segments:
        text = s.text.lstrip() if first else s.text
        if text:
            out.append(event({"type": "transcript.text.delta", "delta": text}))
            first = False
    return "".join(out), first


def done_event(segments: Sequence[Segment]) -> str:
    return event({"type": "transcript.text.done", "text": transcript_text(segments)})


def error_body(message: str, status: int, param: Optional[str] = None, code: Optional[str] = None) -> dict:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
