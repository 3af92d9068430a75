"""Evaluation datasets: reference transcripts paired with audio files.

``whisper-eas eval`` and ``whisper-eas search`` take one dataset spec and get back a
list of :class:`Utterance`.  Accepted specs (see :func:`load_dataset`):

* ``path/to/manifest.jsonl`` (also ``.ndjson``, and ``.json`` holding JSON Lines as
  NeMo manifests do): one JSON object per line with ``audio`` and ``text``; optional
  ``id``, ``start`` and ``end`` (seconds); other keys are ignored.
* ``path/to/manifest.tsv``: a header row naming the columns ``audio`` and ``text``,
  optional ``id``, ``start``, ``end``; fields are split on tabs only (no quoting), so
  transcripts may contain quotes.
* ``path/to/folder``: every audio file below it (recursively) with a transcript of the
  same stem next to it (``a.flac`` + ``a.txt``).  An audio file without a transcript is
  an error rather than skipped: silently evaluating on fewer utterances would make
  scores of two runs incomparable.
* ``hf:<dataset>[:<config>]:<split>``: a Hugging Face dataset, when the optional
  ``datasets`` package is installed and the data is reachable or cached.

Relative audio paths are resolved against the manifest's directory; every
``Utterance.audio`` is absolute.  Audio is not decoded here, so loading a manifest is
cheap and its errors show up before any model is loaded.  All problems raise
:class:`ManifestError` with a one-line ``file:line: what`` message.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import ManifestError, OptionsError

__all__ = ["AUDIO_EXTENSIONS", "ManifestError", "Utterance", "load_dataset", "mostly_long", "parse_jsonl"]

#: Extensions picked up as audio when a folder is given (lower case, with the dot).
AUDIO_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .ogg .oga .opus .m4a .aac .webm .g722 .wma .aif .aiff .amr .mp4".split()
)

_JSONL_EXTENSIONS = (".jsonl", ".ndjson", ".json")
_TSV_EXTENSIONS = (".tsv",)
# Column names tried, in order, for the transcript of a Hugging Face dataset.
_HF_TEXT_COLUMNS = ("text", "sentence", "transcription", "transcript", "normalized_text")


@dataclass(frozen=True)
class Utterance:
    """One evaluation item: ``audio`` (absolute path), reference ``text``, and
    optionally the segment ``start``/``end`` in seconds within that file."""

    id: str
    audio: str
    text: str
    start: float | None = None
    end: float | None = None


def mostly_long(utterances: list[Utterance]) -> bool:
    """Whether the utterances average over 30 s (one Whisper window): long recordings, which
    `bench` times in user mode and `search` tunes for speech windows. A span cut with start/end
    counts as its span, a whole file as its length from its header (unknown: 0)."""
    from ..io.audio import probe_duration

    def seconds(u: Utterance) -> float:
        if u.end is not None:
            return u.end - (u.start or 0.0)
        return max(0.0, (probe_duration(u.audio) or 0.0) - (u.start or 0.0))

    return sum(seconds(u) for u in utterances) > 30.0 * len(utterances)


@dataclass(frozen=True)
class _Row:
    """A parsed manifest entry before ids are assigned and files are checked."""

    line: int
    audio: str
    text: str
    id: str | None
    start: float | None
    end: float | None


def load_dataset(spec: str, limit: int | None = None, *, cache_dir: str | None = None) -> list[Utterance]:
    """Load the utterances named by ``spec`` (manifest, folder or ``hf:`` spec).

    ``limit`` keeps the first N utterances (in manifest order; sorted by path for a
    folder).  The whole manifest is still parsed and checked for syntax and duplicate
    ids, but only the kept utterances' audio files need to exist.

    ``cache_dir`` is where ``hf:`` datasets' audio is written as files (default
    ``$WHISPER_EAS_CACHE`` or ``~/.cache/whisper_eas``, under ``hf/``).
    """
    if limit is not None and limit < 0:
        raise OptionsError(f"limit must be >= 0, got {limit}")
    if spec.startswith("hf:"):
        return _load_hf(spec, limit, cache_dir)

    path = Path(spec).expanduser()
    if not path.exists():
        raise ManifestError(f"{spec}: no such file or directory")
    if path.is_dir():
        rows = _read_folder(path)
        base = path
    else:
        suffix = path.suffix.lower()
        if suffix in _JSONL_EXTENSIONS:
            rows = _read_jsonl(path)
        elif suffix in _TSV_EXTENSIONS:
            rows = _read_tsv(path)
        else:
            raise ManifestError(
                f"{path}: unsupported manifest extension {path.suffix or '(none)'!r}; "
                "use .jsonl or .tsv, a folder of audio + .txt files, or hf:<dataset>[:<config>]:<split>"
            )
        if not rows:
            raise ManifestError(f"{path}: empty manifest (no utterances)")
        base = path.parent

    utterances = _assign_ids(path, rows, base)
    if limit is not None:
        utterances = utterances[:limit]
    _check_audio_exists(path, utterances, {u.id: r.line for u, r in zip(utterances, rows)})
    return utterances


# --- manifest formats --------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read ({e.strerror or e})") from None


def _read_jsonl(path: Path) -> list[_Row]:
    return parse_jsonl(_read_lines(path), path)


def parse_jsonl(lines: Iterable[str], path, text_required: bool = True) -> list[_Row]:
    """The entries of a JSON Lines manifest, given as its `lines` (`path` names it in messages),
    checked as `load_dataset` checks them. Without `text_required` (transcribing, not scoring) a
    row's ``text`` may be missing; it is then "". Audio paths are left as written."""
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise ManifestError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        if not text_required and obj.get("text") is None:
            obj = {**obj, "text": ""}
        rows.append(_make_row(path, lineno, obj))
    return rows


