"""Where a batch run reads and writes: a local folder, or a URI that pyarrow's filesystems open
(s3://, gs://, abfs://, hdfs://, file://, ...).

`Storage` is the small interface the runner needs on its output folder: list what is there,
read a file, and write one atomically - a reader (or a rerun after an interruption) sees a file
whole or not at all. A local folder writes to a temporary name beside the target and renames it;
a pyarrow filesystem does the same, except on object stores, where a single upload is already
all-or-nothing. `fetch` copies one input from a URI to a local file for the decoder.

Local paths need nothing beyond the standard library; URIs need pyarrow (the `[ray]` extra)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Iterator, Set, Tuple

from ...errors import AudioError, OptionsError

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
# pyarrow filesystems whose uploads appear whole or not at all (and whose "move" is a copy)
_ATOMIC_UPLOADS = {"s3", "gcs", "abfs"}


def is_uri(text: str) -> bool:
    """`s3://bucket/key`, `file:///tmp/x`: a scheme of two or more letters (not a drive, `C:\\`)."""
    return bool(_URI.match(text))


def arrow_filesystem(uri: str):
    """(pyarrow filesystem, path inside it) for a URI; a bad URI is an OptionsError naming it."""
    try:
        from pyarrow import fs
    except ImportError:
        raise OptionsError(f"{uri}: URIs need pyarrow (pip install 'whisper-eas[ray]')") from None
    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as e:  # pyarrow raises ArrowInvalid, ValueError or OSError for these
        raise OptionsError(f"{uri}: cannot open this URI ({_first_line(e)})") from None


def join_uri(base: str, relative: str) -> str:
    return base.rstrip("/") + "/" + relative.lstrip("/")


def fetch(uri: str, folder: str) -> str:
    """Copy the file at `uri` into `folder` (keeping its extension, which ffmpeg may need) and
    return the local path. A missing or unreadable file is an AudioError naming the URI."""
    filesystem, path = arrow_filesystem(uri)
    target = os.path.join(folder, f"{uuid.uuid4().hex}{PurePosixPath(path).suffix}")
    try:
        with filesystem.open_input_stream(path) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    except FileNotFoundError:
        raise AudioError(f"{uri}: no such file") from None
    except OSError as e:
        raise AudioError(f"{uri}: cannot read ({_first_line(e)})") from None
    return target


class Storage(ABC):
    """An output folder. Paths are relative and use '/'."""

    @abstractmethod
    def describe(self, relative: str = "") -> str:
        """How messages name a file in it."""

    @abstractmethod
    def files(self, folder: str) -> Set[str]:
        """The files below `folder` (recursively), relative to it; empty when it is missing."""

    @abstractmethod
    def read_text(self, relative: str) -> str:
        """The file's text; FileNotFoundError when there is none."""

    @abstractmethod
    @contextmanager
    def open_atomic(self, relative: str) -> Iterator[IO[bytes]]:
        """A binary stream that becomes `relative` when the block ends without an exception."""

    def write_text(self, relative: str, text: str) -> None:
        with self.open_atomic(relative) as out:
            out.write(text.encode("utf-8"))


class LocalStorage(Storage):
    def __init__(self, root: str):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise OptionsError(f"--output-dir {root} exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)

    def describe(self, relative: str = "") -> str:
        return str(self.root / relative) if relative else str(self.root)

    def files(self, folder: str) -> Set[str]:
        base = self.root / folder
        if not base.is_dir():
            return set()
        return {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}

    def read_text(self, relative: str) -> str:
        return (self.root / relative).read_text(encoding="utf-8")

    @contextmanager
    def open_atomic(self, relative: str) -> Iterator[IO[bytes]]:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise


class ArrowStorage(Storage):
    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.fs, self.base = arrow_filesystem(self.uri)
        self.atomic_uploads = self.fs.type_name in _ATOMIC_UPLOADS
        try:
            self.fs.create_dir(self.base, recursive=True)
        except OSError as e:
            raise OptionsError(f"--output-dir {uri}: cannot create it ({_first_line(e)})") from None

    def describe(self, relative: str = "") -> str:
        return join_uri(self.uri, relative) if relative else self.uri

    def _path(self, relative: str) -> str:
        return f"{self.base.rstrip('/')}/{relative}"

    def files(self, folder: str) -> Set[str]:
        from pyarrow import fs

        base = self._path(folder).rstrip("/")
        selector = fs.FileSelector(base, recursive=True, allow_not_found=True)
        return {info.path[len(base) + 1:] for info in self.fs.get_file_info(selector)
                if info.type == fs.FileType.File}

    def read_text(self, relative: str) -> str:
        with self.fs.open_input_stream(self._path(relative)) as f:
            return f.read().decode("utf-8")

    @contextmanager
    def open_atomic(self, relative: str) -> Iterator[IO[bytes]]:
        target = self._path(relative)
        self.fs.create_dir(target.rpartition("/")[0], recursive=True)
        if self.atomic_uploads:
            with self.fs.open_output_stream(target) as out:
                yield out
            return
        tmp = f"{target}.{uuid.uuid4().hex[:8]}.part"
        try:
            with self.fs.open_output_stream(tmp) as out:
                yield out
            self.fs.move(tmp, target)
        except BaseException:
            self.fs.delete_file(tmp)
            raise


def open_storage(where: str) -> Storage:
    return ArrowStorage(where) if is_uri(where) else LocalStorage(where)


def split_glob(text: str) -> Tuple[str, str]:
    """('dir/sub', '*.flac') for 'dir/sub/*.flac': the folder before the first wildcard, and the
    pattern from there on ('' when there is no wildcard)."""
    parts = text.split("/")
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return "/".join(parts[:i]), "/".join(parts[i:])
    return text, ""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
