"""The network layer: the Whisper model (model.py, self-contained), early attentive
sparsification of its encoder (eas.py), compute types (quantize.py), the decoding loops
(decoding.py), word alignment (timing.py) and the tokenizer (tokenizer.py).

Imports run one way: nothing here imports the I/O, pipeline, evaluation or apps layers; only
these siblings and the leaf modules (types, errors, hardware)."""