def _read_tsv(path: Path) -> list[_Row]:
    lines = _read_lines(path)
    header_at = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_at is None:
        raise ManifestError(f"{path}: empty manifest (no header row)")
    header = [name.strip() for name in lines[header_at].split("\t")]
    for required in ("audio", "text"):
        if required not in header:
            raise ManifestError(
                f"{path}:{header_at + 1}: header has no {required!r} column (columns: {', '.join(header)})"
            )
    if len(set(header)) != len(header):
        raise ManifestError(f"{path}:{header_at + 1}: duplicate column names in header")
    rows = []
    for i in range(header_at + 1, len(lines)):
        line, lineno = lines[i], i + 1
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ManifestError(f"{path}:{lineno}: {len(fields)} tab-separated fields, header has {len(header)}")
        record = {name: value for name, value in zip(header, fields) if value.strip() or name == "text"}
        rows.append(_make_row(path, lineno, record))
    return rows


def _read_folder(folder: Path) -> list[_Row]:
    audio_files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not audio_files:
        raise ManifestError(
            f"{folder}: no audio files ({' '.join(sorted(AUDIO_EXTENSIONS))}) in this folder"
        )
    missing = [p for p in audio_files if not p.with_suffix(".txt").is_file()]
    if missing:
        raise ManifestError(
            f"{folder}: {_count(len(missing), 'audio file')} without a same-stem .txt transcript: "
            + _first_three(str(p.relative_to(folder)) for p in missing)
        )
    rows = []
    for p in audio_files:
        transcript = p.with_suffix(".txt")
        text = " ".join(_read_lines(transcript)).strip()
        rel_id = p.relative_to(folder).with_suffix("").as_posix()
        rows.append(_Row(line=0, audio=os.path.abspath(p), text=text, id=rel_id, start=None, end=None))
    return rows


# --- Hugging Face datasets ------------------------------------------------------------------


def _load_hf(spec: str, limit: int | None, cache_dir: str | None) -> list[Utterance]:
    """Load ``hf:<dataset>[:<config>]:<split>``; audio bytes are written to files
    (in their original encoding, not decoded) so the rest of the pipeline sees paths."""
    parts = spec[3:].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ManifestError(f"{spec}: expected hf:<dataset>[:<config>]:<split>, e.g. hf:librispeech_asr:clean:test")
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    try:
        import datasets
    except ImportError:
        raise ManifestError(f"{spec}: hf: datasets need the 'datasets' package (pip install datasets)") from None

    root = Path(cache_dir or os.environ.get("WHISPER_EAS_CACHE") or Path.home() / ".cache" / "whisper_eas")
    out_dir = root / "hf" / name.replace("/", "__") / (config or "default") / split

    rows: list[_Row] = []
    text_column = None
    try:
        # Streaming avoids downloading a whole split when only `limit` items are wanted.
        ds = datasets.load_dataset(name, config, split=split, streaming=limit is not None)
        ds = ds.cast_column("audio", datasets.Audio(decode=False))
        if limit is not None:
            ds = ds.take(limit)
        for i, ex in enumerate(ds):  # one example at a time: a split may not fit in memory
            if text_column is None:
                text_column = next((c for c in _HF_TEXT_COLUMNS if c in ex), None)
                if text_column is None:
                    raise ManifestError(
                        f"{spec}: no transcript column (looked for {', '.join(_HF_TEXT_COLUMNS)}; "
                        f"has {', '.join(ex)})"
                    )
                out_dir.mkdir(parents=True, exist_ok=True)
            uid = str(ex["id"]) if ex.get("id") not in (None, "") else f"{split}-{i:06d}"
            audio = _hf_audio_file(spec, ex.get("audio") or {}, out_dir, uid)
            rows.append(_Row(i + 1, audio, str(ex[text_column]).strip(), uid, None, None))
    except ManifestError:
        raise
    except Exception as e:  # network, missing dataset/config/split, missing column...
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ManifestError(f"{spec}: cannot load Hugging Face dataset ({type(e).__name__}: {message})") from None
    if not rows:
        raise ManifestError(f"{spec}: empty dataset split")
    return _assign_ids(Path(spec), rows, out_dir)


