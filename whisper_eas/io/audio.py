"""Audio in: decode any container/codec in-process with PyAV, resample to 16 kHz mono, and compute
Whisper's log-mel features one 30-second window at a time, so that memory stays bounded on
multi-hour files.

An input is a path, a binary file object (stdin, a download in memory: any container ffmpeg
reads from a stream), or samples already at 16 kHz: a NumPy array, a CPU tensor or a list.
Samples are checked and made float32 mono in [-1, 1] (`as_samples`):
- float samples are taken as they are; integer PCM is scaled, int16 by 1/32768, int32 by 1/2**31,
  int8 by 1/128, and uint8 (8-bit WAV) centred on 128 first; other types are refused;
- a 2-D array is multi-channel, (channels, samples) or (samples, channels): its shorter axis is the
  channels (1 to 8) when the other is at least 100 times longer, and the channels are averaged
  (mixed down); any other shape is refused, rather than guessed at;
- NaN or infinite samples are refused.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import AudioError, OptionsError

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second


@dataclass(frozen=True)
class RawFormat:
    """Headerless little-endian 16-bit PCM (`--raw`): the stream has no header to say its layout."""

    sample_rate: int = SAMPLE_RATE
    channels: int = 1

    def __post_init__(self):
        if self.sample_rate <= 0 or not 1 <= self.channels <= 8:
            raise OptionsError("raw audio needs a positive sample rate and 1 to 8 channels")


AudioSource = Union[str, os.PathLike, BinaryIO, np.ndarray, torch.Tensor, Sequence[float]]
MAX_CHANNELS = 8
# integer PCM: (offset, scale) to float in [-1, 1]
_PCM_SCALE = {np.dtype(np.int16): (0, 32768.0), np.dtype(np.int32): (0, 2.0 ** 31), np.dtype(np.int8): (0, 128.0),
              np.dtype(np.uint8): (128, 128.0)}


@lru_cache(maxsize=None)
def _lenient_metadata() -> dict:
    """PyAV before 19 decodes metadata strictly unless told `metadata_errors="ignore"` (a tag in
    a wrong encoding would fail the whole file); PyAV 19 dropped the argument (and no longer
    fails on such tags), so it is passed only where `av.open` takes it."""
    try:
        import av
        return {"metadata_errors": "ignore"} if int(av.__version__.split(".")[0]) < 19 else {}
    except (ImportError, ValueError):
        return {}


def is_samples(source) -> bool:
    """True for samples given directly (an array, a tensor, a list or tuple), not a path or a stream."""
    return isinstance(source, (np.ndarray, torch.Tensor, list, tuple))


def is_stream(source) -> bool:
    """True for a binary file object (stdin's buffer, io.BytesIO, an open file)."""
    return hasattr(source, "read") and not is_samples(source)


def as_samples(source) -> np.ndarray:
    """Samples given directly -> 16-kHz mono float32 (see the module docstring for the rules);
    anything else about them is a one-line AudioError."""
    name = source_name(source)
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    try:
        audio = np.asarray(source)
    except (ValueError, TypeError):  # a ragged list
        raise AudioError(f"{name}: not an array of samples (rows of different lengths?)") from None
    if audio.dtype in _PCM_SCALE:
        offset, scale = _PCM_SCALE[audio.dtype]
        audio = (audio.astype(np.float32) - offset) / scale
    elif audio.dtype.kind != "f":
        raise AudioError(f"{name}: samples of type {audio.dtype} cannot be read: give float samples in [-1, 1] "
                         "or int16, int32, int8 or uint8 PCM")
    audio = audio.astype(np.float32, copy=False)
    if audio.ndim == 2:
        short = min(audio.shape)
        if _samples_per_channel(audio.shape) is None:
            raise AudioError(f"{name}: a {audio.shape[0]} x {audio.shape[1]} array is not (channels, samples) or "
                             f"(samples, channels) with 1 to {MAX_CHANNELS} channels")
        audio = audio.mean(axis=0 if audio.shape[0] == short else 1, dtype=np.float32)
    elif audio.ndim != 1:
        raise AudioError(f"{name}: a {audio.ndim}-dimensional array is not audio: give samples, or "
                         "(channels, samples)")
    if not np.isfinite(audio).all():
        raise AudioError(f"{name}: {int((~np.isfinite(audio)).sum())} samples are NaN or infinite")
    return audio


def _samples_per_channel(shape) -> Optional[int]:
    """Samples per channel of an array of this shape when it is a layout `as_samples` reads:
    samples, or (channels, samples) / (samples, channels) with 1 to MAX_CHANNELS channels."""
    if len(shape) == 1:
        return int(shape[0])
    if len(shape) == 2:
        short, long = sorted(shape)
        if 1 <= short <= MAX_CHANNELS and long >= 100 * short:
            return int(long)
    return None


def _stream_container(source, block_samples: int, raw: Optional[RawFormat] = None,
                      warnings: Optional[List[str]] = None) -> Iterator[np.ndarray]:
    import av

    path = source_name(source)

    # s16 output and the same resampler as faster-whisper, so that features match it exactly
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    options = {}
    if raw is not None:
        layout = {1: "mono", 2: "stereo"}.get(raw.channels, f"{raw.channels}c")
        options = dict(format="s16le", options={"sample_rate": str(raw.sample_rate), "ch_layout": layout})
    try:
        container = av.open(source, mode="r", **_lenient_metadata(), **options)
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise AudioError(f"{path}: not a readable audio file ({_reason(e)})") from None
    pending, n_pending, n_decoded = [], 0, 0
    with container:
        if not container.streams.audio:
            raise AudioError(f"{path}: the file has no audio stream")
        try:
            for frame in container.decode(audio=0):
                frame.pts = None  # let the resampler run on sample counts, not broken timestamps
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    n_pending += out.samples
                    n_decoded += out.samples
                if n_pending >= block_samples:
                    yield _to_float(pending)
                    pending, n_pending = [], 0
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as e:
            # A truncated or damaged stream: what decoded so far is kept, as ffmpeg does, and said
            # (`warnings`); a file that yields nothing at all is an error.
            if not pending and n_decoded == 0:
                raise AudioError(f"{path}: cannot decode audio ({_reason(e)})") from None
            if warnings is not None:
                warnings.append(f"{path}: the audio stream is truncated or corrupt after {n_decoded / SAMPLE_RATE:.1f} s; "
                                "transcribed what could be decoded")
    if pending:
        yield _to_float(pending)


def _reason(e: Exception) -> str:
    if getattr(e, "strerror", None):  # FFmpegError: the message without "[Errno N]" and the path
        return str(e.strerror).strip().splitlines()[0]
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.split(": '")[0]


def _to_float(parts) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32) / 32768.0


