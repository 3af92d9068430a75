"""`whisper-eas batch INPUT -o OUTPUT [--ray [ADDRESS]]`: a corpus to transcripts, resumably.

The run: list the inputs (inputs.py); load the model and resolve the options as `transcribe` does
(`transcribe.prepare`); skip the files whose marker is in OUTPUT already; transcribe the rest,
in this process (`BatchWorker`) or on a Ray cluster (`raydata.transcribe_dataset`), each file's
outputs and marker being written as it finishes; then write the results table (one row per input:
the markers' rows and this run's failures) and list the failures, exiting 1 if there were any, as
`transcribe` does.

OUTPUT keeps the settings of its first run (.whisper-eas/run.json); a rerun with other settings
(model, decoding, EAS, formats) is refused rather than mixing two kinds of transcripts."""

from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from ...errors import OptionsError
from ...io.outputs import FORMATS
from ...pipeline.options import TranscribeOptions
from .. import flags, transcribe
from ..flags import flag
from .inputs import Item, list_inputs
from .storage import Storage, open_storage
from .worker import COLUMNS, DONE, STATE, BatchWorker, Input, marker

RUN_FILE = f"{STATE}/run.json"
IN_PROCESS_FILES_PER_CALL = 256  # in-process, files go to the model this many at a time


def add_parser(sub) -> None:
    b = sub.add_parser("batch", help="transcribe a corpus (a folder, glob, manifest or URI), resumably, "
                       "in-process or on a Ray cluster",
                       description="Transcribe every file INPUT names into OUTPUT: per-file outputs and "
                       "a results table. A rerun skips the files done already. See docs/batch.md.")
    b.add_argument("input", metavar="INPUT", help="a folder, a glob, a manifest (.jsonl: 'audio' relative to it, "
                   "optional 'id'), one file, or any of these as a URI (s3://, gs://, file://, ...)")
    flags.add_model_flags(b)
    flags.add_decoding_flags(b, TranscribeOptions())
    flags.add_eas_flags(b)
    g = b.add_argument_group("batching")
    flag(g, "--batch-size", type=flags.positive_int, default=1, help="windows decoded together across files")
    flag(g, "--files-per-call", type=flags.positive_int, default=None, metavar="N",
         help="files handed to a model at a time (on Ray: rows per actor call; default: 8, or twice "
              "--batch-size, fewer to keep every actor busy; in-process: 256)")
    r = b.add_argument_group("ray")
    flag(r, "--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
         help="run on a Ray cluster: ADDRESS (host:6379, ray://host:10001), 'auto' (the one running here), "
              "or none for $RAY_ADDRESS or else a local Ray started for this run")
    flag(r, "--actors", type=_actors, default=None, metavar="N|MIN-MAX",
         help="model actors (default: as many as the cluster's CPUs, or GPUs with --device cuda, hold)")
    flag(r, "--cpus-per-actor", type=float, default=1.0, help="CPUs reserved per actor, and its threads (default: 1)")
    flag(r, "--gpus-per-actor", type=float, default=None,
         help="GPUs per actor (default: 1 with --device cuda, else 0; 0.5 puts two actors on a GPU)")
    flag(b, "--output-format", "-f", default="all", choices=FORMATS + ("all", "none"),
         help="per-file outputs (default: all; none: the results table only)")
    flag(b, "--results", choices=("jsonl", "parquet"), default="jsonl",
         help="format of the results table OUTPUT/results.<format> (parquet needs pyarrow)")
    flags.add_output_flags(b, "where the outputs go: a folder, or a URI (every Ray node must reach it) (required)")
    b.set_defaults(handler=run)


def _actors(text: str) -> Union[int, Tuple[int, int]]:
    low, _, high = text.partition("-")
    try:
        values = (int(low), int(high)) if high else (int(low),)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX, got {text!r}") from None
    if min(values) < 1 or (high and values[0] > values[1]):
        raise argparse.ArgumentTypeError(f"expected N >= 1 or 1 <= MIN <= MAX, got {text!r}")
    return values if high else values[0]


def run(args) -> int:
    if not args.output_dir:
        raise OptionsError("batch needs --output-dir (-o): a folder or a URI for the outputs")
    formats = FORMATS if args.output_format == "all" else () if args.output_format == "none" else (args.output_format,)
    if args.results == "parquet":
        _need_pyarrow("--results parquet")
    if args.ray is not None:
        _need_pyarrow("--ray")
    items = list_inputs(args.input)
    store = open_storage(args.output_dir)
    if args.ray is None:
        whisper, options, settings = transcribe.prepare(args)
        todo = _plan(store, items, settings, formats)
        worker = BatchWorker(whisper, options, settings, args.batch_size, store, formats)
        rows = _in_process(worker, todo, args.files_per_call or IN_PROCESS_FILES_PER_CALL, args.quiet)
        return _finish(args, store, items, len(todo), rows)

    import ray
    import ray.data

    from . import raydata

    started = raydata.connect(args.ray, args.quiet)
    try:
        gpus = args.gpus_per_actor if args.gpus_per_actor is not None else float(args.device.startswith("cuda"))
        options, settings = _prepare_for_actors(args, args.cpus_per_actor, gpus)
        todo = _plan(store, items, settings, formats)
        rows: Iterator[dict] = (row for row in ())
        if todo:
            actors = args.actors or min(raydata.default_actors(args.cpus_per_actor, gpus), len(todo))
            per_call = args.files_per_call or max(1, min(max(8, 2 * args.batch_size),
                                                         math.ceil(len(todo) / _most(actors))))
            model_flags = argparse.Namespace(model=args.model, device=args.device, compute_type=args.compute_type,
                                             threads=args.threads or max(1, int(args.cpus_per_actor)))
            files = ray.data.from_items([{"id": i.id, "path": i.audio} for i in todo],
                                        override_num_blocks=math.ceil(len(todo) / per_call))
            transcripts = raydata.transcribe_dataset(
                files, partial(flags.load_whisper, model_flags), options, batch_size=args.batch_size,
                files_per_call=per_call, concurrency=actors, num_cpus=args.cpus_per_actor, num_gpus=gpus,
                output=args.output_dir, formats=formats, settings=settings)
            rows = iter(transcripts.iter_rows())
        try:
            return _finish(args, store, items, len(todo), (raydata.from_columns(row) for row in rows))
        finally:
            rows.close()  # an interrupted run: Ray Data stops its actors now, not when collected
    finally:
        if started:
            ray.shutdown()


