"""The one exception tree of whisper-eas (a leaf module: it imports nothing of ours).

    WhisperEASError                 anything whisper-eas raises on purpose
    ├── UserError                   the user must fix something; the message is one line naming it
    │   ├── AudioError              an input cannot be read as audio (io/audio.py only)
    │   ├── ModelError              a model cannot be found or read
    │   ├── ManifestError           a dataset spec or manifest cannot be used (also a ValueError)
    │   ├── ProfileError            an EAS profile cannot be read, does not fit the model, or is
    │   │                           refused for installation
    │   ├── SearchCacheError        a search's results.jsonl belongs to other settings or is in use
    │   ├── OptionsError            an option has a bad value (also a ValueError, so callers
    │   │                           that catch ValueError keep working)
    │   ├── RequestError            a request to `whisper-eas serve` that cannot be served as sent
    │   │                           (a field, the upload, the API key): its HTTP status and field
    │   └── MissingDependency       a package a feature needs is not installed; the message
    │                               says what to install
    ├── ServerBusy                  the server cannot take a request now (its queue is full, the
    │                               model is loading): retry after `retry_after` seconds
    └── JobCancelled                a job stopped before its end (`Runner.cancel`: its client left)

The command line maps `UserError` to one line on stderr and exit status 2. Any other exception
is a bug: exit status 1, one line, and the traceback with `--verbose` or WHISPER_EAS_DEBUG=1.
A ValueError from torch or numpy is therefore never reported as the user's mistake. The server
answers a `RequestError` with its status, `ServerBusy` with 429/503 and Retry-After, anything
else with 500.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["WhisperEASError", "UserError", "AudioError", "ModelError", "ManifestError", "ProfileError",
           "SearchCacheError", "OptionsError", "RequestError", "ServerBusy", "JobCancelled",
           "MissingDependency"]


class WhisperEASError(Exception):
    """Base of every exception whisper-eas raises on purpose."""


class UserError(WhisperEASError):
    """Something the user must fix (a file, a model, a flag); the message is one line meant for them."""


class AudioError(UserError):
    """The input cannot be read as audio; the message names the file."""


class ModelError(UserError):
    """A model cannot be found or read; the message names it."""


class ManifestError(UserError, ValueError):
    """A dataset spec or manifest that cannot be used; the message is one `file:line: what` line."""


class ProfileError(UserError):
    """An EAS profile that cannot be read, does not fit the loaded model, or may not be installed."""


class SearchCacheError(UserError):
    """A search output directory whose results.jsonl holds another search, or is in use by one."""


class OptionsError(UserError, ValueError):
    """An option (a keyword argument or a command-line flag) has a value that cannot work."""


class MissingDependency(UserError):
    """A feature needs a package that is not installed (an optional extra); the message says
    which and how to install it."""


class RequestError(UserError):
    """A request to the server that cannot be served as sent; `status` is its HTTP status (400,
    401, 404, 413), `param` the request field it is about (None: the request as a whole) and
    `code` a short machine-readable reason, as OpenAI's error object has them."""

    def __init__(self, message: str, status: int = 400, param: Optional[str] = None,
                 code: Optional[str] = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


class ServerBusy(WhisperEASError):
    """The server cannot take the request now: `status` 429 (its queue is full) or 503 (the model
    is loading, or the server is stopping); the client may retry after `retry_after` seconds."""

    def __init__(self, message: str, status: int = 429, retry_after: int = 1, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.retry_after, self.code = status, retry_after, code


class JobCancelled(WhisperEASError):
    """A job was stopped before its end (`Runner.cancel`), e.g. because its client went away."""