def stream_audio(source: AudioSource, raw: Optional[RawFormat] = None, block_seconds: float = 60.0,
                 warnings: Optional[List[str]] = None) -> Iterator[np.ndarray]:
    """Yield 16 kHz mono float32 blocks of about `block_seconds`. A stream damaged part-way ends
    where the damage starts, with one line on `warnings` (when given) saying so."""
    block = int(block_seconds * SAMPLE_RATE)
    if is_samples(source):
        audio = as_samples(source)
        for i in range(0, len(audio), block):
            yield audio[i : i + block]
        return
    if is_stream(source):
        yield from _stream_container(source, block, raw, warnings)
        return
    path = os.fspath(source)
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: the file is empty")
    yield from _stream_container(path, block, raw, warnings)


def load_audio(source: AudioSource, raw: Optional[RawFormat] = None) -> np.ndarray:
    """The whole file as one 16 kHz mono float32 array (for short inputs and tests)."""
    blocks = list(stream_audio(source, raw))
    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise AudioError(f"{source_name(source)}: contains no audio samples")
    return audio


def source_name(source: AudioSource) -> str:
    """How messages name an input: its path, '<array>', or a stream's name ('<stdin>')."""
    if is_samples(source):
        return "<array>"
    if is_stream(source):
        name = getattr(source, "name", None)
        return name if isinstance(name, str) else "<stream>"
    return os.fspath(source)