def _prepare_for_actors(args, cpus: float, gpus: float):
    """The options and settings every actor runs with, resolved once (so that all agree, and a
    bad flag is one line here rather than a dead actor): in this process when it has the device,
    else in a Ray task with an actor's resources."""
    if not args.device.startswith("cuda") or _has_cuda():
        _, options, settings = transcribe.prepare(args)
        return options, settings
    from . import raydata

    return raydata.run_remotely(_options_and_settings, args, num_cpus=cpus, num_gpus=gpus)


def _options_and_settings(args):
    _, options, settings = transcribe.prepare(args)
    return options, settings


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _most(actors) -> int:
    return actors if isinstance(actors, int) else actors[1]


def _plan(store: Storage, items: Sequence[Item], settings: dict, formats: Sequence[str]) -> List[Item]:
    """The items still to do; records the run's settings in OUTPUT, or refuses other ones."""
    wanted = json.loads(json.dumps({"settings": settings, "formats": list(formats)}))
    try:
        recorded = json.loads(store.read_text(RUN_FILE))
    except FileNotFoundError:
        store.write_text(RUN_FILE, json.dumps(wanted, indent=1) + "\n")
        recorded = wanted
    if recorded != wanted:
        old, new = {**recorded["settings"], "formats": recorded["formats"]}, {**wanted["settings"], "formats": wanted["formats"]}
        changed = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                            if old.get(k) != new.get(k))
        raise OptionsError(f"{store.describe()} holds a batch run with other settings ({changed}); "
                           "give another --output-dir, or remove that one to start over")
    done = _done(store)
    return [item for item in items if item.id not in done]


def _done(store: Storage) -> set:
    return {name[: -len(".json")] for name in store.files(DONE) if name.endswith(".json")}


def _in_process(worker: BatchWorker, todo: Sequence[Item], per_call: int, quiet: bool) -> Iterator[dict]:
    from tqdm import tqdm

    show = not quiet and sys.stderr.isatty()
    with tqdm(total=len(todo), unit="file", disable=not show, file=sys.stderr) as bar:
        for start in range(0, len(todo), per_call):
            for row in worker.run([Input(i.id, i.audio, i.audio) for i in todo[start:start + per_call]]):
                bar.update(1)
                yield row


def _finish(args, store: Storage, items: Sequence[Item], n_todo: int, rows: Iterable[dict]) -> int:
    """Consume this run's rows, write the results table, report; the exit status."""
    failed = {}
    transcribed = 0
    for row in rows:
        if row["error"]:
            failed[row["id"]] = row
        else:
            transcribed += 1
    table = f"results.{args.results}"
    write_table(store, table, _table_rows(store, items, failed), args.results)
    if not args.quiet:
        print(f"whisper-eas: {len(items)} files: {transcribed} transcribed, {len(items) - n_todo} done before, "
              f"{len(failed)} failed; results in {store.describe(table)}", file=sys.stderr)
    failures = [row["error"] for row in failed.values()]
    return transcribe.report_failures(failures, len(items))


def _table_rows(store: Storage, items: Sequence[Item], failed: dict) -> Iterator[dict]:
    """One row per input, in the order of the inputs: a done file's marker, else its failure."""
    done = _done(store)
    with ThreadPoolExecutor(max_workers=16) as pool:  # markers on an object store: reads in parallel
        texts = pool.map(lambda item: store.read_text(marker(item.id)) if item.id in done else None, items)
        for item, text in zip(items, texts):
            if text is not None:
                yield json.loads(text)
            elif item.id in failed:
                yield failed[item.id]


def write_table(store: Storage, name: str, rows: Iterable[dict], fmt: str, chunk: int = 1000) -> None:
    """The results table, atomically: JSON Lines (segments and timings as JSON) or Parquet (as
    JSON text, the Ray dataset's schema)."""
    with store.open_atomic(name) as out:
        if fmt == "jsonl":
            for row in rows:
                out.write((json.dumps({k: row[k] for k in COLUMNS}, ensure_ascii=False) + "\n").encode("utf-8"))
            return
        import pyarrow.parquet as pq

        from .raydata import schema, to_table

        with pq.ParquetWriter(out, schema()) as writer:
            batch: List[dict] = []
            for row in rows:
                batch.append(row)
                if len(batch) == chunk:
                    writer.write_table(to_table(batch))
                    batch = []
            writer.write_table(to_table(batch))


def _need_pyarrow(what: str) -> None:
    try:
        import pyarrow  # noqa: F401
        if what == "--ray":
            import ray  # noqa: F401
    except ImportError:
        raise OptionsError(f"{what} needs the [ray] extra: pip install 'whisper-eas[ray]'") from None
