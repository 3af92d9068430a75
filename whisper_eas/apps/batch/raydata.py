"""Transcription as a Ray Data transform: `transcribe_dataset(ds, ...)` maps a dataset of audio to
a dataset of transcripts, with `map_batches` over a pool of actors that each load one
`WhisperModel` (Ray Data's documented pattern for batch inference).

The input rows carry where the audio is, not the audio: a `path` column (a local path every node
can read, or a URI that pyarrow opens: s3://, gs://, ...), which the actors open themselves, so no
audio goes through the driver; or a `bytes` column (the file's bytes, as `ray.data.read_binary_files`
reads them, with `path` naming them if present). An optional `id` column names the outputs.

The output rows are the results rows of worker.py, with `segments` and `timings` as JSON text (so
that every block has the same Arrow schema, `SCHEMA`).

Ray is imported only when one of these functions runs: `import whisper_eas.apps.batch` works
without the `[ray]` extra."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import partial
from pathlib import PurePosixPath
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ...errors import OptionsError
from .storage import open_storage
from .worker import COLUMNS, BatchWorker, Input

Concurrency = Union[int, Tuple[int, int]]


def schema():
    import pyarrow as pa

    types = {"duration": pa.float64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in COLUMNS])


def to_table(rows: Sequence[dict]):
    """Results rows -> an Arrow table with `schema()` (segments and timings as JSON text)."""
    import pyarrow as pa

    encoded = [{**row, "segments": json.dumps(row["segments"], ensure_ascii=False),
                "timings": json.dumps(row["timings"])} for row in rows]
    return pa.Table.from_pylist(encoded, schema=schema())


def from_columns(row: Dict[str, Any]) -> dict:
    """A row of the transcripts dataset -> a results row (segments and timings decoded)."""
    return {**row, "segments": json.loads(row["segments"]), "timings": json.loads(row["timings"])}


class Transcriber:
    """The callable class `map_batches` runs: its constructor loads the model once per actor;
    each call transcribes one batch of rows and yields each file's row as it finishes."""

    def __init__(self, load: Callable[[], Any], options, settings: Optional[dict] = None, batch_size: int = 1,
                 output: Optional[str] = None, formats: Sequence[str] = ()):
        import ray

        whisper = load()
        self.worker = BatchWorker(whisper, whisper.resolve_options(options), settings, batch_size,
                                  open_storage(output) if output else None, formats)
        self.worker.name += f"@{ray.get_runtime_context().get_node_id()[:8]}"

    def __call__(self, batch) -> Iterator:
        for row in self.worker.run(inputs_of(batch)):
            yield to_table([row])


def inputs_of(batch) -> List[Input]:
    """The `Input`s of a pyarrow batch with a `path` and/or `bytes` column and maybe an `id`."""
    columns = set(batch.column_names)
    if not columns & {"path", "bytes"}:
        raise OptionsError(f"a dataset to transcribe needs a 'path' column (paths or URIs) or a 'bytes' column "
                           f"(the files' contents); it has {', '.join(sorted(columns)) or 'none'}")
    paths = batch.column("path").to_pylist() if "path" in columns else [None] * batch.num_rows
    sources = batch.column("bytes").to_pylist() if "bytes" in columns else paths
    ids = batch.column("id").to_pylist() if "id" in columns else [None] * batch.num_rows
    return [Input(str(uid) if uid is not None else _default_id(path, source), source, path)
            for uid, source, path in zip(ids, sources, paths)]


def _default_id(path: Optional[str], source) -> str:
    if path:
        return PurePosixPath(path).stem
    return "bytes-" + hashlib.sha1(bytes(source)).hexdigest()[:12]


