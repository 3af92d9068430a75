"""What a search measures and keeps: one `Measurement` per configuration, appended to
results.jsonl under a header holding the cache key (model fingerprint, device, dtype, threads,
dataset and a hash of its utterances, limit, decoding options, repeats), so that an interrupted
search resumes without measuring anything twice and a search of other settings is refused."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import statistics
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from ...errors import SearchCacheError
from ...hardware import describe as describe_machine
from ...io.profiles import slug as profile_slug
from ...network.eas import parse_eas
from ...pipeline.options import TranscribeOptions
from ..manifest import Utterance
from ..metrics import ErrorCounts, corpus_wer
from .grid import DENSE, DENSE_END

CACHE_FORMAT = "whisper-eas-search/1"


@dataclass(frozen=True)
class Measurement:
    key: str  # candidate key; the end-of-search dense run is DENSE_END
    eas: Optional[str]
    family: str
    ids: Tuple[str, ...]
    counts: Tuple[ErrorCounts, ...]  # word errors per utterance (first pass)
    hypotheses: Tuple[str, ...]
    seconds_runs: Tuple[float, ...]  # end-to-end total per pass
    encode_runs: Tuple[float, ...]  # encoder total per pass
    audio_seconds: float
    decoder_steps: int
    tokens_kept: Optional[float]  # mean encoder tokens kept per window

    @property
    def wer(self) -> float:
        return corpus_wer(self.counts)

    @property
    def seconds(self) -> float:
        return statistics.median(self.seconds_runs)

    @property
    def encode_seconds(self) -> float:
        return statistics.median(self.encode_runs)

    def to_json(self) -> dict:
        row = asdict(self)
        row["counts"] = [[c.substitutions, c.deletions, c.insertions, c.ref_len] for c in self.counts]
        return {"type": "config", **row}

    @classmethod
    def from_json(cls, row: dict) -> "Measurement":
        def canonical(text):  # caches written before a change of EASConfig.describe() stay usable
            return text if text in (DENSE, DENSE_END) or not text else parse_eas(text).describe()

        return cls(key=canonical(row["key"]), eas=canonical(row["eas"]), family=row["family"], ids=tuple(row["ids"]),
                   counts=tuple(ErrorCounts(*c) for c in row["counts"]), hypotheses=tuple(row["hypotheses"]),
                   seconds_runs=tuple(row["seconds_runs"]), encode_runs=tuple(row["encode_runs"]),
                   audio_seconds=row["audio_seconds"], decoder_steps=row["decoder_steps"],
                   tokens_kept=row["tokens_kept"])


@dataclass(frozen=True)
class ModelInfo:
    name: str
    fingerprint: str
    device: str  # "cpu", "cuda", "cuda:1"
    dtype: str  # "float32", ...
    n_layers: int
    hardware: str = ""
    threads: int = 0

    @classmethod
    def of(cls, whisper) -> "ModelInfo":
        import torch

        device = str(whisper.device)
        return cls(name=whisper.loaded.name, fingerprint=whisper.loaded.fingerprint, device=device,
                   dtype=whisper.compute_type, n_layers=whisper.model.dims.n_audio_layer,
                   hardware=describe_machine(device), threads=torch.get_num_threads())


def cache_key(model: ModelInfo, dataset: str, utterances: Sequence[Utterance], limit: Optional[int],
              options: TranscribeOptions, repeats: int) -> dict:
    """Everything a cached measurement depends on; a mismatch means the cache cannot be reused."""
    items = json.dumps([[u.id, u.text, u.start, u.end] for u in utterances], ensure_ascii=False)
    decoding = decoding_options(options)
    return json.loads(json.dumps({
        "model": model.name, "fingerprint": model.fingerprint, "device": model.device, "dtype": model.dtype,
        "threads": model.threads, "dataset": dataset, "utterances": len(utterances),
        "utterances_sha256": hashlib.sha256(items.encode()).hexdigest()[:16], "limit": limit,
        "decoding": decoding, "repeats": repeats}, sort_keys=True))


def decoding_options(options: TranscribeOptions) -> dict:
    """The decoding settings a measurement depends on, as JSON (every option but the EAS one, and
    the seed only where a temperature > 0 draws with it: caches from before it existed stay valid)."""
    samples = any(t > 0 for t in options.temperature)
    return json.loads(json.dumps({f.name: getattr(options, f.name) for f in fields(options)
                                  if f.name != "eas" and (f.name != "seed" or samples)}))


class Cache:
    """Append-only JSON Lines; a line torn by a kill mid-write is cut off on the next open. Used as
    a context manager, it holds an exclusive lock on the file so two searches cannot share it."""

    def __init__(self, path: Path, key: dict):
        self.path, self.key = Path(path), key
        self.measurements: Dict[str, Measurement] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path, "a", encoding="utf-8")
        try:
            _lock(self._lock, self.path)
            if self.path.stat().st_size == 0:
                self._append({"type": "header", "format": CACHE_FORMAT, "key": key})
            else:
                self._load()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._lock.close()  # releases the lock

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _load(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        complete = text[: text.rfind("\n") + 1]
        if len(complete) != len(text):  # torn last line: drop it so appends start on a fresh line
            with open(self.path, "r+", encoding="utf-8") as f:
                f.truncate(len(complete.encode("utf-8")))
        lines = [json.loads(line) for line in complete.splitlines() if line.strip()]
        if not lines or lines[0].get("type") != "header" or lines[0].get("format") != CACHE_FORMAT:
            raise SearchCacheError(f"{self.path}: not a whisper-eas search cache; use another --output-dir")
        differs = sorted(k for k in set(self.key) | set(lines[0]["key"]) if self.key.get(k) != lines[0]["key"].get(k))
        if differs:
            raise SearchCacheError(f"{self.path} holds a search with other settings (differs in: {', '.join(differs)}); "
                                "use another --output-dir")
        for row in lines[1:]:
            m = Measurement.from_json(row)
            self.measurements[m.key] = m

    def add(self, m: Measurement) -> None:
        self._append(m.to_json())
        self.measurements[m.key] = m

    def _append(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _lock(f, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SearchCacheError(f"{path} is in use by another running search; wait for it or use another "
                            "--output-dir") from None


def default_output_dir(model_name: str, key: dict, root: Path = Path("runs")) -> Tuple[Path, bool]:
    """(dir, resumed): the newest unfinished search under root with this cache key, else a new one."""
    slug = profile_slug(model_name)
    for d in sorted(root.glob(f"search-{slug}-*"), reverse=True):
        if (d / "results.jsonl").is_file() and not (d / "results.json").exists() and _header_key(d) == key:
            return d, True
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"search-{slug}-{stamp}", False


def _header_key(d: Path) -> Optional[dict]:
    try:
        with open(d / "results.jsonl", encoding="utf-8") as f:
            return json.loads(f.readline()).get("key")
    except (OSError, ValueError, AttributeError):
        return None
