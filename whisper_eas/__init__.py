"""whisper-eas: fast offline Whisper transcription with early attentive sparsification.

The public face; everything else lives in the layers below (see the README's layout):

    from whisper_eas import WhisperModel, TranscribeOptions
    segments, info = WhisperModel("tiny.en").transcribe("talk.mp3", word_timestamps=True)
"""

__version__ = "0.1.0"

from .errors import (AudioError, ManifestError, ModelError, OptionsError, ProfileError,  # noqa: E402
                     SearchCacheError, UserError, WhisperEASError)
from .network.eas import EASConfig, Stage, parse_eas  # noqa: E402
from .pipeline.options import EVAL_OPTIONS, TranscribeOptions  # noqa: E402
from .pipeline.sources import FileWindows, Window, WindowSource  # noqa: E402
from .pipeline.whisper import WhisperModel  # noqa: E402
from .types import FileResult, Segment, TranscriptionInfo, Word  # noqa: E402

__all__ = ["WhisperModel", "TranscribeOptions", "EVAL_OPTIONS", "Segment", "Word", "TranscriptionInfo", "FileResult",
           "EASConfig", "Stage", "parse_eas", "Window", "WindowSource", "FileWindows",
           "WhisperEASError", "UserError", "AudioError", "ModelError", "ManifestError", "ProfileError",
           "SearchCacheError", "OptionsError", "__version__"]