def transcribe_dataset(ds, model: Union[str, Callable[[], Any]] = "tiny.en", options=None, *,
                       device: str = "cpu", compute_type: str = "default", eas: Any = "auto",
                       threads: Optional[int] = None, batch_size: int = 1, files_per_call: int = 8,
                       concurrency: Concurrency = 1, num_cpus: float = 1, num_gpus: Optional[float] = None,
                       output: Optional[str] = None, formats: Sequence[str] = (), settings: Optional[dict] = None):
    """A Ray Dataset of audio -> a Ray Dataset of transcripts (lazy, as every Ray Data transform).

    `ds` has a `path` column (local paths or URIs; the actors read the files) or a `bytes` column
    (the files' contents, e.g. from `ray.data.read_binary_files(..., include_paths=True)`), and
    optionally `id`. The result has the columns `COLUMNS` (see worker.py): one row per input, a
    file that cannot be transcribed being a row with `error` set.

    `model`: a model name or folder, loaded in each actor with `device`, `compute_type`, `eas`
    and `threads` (default: `num_cpus` per actor on CPU); or a function that returns a loaded
    `WhisperModel` (called once per actor). `options`: a `TranscribeOptions` (default:
    `TranscribeOptions()`). `batch_size`: windows decoded together, as in `transcribe_batch`;
    `files_per_call`: rows handed to an actor at a time. `concurrency`: the number of actors, or
    (min, max) for an autoscaling pool; `num_cpus`/`num_gpus` are reserved per actor (default
    num_gpus: 1 on CUDA, else 0; a fraction shares a GPU). `output`: a folder or URI where each
    file's `formats` and its marker are written as it finishes (as `whisper-eas batch` does),
    with `settings` recorded in the JSON output."""
    import ray.data

    from ...pipeline.options import TranscribeOptions

    if num_gpus is None:
        num_gpus = 1 if device.startswith("cuda") else 0
    if not callable(model):
        from ...pipeline.whisper import WhisperModel

        cpu_threads = threads if threads is not None else (max(1, int(num_cpus)) if device == "cpu" else 0)
        model = partial(WhisperModel, model, device=device, compute_type=compute_type, cpu_threads=cpu_threads, eas=eas)
    if isinstance(concurrency, int):
        compute = ray.data.ActorPoolStrategy(size=concurrency)
    else:
        compute = ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    return ds.map_batches(
        Transcriber, batch_size=files_per_call, batch_format="pyarrow", compute=compute,
        num_cpus=num_cpus, num_gpus=num_gpus,
        fn_constructor_kwargs=dict(load=model, options=options or TranscribeOptions(), settings=settings,
                                   batch_size=batch_size, output=output, formats=tuple(formats)))


def connect(address: Optional[str], quiet: bool = False) -> bool:
    """Join the Ray cluster `--ray` names, or start one here; True when it was started here (and
    is to be shut down after the run). `address`: "local" (`--ray` alone: $RAY_ADDRESS if set,
    else a new Ray instance on this machine, private to this run), "auto" (the cluster running on
    this machine), or an address (`host:6379`, `ray://host:10001`). A session that is already
    connected (a notebook, the tests) is used as it is."""
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = not quiet
    context.print_on_execution_start = not quiet
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return False
    target = os.environ.get("RAY_ADDRESS") if address == "local" else address
    try:
        if target:
            ray.init(address=target, logging_level=logging.WARNING)
        else:
            # a new instance even where a cluster runs here (address=None would join it); no
            # dashboard. Its servers use this node's IP, as every Ray node's do (Ray replaces a
            # loopback address given as the node's IP with that one).
            ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise OptionsError(f"--ray {address}: cannot connect to a Ray cluster ({e}); "
                           "start one with `ray start --head`, or give `--ray` alone for a local one") from None
    return True


def default_actors(cpus_per_actor: float, gpus_per_actor: float) -> int:
    """As many actors as the cluster's CPUs (or GPUs, for GPU actors) hold now."""
    import ray

    resources = ray.cluster_resources()
    if gpus_per_actor:
        return max(1, int(resources.get("GPU", 0) // gpus_per_actor))
    return max(1, int(resources.get("CPU", 1) // cpus_per_actor))


def run_remotely(function: Callable, *args, num_cpus: float = 1, num_gpus: float = 0):
    """`function(*args)` as a Ray task with these resources; an error it raises on purpose (a
    `WhisperEASError`) is raised here as itself, not wrapped."""
    import ray

    from ...errors import WhisperEASError

    task = ray.remote(function).options(num_cpus=num_cpus, num_gpus=num_gpus)
    try:
        return ray.get(task.remote(*args))
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, WhisperEASError):
            raise e.cause from None
        raise
