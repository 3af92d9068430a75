"""What a batch run transcribes: INPUT, as the user names it, to a list of `Item`s.

INPUT is one of
- a folder: every audio file below it (the evaluation datasets' extensions; hidden files and
  folders skipped), sorted by path;
- a glob (`calls/2024-*/*.wav`, `**` for any depth): the files it matches, whatever their extension;
- a manifest, JSON Lines (`.jsonl`, `.ndjson`, `.json`) in the evaluation manifests' format: one
  object per line with `audio` (relative to the manifest's folder, absolute, or a URI) and an
  optional `id`; `text` may be there or not (it is not used); `start`/`end` are refused (a batch
  transcribes whole files);
- one audio file;
- any of these as a URI that pyarrow opens (`s3://bucket/calls/`, `gs://b/m.jsonl`,
  `file:///data/*.flac`).

Each item has an `id` that names its outputs (`<id>.txt`, ...): the manifest's id, else the file's
path relative to the folder (or the glob's fixed part, or the manifest's folder) without its
extension, so a tree of files gives the same tree of transcripts and equal stems in different
folders do not collide. Equal ids get `-2`, `-3`, ... as in the evaluation manifests.

Only the list is made here; no audio is opened (the workers read it), so listing a corpus of
remote files costs one listing, not one download per file."""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, List, Sequence, Tuple

from ...errors import ManifestError
from ...evaluation.manifest import AUDIO_EXTENSIONS, parse_jsonl
from .storage import arrow_filesystem, is_uri, join_uri, split_glob

MANIFEST_EXTENSIONS = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class Item:
    """One input: `id` names its outputs; `audio` is an absolute local path or a URI."""

    id: str
    audio: str


def list_inputs(spec: str) -> List[Item]:
    """The items INPUT names (see the module's docstring); a ManifestError when there are none,
    or the manifest cannot be used."""
    if is_uri(spec):
        return _list_uri(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_audio(p.relative_to(path).as_posix()))
        return _items(spec, [(p.relative_to(path).as_posix(), os.path.abspath(p)) for p in files])
    if path.is_file():
        if path.suffix.lower() in MANIFEST_EXTENSIONS:
            return _from_manifest(spec, _read_lines(path), lambda audio: os.path.abspath(path.parent / audio))
        return [Item(path.stem, os.path.abspath(path))]
    base, pattern = split_glob(str(path))
    if not pattern:
        raise ManifestError(f"{spec}: no such file or directory")
    matches = sorted(m for m in glob.glob(str(path), recursive=True) if os.path.isfile(m))
    return _items(spec, [(Path(m).relative_to(base or ".").as_posix(), os.path.abspath(m)) for m in matches])


def _list_uri(uri: str) -> List[Item]:
    from pyarrow import fs

    base_uri, pattern = split_glob(uri)
    filesystem, path = arrow_filesystem(base_uri)
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File and not pattern:
        if PurePosixPath(path).suffix.lower() in MANIFEST_EXTENSIONS:
            with filesystem.open_input_stream(path) as f:
                lines = _decode(uri, f.read()).splitlines()
            folder = uri.rsplit("/", 1)[0]
            return _from_manifest(uri, lines, lambda audio: join_uri(folder, audio))
        return [Item(PurePosixPath(path).stem, uri)]
    if info.type != fs.FileType.Directory:
        raise ManifestError(f"{uri}: no such file or directory")
    root = path.rstrip("/")
    selector = fs.FileSelector(root, recursive=True)
    found = sorted(f.path[len(root) + 1:] for f in filesystem.get_file_info(selector) if f.type == fs.FileType.File)
    if pattern:
        found = [rel for rel in found if glob_match(rel.split("/"), pattern.split("/"))]
    else:
        found = [rel for rel in found if _is_audio(rel)]
    return _items(uri, [(rel, join_uri(base_uri, rel)) for rel in found])


def glob_match(parts: Sequence[str], patterns: Sequence[str]) -> bool:
    """Whether a path's parts match a glob's, as `glob.glob(recursive=True)` matches them: `*`
    and `?` within one part, `**` for any number of parts."""
    if not patterns:
        return not parts
    if patterns[0] == "**":
        return any(glob_match(parts[i:], patterns[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], patterns[0]) and glob_match(parts[1:], patterns[1:])


def _is_audio(relative: str) -> bool:
    parts = relative.split("/")
    return PurePosixPath(relative).suffix.lower() in AUDIO_EXTENSIONS and not any(p.startswith(".") for p in parts)


def _items(spec: str, found: Sequence[Tuple[str, str]]) -> List[Item]:
    """Items for (path relative to the base, audio) pairs: the id is the relative path without
    its extension."""
    if not found:
        raise ManifestError(f"{spec}: no audio files found (extensions: {' '.join(sorted(AUDIO_EXTENSIONS))})")
    ids = unique_ids(str(PurePosixPath(rel).with_suffix("")) for rel, _ in found)
    return [Item(i, audio) for i, (_, audio) in zip(ids, found)]


def _from_manifest(spec: str, lines: List[str], resolve) -> List[Item]:
    rows = parse_jsonl(lines, spec, text_required=False)
    if not rows:
        raise ManifestError(f"{spec}: empty manifest (no files)")
    explicit = {}
    candidates = []
    for row in rows:
        where = f"{spec}:{row.line}"
        if row.start is not None or row.end is not None:
            raise ManifestError(f"{where}: 'start'/'end' select a part of a file; batch transcribes whole files")
        if row.id is not None:
            check_id(row.id, where)
            if row.id in explicit:
                raise ManifestError(f"{where}: duplicate id {row.id!r} (first on line {explicit[row.id]})")
            explicit[row.id] = row.line
            candidates.append(row.id)
        else:
            relative = PurePosixPath(row.audio)
            derived = str(relative.with_suffix(""))
            if is_uri(row.audio) or relative.is_absolute() or not _safe(derived):
                derived = relative.stem or "audio"
            candidates.append(derived)
    ids = unique_ids(candidates, keep=set(explicit))
    return [Item(i, row.audio if is_uri(row.audio) else resolve(row.audio)) for i, row in zip(ids, rows)]


def unique_ids(candidates: Iterable[str], keep=frozenset()) -> List[str]:
    """The candidates, with `-2`, `-3`, ... appended to a repeated one (the ids in `keep` are
    taken as they are: they are unique already)."""
    taken, out = set(keep), []
    for candidate in candidates:
        if candidate in keep:
            out.append(candidate)
            continue
        uid, k = candidate, 1
        while uid in taken:
            k += 1
            uid = f"{candidate}-{k}"
        taken.add(uid)
        out.append(uid)
    return out


def check_id(uid: str, where: str) -> None:
    """An id names files below the output folder: a relative path that stays inside it."""
    if not _safe(uid):
        raise ManifestError(f"{where}: id {uid!r} cannot name an output file (a relative path with no "
                            "'..', '.' or hidden parts)")


def _safe(uid: str) -> bool:
    path = PurePosixPath(uid)
    return bool(uid) and not path.is_absolute() and "\\" not in uid and \
        all(part and not part.startswith(".") for part in uid.split("/"))


def _read_lines(path: Path) -> List[str]:
    try:
        return _decode(str(path), path.read_bytes()).splitlines()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read ({e.strerror or e})") from None


def _decode(where: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
