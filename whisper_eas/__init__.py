"""whisper-eas: fast offline Whisper transcription with early attentive sparsification."""

__version__ = "0.1.0"

from .network.eas import EASConfig, Stage, parse_eas  # noqa: E402
from .pipeline.runner import WhisperModel  # noqa: E402
from .types import FileResult, Segment, TranscriptionInfo, Word  # noqa: E402

__all__ = ["WhisperModel", "Segment", "Word", "TranscriptionInfo", "FileResult", "EASConfig", "Stage", "parse_eas"]
