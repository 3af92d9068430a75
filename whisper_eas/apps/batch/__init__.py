"""`whisper-eas batch`: a corpus past one process, resumably - in-process, or on a Ray cluster
with Ray Data (`--ray`). docs/batch.md is the user's guide.

    inputs.py    INPUT (folder, glob, manifest, file, URI) -> the list of items (id, audio)
    storage.py   the output folder, local or a URI: listing, reading, atomic writes; fetching inputs
    worker.py    one loaded model over a list of inputs: outputs, then the marker, per file; rows
    raydata.py   Ray Data: the `map_batches` callable class, `transcribe_dataset`, connecting
    command.py   the command: plan (skip what is done), run, results table, exit status

The Python API for a Ray Dataset you hold already:

    from whisper_eas.apps.batch import transcribe_dataset
    transcripts = transcribe_dataset(ray.data.read_binary_files("s3://b/calls/", include_paths=True),
                                     model="base", options=TranscribeOptions(language="en"), concurrency=4)

Ray is an optional extra (`pip install 'whisper-eas[ray]'`) and is imported only when used."""

from .command import add_parser, run
from .raydata import transcribe_dataset
from .worker import COLUMNS, BatchWorker, Input

__all__ = ["add_parser", "run", "transcribe_dataset", "COLUMNS", "BatchWorker", "Input"]
