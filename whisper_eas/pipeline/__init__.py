"""The pipeline layer: options (options.py), where windows come from (sources.py), the
round-based runner with batching, fallback and segments (runner.py), and the `WhisperModel`
hub that users call (whisper.py).

It may import the I/O and network layers and the leaf modules, never evaluation or apps."""
