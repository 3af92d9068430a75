"""The evaluation layer: datasets (manifest.py), WER and significance (metrics.py), one
configuration on a dataset (evaluate.py), engines side by side (bench.py), the EAS search
(search/) and its plots (plots.py).

It talks to the model only through the pipeline's `WhisperModel` and `TranscribeOptions`, and
holds no argparse: the command line (apps/) builds its inputs."""
