"""One worker's share of a batch run: a loaded model transcribes a list of inputs and, given an
output folder, writes each file's outputs and then its marker.

The same class runs in-process (`whisper-eas batch` without --ray) and inside each Ray actor
(raydata.py), so both transcribe alike: `WhisperModel.transcribe_batch` over local files, the
`transcribe` command's writers and settings.

Output folder, per input `id`:

    <id>.txt, <id>.srt, ...                 the formats asked for, each written atomically
    .whisper-eas/done/<id>.json             the marker: the file's results row, written last

A file counts as done when its marker exists: its outputs were all written before it. A rerun
skips it; an interrupted file has no marker and is transcribed again. A file that fails gets no
marker (it is tried again on the next run) and comes back as a row with `error` set.

A results row: id, path (as given: a path or a URI; None for bytes without one), text, segments
(the JSON output's list), language, duration (seconds), error (None, or one line naming the
file), timings (seconds: encode and decode as the model measured them, `wall` = this worker's
time since its previous file finished, so that the walls add up to its busy time, `fetch` =
copying the input from a URI or bytes to a local file), worker (host:pid)."""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Dict, Iterator, List, Optional, Sequence, Union

from ...errors import AudioError, ManifestError
from ...io.outputs import WRITERS, result_dict
from .inputs import check_id
from .storage import Storage, fetch, is_uri

STATE = ".whisper-eas"  # the run's own files in the output folder
DONE = f"{STATE}/done"
COLUMNS = ("id", "path", "text", "segments", "language", "duration", "error", "timings", "worker")


def marker(uid: str) -> str:
    return f"{DONE}/{uid}.json"


@dataclass(frozen=True)
class Input:
    """What a worker transcribes: `source` is a local path, a URI or the file's bytes; `path`
    names it in rows and messages (None: bytes from nowhere in particular)."""

    id: str
    source: Union[str, bytes]
    path: Optional[str] = None


class BatchWorker:
    """`run(inputs)` yields one results row per input, in the order they finish."""

    def __init__(self, whisper, options, settings: Optional[dict] = None, batch_size: int = 1,
                 store: Optional[Storage] = None, formats: Sequence[str] = ()):
        self.whisper, self.options, self.settings = whisper, options, settings
        self.batch_size, self.store, self.formats = batch_size, store, tuple(formats)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, inputs: Sequence[Input]) -> Iterator[dict]:
        clock = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="whisper-eas-batch-") as spool:
            local: Dict[int, str] = {}
            fetched: Dict[int, float] = {}
            for i, item in enumerate(inputs):
                t0 = time.perf_counter()
                try:
                    local[i] = self._local(item, spool)
                except AudioError as e:
                    yield self._row(item, error=str(e), timings={"wall": time.perf_counter() - clock})
                    clock = time.perf_counter()
                    continue
                if local[i] != item.source:
                    fetched[i] = time.perf_counter() - t0
            order = list(local)
            results = self.whisper.transcribe_batch([local[i] for i in order], self.options,
                                                    batch_size=self.batch_size)
            for result in results:
                i = order[result.index]
                item = inputs[i]
                timings = {**({"fetch": fetched[i]} if i in fetched else {}), "wall": time.perf_counter() - clock}
                if result.error:
                    row = self._row(item, error=result.error.replace(local[i], _name(item)), timings=timings)
                else:
                    row = self._finish(item, result, timings)
                clock = time.perf_counter()
                yield row

    def _local(self, item: Input, spool: str) -> str:
        """A local file with the input's audio (the input itself when it is one)."""
        if isinstance(item.source, (bytes, bytearray, memoryview)):
            suffix = PurePosixPath(item.path or "").suffix
            fd, path = tempfile.mkstemp(suffix=suffix, dir=spool)
            with os.fdopen(fd, "wb") as f:
                f.write(item.source)
            return path
        if is_uri(item.source):
            return fetch(item.source, spool)
        return item.source

    def _finish(self, item: Input, result, timings: Dict[str, float]) -> dict:
        """The row of a transcribed file, after its outputs and then its marker are written."""
        data = result_dict(result.segments, result.info)
        row = self._row(item, text=data["text"], segments=data["segments"], language=data["language"],
                        duration=data["duration"], timings={**data["timings"], **timings})
        if self.store is None:
            return row
        try:
            check_id(item.id, item.path or "a dataset row")  # ids from a user's dataset name files too
            for fmt in self.formats:
                text = io.StringIO()
                WRITERS[fmt](result.segments, text, info=result.info, settings=self.settings)
                self.store.write_text(f"{item.id}.{fmt}", text.getvalue())
            self.store.write_text(marker(item.id), json.dumps(row, ensure_ascii=False))
        except ManifestError as e:
            return self._row(item, error=str(e), timings=row["timings"])
        except OSError as e:
            return self._row(item, error=f"{self.store.describe(item.id)}: cannot write the outputs "
                             f"({e.strerror or e})", timings=row["timings"])
        return row

    def _row(self, item: Input, text: Optional[str] = None, segments: Optional[List[dict]] = None,
             language: Optional[str] = None, duration: Optional[float] = None, error: Optional[str] = None,
             timings: Optional[Dict[str, float]] = None) -> dict:
        return {"id": item.id, "path": item.path, "text": text, "segments": segments or [], "language": language,
                "duration": duration, "error": error,
                "timings": {k: round(v, 4) for k, v in (timings or {}).items()}, "worker": self.name}


def _name(item: Input) -> str:
    return item.path or f"<bytes of {item.id}>"
