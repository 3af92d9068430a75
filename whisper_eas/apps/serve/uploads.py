"""An upload, read with a limit: a multipart/form-data body parsed as it arrives, its `file` part
written to one temporary file, and the reading stopped as soon as the body passes the limit.

- A Content-Length over the limit is refused before a byte of the body is read; without one (a
  chunked upload) the count of bytes read decides, chunk by chunk. Either way the rest of the
  body is never read: the request ends with a 413 (`RequestError`).
- The file goes to a fresh file with a random name in the server's private upload folder; the
  client's filename lends it at most its extension (letters and digits only), so nothing in the
  request names a path on the server. The caller removes it (`Upload.remove`); on any error while
  reading it is removed here.
- The other fields are short text kept in memory: at most `MAX_FIELDS` of them, `MAX_FIELD_BYTES`
  each.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import AsyncIterator, Dict, List, Optional

from ...errors import RequestError

MAX_FIELDS = 32
MAX_FIELD_BYTES = 64 * 1024
# what the body may hold on top of the file: part headers, boundaries and the text fields
OVERHEAD_BYTES = 64 * 1024 + MAX_FIELDS * MAX_FIELD_BYTES
FILE_FIELD = "file"
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}")


@dataclass
class Upload:
    """A parsed request body: the file on disk (None: there was no `file` part) and the fields."""

    path: Optional[str] = None
    size: int = 0  # bytes of the file
    fields: Dict[str, List[str]] = field(default_factory=dict)

    def value(self, name: str) -> Optional[str]:
        """The field's last value (None: absent)."""
        values = self.fields.get(name)
        return values[-1] if values else None

    def remove(self) -> None:
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


def too_large(limit: int) -> RequestError:
    return RequestError(f"the upload is larger than this server's limit of {limit / 2**20:g} MB",
                        status=413, param=FILE_FIELD, code="file_too_large")


def check_length(content_length: Optional[str], limit: int) -> None:
    """Refuse a body whose declared length passes the limit before reading any of it."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise RequestError("the Content-Length header is not a number", code="bad_request") from None
        if declared > limit + OVERHEAD_BYTES:
            raise too_large(limit)


async def read_upload(content_type: str, body: AsyncIterator[bytes], limit: int, directory: str) -> Upload:
    """Parse a multipart/form-data `body` (chunks as they arrive) into an Upload whose file is in
    `directory`; RequestError (400, or 413 past `limit` bytes of file) otherwise."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    mime, params = parse_options_header(content_type or "")
    if mime != b"multipart/form-data" or not params.get(b"boundary"):
        raise RequestError("the request body must be multipart/form-data with a file field",
                           code="invalid_content_type")
    form = _Form(limit, directory)
    try:
        parser = MultipartParser(params[b"boundary"], form.callbacks())
        read = 0
        async for chunk in body:
            read += len(chunk)
            if read > limit + OVERHEAD_BYTES:
                raise too_large(limit)
            parser.write(chunk)
        parser.finalize()
        form.check_complete()
    except FormParserError:
        form.upload.remove()
        raise RequestError("the multipart body cannot be parsed", code="invalid_multipart") from None
    except BaseException:
        form.upload.remove()
        raise
    finally:
        form.close()
    return form.upload


class _Form:
    """python-multipart's callbacks: headers collected per part, the file part written through,
    text parts kept (with their limits)."""

    def __init__(self, limit: int, directory: str):
        self.limit, self.directory = limit, directory
        self.upload = Upload()
        self.parts = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name: Optional[str] = None
        self._fd: Optional[int] = None  # the file part being written
        self._text: Optional[bytearray] = None  # the text part being read
        self._in_file = False
        self._ended = False

    def callbacks(self) -> dict:
        return dict(on_part_begin=self.part_begin, on_header_field=self.header_field,
                    on_header_value=self.header_value, on_header_end=self.header_end,
                    on_headers_finished=self.headers_finished, on_part_data=self.part_data,
                    on_part_end=self.part_end, on_end=self.end)

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_FIELDS:
            raise RequestError(f"the request has more than {MAX_FIELDS} fields", code="too_many_fields")
        self._disposition, self._name, self._text, self._in_file = b"", None, None, False

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise RequestError("a multipart part has no field name", code="invalid_multipart")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name == FILE_FIELD:
            if self.upload.path is not None:
                raise RequestError("the request has more than one file", param=FILE_FIELD, code="too_many_files")
            filename = options.get(b"filename", b"").decode("utf-8", "replace")
            extension = os.path.splitext(os.path.basename(filename.replace("\\", "/")))[1]
            suffix = extension.lower() if _EXTENSION.fullmatch(extension) else ""
            self._fd, self.upload.path = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=self.directory)
            self._in_file = True
        else:
            self._text = bytearray()

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.upload.size += end - start
            if self.upload.size > self.limit:
                raise too_large(self.limit)
            view = memoryview(data)[start:end]
            while view:
                view = view[os.write(self._fd, view):]
        elif self._text is not None:
            if len(self._text) + end - start > MAX_FIELD_BYTES:
                raise RequestError(f"the field {self._name!r} is longer than {MAX_FIELD_BYTES // 1024} KiB",
                                   param=self._name, code="field_too_long")
            self._text += data[start:end]

    def part_end(self) -> None:
        if self._in_file:
            os.close(self._fd)
            self._fd, self._in_file = None, False
        elif self._text is not None:
            self.upload.fields.setdefault(self._name, []).append(self._text.decode("utf-8", "replace"))
            self._text = None

    def end(self) -> None:
        self._ended = True

    def check_complete(self) -> None:
        if not self._ended or self._fd is not None:
            raise RequestError("the multipart body ends before its closing boundary", code="invalid_multipart")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