def _hf_audio_file(spec: str, audio: dict, out_dir: Path, uid: str) -> str:
    data, src = audio.get("bytes"), audio.get("path")
    if data:
        suffix = Path(src).suffix.lower() if src and Path(src).suffix.lower() in AUDIO_EXTENSIONS else ".wav"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in uid)
        target = out_dir / f"{safe}{suffix}"
        if not target.is_file() or target.stat().st_size != len(data):
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, target)  # no half-written file if interrupted
        return str(target)
    if src and Path(src).is_file():
        return src
    raise ManifestError(f"{spec}: example {uid!r} has neither audio bytes nor a local audio path")


# --- shared validation ---------------------------------------------------------------------


def _make_row(path: Path, lineno: int, record: dict) -> _Row:
    where = f"{path}:{lineno}"
    for key in ("audio", "text"):
        if key not in record or record[key] is None:
            raise ManifestError(f"{where}: missing {key!r}")
    audio, text = record["audio"], record["text"]
    if not isinstance(audio, str) or not audio.strip():
        raise ManifestError(f"{where}: 'audio' must be a non-empty string")
    if not isinstance(text, str):
        raise ManifestError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    uid = record.get("id")
    if uid is not None:
        if isinstance(uid, bool) or not isinstance(uid, (str, int)) or not str(uid).strip():
            raise ManifestError(f"{where}: 'id' must be a non-empty string")
        uid = str(uid).strip()
    start = _seconds(where, "start", record.get("start"))
    end = _seconds(where, "end", record.get("end"))
    if start is not None and end is not None and start >= end:
        raise ManifestError(f"{where}: start ({start:g}) must be before end ({end:g})")
    return _Row(lineno, audio.strip(), text.strip(), uid, start, end)


def _seconds(where: str, key: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ManifestError(f"{where}: {key!r} is not a number: {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{where}: {key!r} is not a number: {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ManifestError(f"{where}: {key!r} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _assign_ids(path: Path, rows: list[_Row], base: Path) -> list[Utterance]:
    """Resolve audio paths and give every row a unique id.

    Explicit ids must be unique.  A row without one gets its audio file's stem, with
    ``-2``, ``-3``... appended when that is taken (e.g. several segments of one file).
    """
    seen: dict[str, int] = {}
    for row in rows:
        if row.id is None:
            continue
        if row.id in seen:
            first = f" (first on line {seen[row.id]})" if row.line else ""
            raise ManifestError(f"{_where(path, row.line)}: duplicate id {row.id!r}{first}")
        seen[row.id] = row.line
    taken = set(seen)
    utterances = []
    for row in rows:
        uid = row.id
        if uid is None:
            stem = Path(row.audio).stem or "utt"
            uid, k = stem, 1
            while uid in taken:
                k += 1
                uid = f"{stem}-{k}"
            taken.add(uid)
        audio = Path(row.audio).expanduser()
        audio_path = os.path.abspath(audio if audio.is_absolute() else base / audio)
        utterances.append(Utterance(uid, audio_path, row.text, row.start, row.end))
    return utterances


def _check_audio_exists(path: Path, utterances: list[Utterance], lines: dict[str, int]) -> None:
    missing = [u for u in utterances if not os.path.isfile(u.audio)]
    if missing:
        described = (f"{u.audio} (line {lines[u.id]})" if lines.get(u.id) else u.audio for u in missing)
        what = _count(len(missing), "referenced audio file")
        raise ManifestError(f"{path}: {what} missing: " + _first_three(described))


def _where(path: Path, line: int) -> str:
    """``file:line`` for manifest rows; just ``file`` for rows without a line (folders)."""
    return f"{path}:{line}" if line else str(path)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _first_three(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:3])
    return shown + (f", ... ({len(items) - 3} more)" if len(items) > 3 else "")
