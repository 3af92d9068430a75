"""The I/O layer: audio in (audio.py, streamed, bounded memory), checkpoints in (loading.py),
saved EAS profiles (profiles.py) and transcripts out (outputs.py).

It may import the network layer and the leaf modules, never the pipeline, evaluation or apps."""
