"""Writers for transcripts: txt, srt, vtt, tsv and json, in openai-whisper's layouts."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Callable, Dict, Optional, TextIO

FORMATS = ("txt", "srt", "vtt", "tsv", "json")


def format_timestamp(seconds: float, always_include_hours: bool = False, decimal_marker: str = ".") -> str:
    milliseconds = max(0, round(seconds * 1000.0))
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1_000)
    hours_marker = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_marker}{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"


def write_txt(segments, file: TextIO, **_) -> None:
    for s in segments:
        print(s.text.strip(), file=file, flush=True)


def write_vtt(segments, file: TextIO, **_) -> None:
    print("WEBVTT\n", file=file)
    for s in segments:
        print(f"{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{_cue(s.text)}\n", file=file, flush=True)


def write_srt(segments, file: TextIO, **_) -> None:
    for i, s in enumerate(segments, start=1):
        start = format_timestamp(s.start, always_include_hours=True, decimal_marker=",")
        end = format_timestamp(s.end, always_include_hours=True, decimal_marker=",")
        print(f"{i}\n{start} --> {end}\n{_cue(s.text)}\n", file=file, flush=True)


def write_tsv(segments, file: TextIO, **_) -> None:
    """Integer milliseconds, as openai-whisper writes them (a tab can't occur in the text)."""
    print("start", "end", "text", sep="\t", file=file)
    for s in segments:
        print(round(1000 * s.start), round(1000 * s.end), s.text.strip().replace("\t", " "), sep="\t",
              file=file, flush=True)


def write_json(segments, file: TextIO, info=None, settings: Optional[dict] = None, **_) -> None:
    json.dump(result_dict(segments, info, settings), file, ensure_ascii=False, indent=1)
    file.write("\n")


def _cue(text: str) -> str:
    return text.strip().replace("-->", "->")


def result_dict(segments, info=None, settings: Optional[dict] = None) -> dict:
    segments = list(segments)
    out = {"text": "".join(s.text for s in segments), "segments": [asdict(s) for s in segments]}
    if info is not None:
        out["language"] = info.language
        out["language_probability"] = round(info.language_probability, 4)
        out["duration"] = round(info.duration, 3)
        out["windows"] = info.windows
        eas = info.options.eas
        out["eas"] = None if eas is None else {"config": eas.describe(), "tokens_kept": info.tokens_kept,
                                               "window_configs": info.eas_windows}
        out["timings"] = {k: round(v, 4) for k, v in info.timings.items()}
    if settings is not None:
        out["settings"] = settings
    return out


WRITERS: Dict[str, Callable] = {"txt": write_txt, "srt": write_srt, "vtt": write_vtt, "tsv": write_tsv, "json": write_json}