def probe_duration(source: AudioSource, raw: Optional[RawFormat] = None) -> Optional[float]:
    """Duration in seconds from the container's header without decoding (None when unknown)."""
    if is_samples(source):  # from the shape alone: no conversion (the real read checks the values)
        try:
            shape = tuple(np.shape(source))
        except (ValueError, TypeError):  # a ragged list: the real read reports it
            return None
        n = _samples_per_channel(shape)
        return None if n is None else n / SAMPLE_RATE
    if is_stream(source):
        return None  # reading a header would consume the stream
    path = os.fspath(source)
    if raw is not None:
        return os.path.getsize(path) / (2 * raw.channels * raw.sample_rate) if os.path.isfile(path) else None
    import av

    try:
        with av.open(path, **_lenient_metadata()) as container:
            if container.duration:
                return container.duration / 1_000_000
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except Exception:  # the real decode reports unreadable files with a proper message
        return None
    return None


@lru_cache(maxsize=None)
def mel_filters(n_mels: int) -> np.ndarray:
    """The Slaney-style mel filterbank Whisper was trained with (librosa's default), (n_mels, 201)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


_WINDOW = torch.hann_window(N_FFT)


def log_mel_spectrogram(audio: Union[np.ndarray, torch.Tensor], n_mels: int = 80) -> torch.Tensor:
    """Whisper's features for a whole clip: (n_mels, len // 160), the reference definition
    (reflect-padded centred STFT, power, mel, log10, clamp to max - 8, scale)."""
    audio = torch.as_tensor(audio, dtype=torch.float32)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=_WINDOW, return_complex=True)
    power = stft[..., :-1].abs() ** 2
    return _normalize(torch.from_numpy(mel_filters(n_mels)) @ power)


def _normalize(mel: torch.Tensor) -> torch.Tensor:
    log_spec = mel.clamp(min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


PADDINGS = ("silence", "zeros")
INAUDIBLE = 10 ** (-80 / 20)  # a window whose samples all stay under -80 dBFS holds nothing to hear
SILENCE_FLOOR = (math.log10(1e-10) + 4.0) / 4.0  # a frame of digital silence, normalised: -1.5


class AudioWindows:
    """Random access to 30-s feature windows of a streamed file, keeping only the samples from
    the earliest window still needed onwards.

    Frames of audio match faster-whisper's features (160 zero samples appended, centred STFT).
    A window that runs past the end of the audio is filled, by `padding`, with
    - "silence": the features of digital silence, i.e. the clamp floor (max - 8 dB*10) that
      `log_mel_spectrogram(pad_or_trim(audio))` gives in openai-whisper's `decode` path; or
    - "zeros": zeros, as openai-whisper's `transcribe()` and faster-whisper pad features.
    Whisper hallucinates and cuts prompts short noticeably more often with "zeros" on short
    clips, so "silence" is our default (see docs/ for the measurement).
    Each window is normalised on its own frames, which equals whole-file normalisation for
    clips up to 30 s.
    """

    def __init__(self, source: AudioSource, raw: Optional[RawFormat] = None, n_mels: int = 80,
                 padding: str = "silence", warnings: Optional[List[str]] = None):
        if padding not in PADDINGS:
            raise OptionsError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.padding = padding
        self.n_mels = n_mels
        #: problems that did not stop the read (a stream truncated part-way), one line each
        self.warnings: List[str] = [] if warnings is None else warnings
        self._blocks = stream_audio(source, raw, warnings=self.warnings)
        self._name = source_name(source)
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0  # sample index of _buf[0]
        self._eof = False
        self.n_samples: Optional[int] = None  # known once the stream is exhausted

    def _fill_to(self, sample: int) -> None:
        while not self._eof and self._buf_start + len(self._buf) < sample:
            block = next(self._blocks, None)
            if block is None:
                self._eof = True
                self.n_samples = self._buf_start + len(self._buf)
                if self.n_samples == 0:
                    raise AudioError(f"{self._name}: contains no audio samples")
            else:
                self._buf = np.concatenate([self._buf, block])

    def release_before(self, sample: int) -> None:
        """Samples before `sample` will not be asked for again."""
        cut = max(0, min(sample - self._buf_start - N_FFT, len(self._buf)))
        if cut > 0:
            self._buf = self._buf[cut:]
            self._buf_start += cut

    def total_frames(self) -> int:
        """Frames in the whole file (reads it to the end; memory stays bounded by release)."""
        while not self._eof:
            self._fill_to(self._buf_start + len(self._buf) + N_SAMPLES)
            self.release_before(self._buf_start + len(self._buf) - N_SAMPLES)
        return self.n_samples // HOP_LENGTH

    def available_frames(self, start_frame: int) -> int:
        """Audio frames from start_frame to the end of the file, at most one window."""
        self._fill_to((start_frame + N_FRAMES) * HOP_LENGTH + N_FFT)
        if self.n_samples is None:
            return N_FRAMES
        # n // 160 frames, as openai-whisper and faster-whisper count them
        return max(0, min(N_FRAMES, self.n_samples // HOP_LENGTH - start_frame))

    def window(self, start_frame: int) -> tuple:
        """(features (n_mels, 3000), n_audio_frames) of the window starting at `start_frame`."""
        n_frames = self.available_frames(start_frame)
        if n_frames <= 0:
            raise ValueError("window starts past the end of the audio")
        half = N_FFT // 2
        lo = start_frame * HOP_LENGTH - half
        hi = (start_frame + n_frames - 1) * HOP_LENGTH + half
        segment = self._samples(lo, hi)
        stft = torch.stft(torch.from_numpy(segment), N_FFT, HOP_LENGTH, window=_WINDOW,
                          center=False, return_complex=True)
        power = stft.abs() ** 2
        mel = _normalize(torch.from_numpy(mel_filters(self.n_mels)) @ power)
        # Digital silence is what openai-whisper's pad_or_trim appends: log10 of the 1e-10 floor,
        # raised to the clamp at 8 (log10 units) below the peak - 2 after scaling by 1/4, or, when
        # the audio itself is that quiet (the peak under -2, e.g. all silence), the floor itself,
        # (-10 + 4) / 4 = -1.5. Below -1.5 the padding would sit under the audio's own silence.
        fill = max(float(mel.max()) - 2.0, SILENCE_FLOOR) if self.padding == "silence" else 0.0
        features = torch.full((self.n_mels, N_FRAMES), fill)
        features[:, :n_frames] = mel
        return features, n_frames

    def inaudible(self, start_frame: int, n_frames: int) -> bool:
        """True when every sample of the `n_frames` frames from `start_frame` stays under
        INAUDIBLE (-80 dBFS): digital silence, nothing to decode."""
        lo = max(start_frame * HOP_LENGTH - self._buf_start, 0)
        hi = max((start_frame + n_frames) * HOP_LENGTH - self._buf_start, lo)
        part = self._buf[lo:hi]
        return (float(np.abs(part).max()) if len(part) else 0.0) < INAUDIBLE

    def _samples(self, lo: int, hi: int) -> np.ndarray:
        """Samples [lo, hi) of the clip with 160 zeros appended, reflect-padded at both ends the
        way a centred STFT pads the whole clip."""
        n = self.n_samples if self.n_samples is not None else None
        padded_len = None if n is None else n + HOP_LENGTH
        idx = np.arange(lo, hi)
        idx = np.where(idx < 0, -idx, idx)  # reflect at the start
        if padded_len is not None:
            idx = np.where(idx >= padded_len, 2 * (padded_len - 1) - idx, idx)  # reflect at the end
        out = np.zeros(len(idx), np.float32)
        inside = (idx >= self._buf_start) & (idx < self._buf_start + len(self._buf))
        out[inside] = self._buf[idx[inside] - self._buf_start]
        return out  # indexes in [n, n + 160) are the appended zeros
