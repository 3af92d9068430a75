"""whisper-eas: fast offline Whisper transcription with early attentive sparsification."""

__version__ = "0.1.0"
