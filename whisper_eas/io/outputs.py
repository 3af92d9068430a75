"""Writers for transcripts: txt, srt, vtt, tsv and json, in openai-whisper's layouts; the names a
batch's files get in an output folder (`output_names`), and writing one file atomically
(`write_file`)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TextIO

from ..errors import OptionsError

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
        out["warnings"] = list(info.warnings)
    if settings is not None:
        out["settings"] = settings
    return out


WRITERS: Dict[str, Callable] = {"txt": write_txt, "srt": write_srt, "vtt": write_vtt, "tsv": write_tsv, "json": write_json}


def write_file(path, fmt: str, segments, **kwargs) -> None:
    """Write one transcript file atomically: into a temporary file next to `path`, renamed over it
    once complete and on disk, so that a full disk or a crash never leaves a partial or empty file
    (and an older file of that name stays whole). Raises OSError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            WRITERS[fmt](segments, fh, **kwargs)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def output_names(inputs: Sequence[str], stdin: str = "-") -> List[str]:
    """The name each input's files get in an output folder ('talk' for talk.wav: talk.txt, ...).

    Names never collide: where two inputs have the same stem, each keeps as many of its folders as
    tell them apart ('a/talk' and 'b/talk', written into subfolders), and its extension too where
    two differ only there ('talk.wav', 'talk.mp3'). Names are compared ignoring case, as a
    case-insensitive file system would. `stdin` (the input '-') is named 'stdin'. The same file
    given twice is an OptionsError, before any work."""
    paths = [None if f == stdin else Path(os.path.abspath(f)) for f in inputs]
    seen: Dict[str, str] = {}
    for given, path in zip(inputs, paths):
        key = stdin if path is None else str(path)
        if key in seen:
            raise OptionsError(f"{given}: given twice (as {seen[key]} too): its transcripts would overwrite each other")
        seen[key] = given
    names = [_tail(p, 0, False) for p in paths]
    groups: Dict[str, List[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name.casefold(), []).append(i)
    for group in (g for g in groups.values() if len(g) > 1):
        folders = {paths[i].parent if paths[i] else None for i in group}
        keep_ext = len(folders) < len(group)  # two in one folder differ only in their extension
        for depth in range(max(len(paths[i].parts) if paths[i] else 0 for i in group)):
            tried = {i: _tail(paths[i], depth, keep_ext) for i in group}
            if len({t.casefold() for t in tried.values()}) == len(group):
                break
        else:
            raise OptionsError(f"{inputs[group[0]]}, {inputs[group[1]]}: no distinct output names for these "
                               "(their names differ only in case)")
        for i, name in tried.items():
            names[i] = name
    return names


def _tail(path: Optional[Path], depth: int, keep_ext: bool) -> str:
    """The file's stem (or its name, `keep_ext`) under its last `depth` folders: 'a/talk'."""
    if path is None:
        return "stdin"
    folders = path.parent.parts[1:][-depth:] if depth else ()  # parts[0] is the root
    return "/".join((*folders, path.name if keep_ext else path.stem))
