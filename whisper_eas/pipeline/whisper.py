"""`WhisperModel`: the hub users call, as in faster-whisper.

`WhisperModel("tiny.en").transcribe("talk.mp3")` -> (lazy generator of segments, info). The model
loads the weights (io/loading.py), resolves which EAS configuration to run (a saved profile for
`eas="auto"`, io/profiles.py), turns the caller's options into one validated `TranscribeOptions`
and hands jobs to the runner (runner.py), each job fed by a window source (sources.py): a file or
an array by default, or any `WindowSource` the caller passes instead.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Optional, Sequence, Union

import torch

from ..errors import OptionsError
from ..io.audio import AudioSource, RawFormat
from ..io.loading import DEFAULT_MODEL, LoadedModel, load_model
from ..io.profiles import Profile, find_profile
from ..network.eas import EASConfig, EASPolicy, parse_eas
from ..network.model import TokenSet
from ..types import FileResult
from .options import AUTO_EAS, MODEL_EAS, TranscribeOptions
from .runner import Job, Runner, audio_tokens
from .sources import ChunkedWindows, FileWindows, WindowSource

Audio = Union[AudioSource, WindowSource]  # a path, a 16-kHz float array, or a window source


class WhisperModel:
    """`WhisperModel("tiny.en").transcribe("talk.mp3")` -> (segments generator, info), as in
    faster-whisper.

    `eas`: "auto" (default) runs the saved search profile for these weights, device and compute
    type, or dense when there is none; None or "off" runs dense; "1:0.5", "-1:0 pad=32" or an
    EASConfig runs that configuration; "SHORT | SPEECH" or an EASPolicy picks one per window. `transcribe(..., eas=...)` overrides it per call."""

    def __init__(self, model_size_or_path: str = DEFAULT_MODEL, device: str = "cpu",
                 compute_type: str = "default", cpu_threads: int = 0,
                 eas: Union[None, str, EASConfig] = AUTO_EAS, loaded: Optional[LoadedModel] = None):
        if cpu_threads > 0:
            torch.set_num_threads(cpu_threads)
        self.loaded = loaded or load_model(model_size_or_path, device=device, compute_type=compute_type)
        self.model = self.loaded.model
        self.tokenizer = self.loaded.tokenizer
        self.device = torch.device(device)
        self.dtype = next(self.model.parameters()).dtype
        self.compute_type = self.model.compute_type
        #: the installed (or shipped) profile whose configuration `eas` is (None: not "auto", or none fits)
        self.profile: Optional[Profile] = None
        if isinstance(eas, str) and eas.strip().lower() == AUTO_EAS:
            self.profile = self.auto_profile()
            eas = None if self.profile is None else self.profile.policy
        self.eas: Union[None, EASConfig, EASPolicy] = self._resolve_eas(eas)
        if self.eas is not None:
            self.eas.check_layers(self.model.dims.n_audio_layer)

    def auto_profile(self) -> Optional[Profile]:
        """The profile that `eas="auto"` runs for these weights, device and compute type (None:
        there is none, and "auto" runs dense). Looked up anew each time (a few small files), so a
        profile installed meanwhile counts at once."""
        profile = find_profile(self.loaded.name, self.loaded.fingerprint, str(self.device), self.compute_type,
                               n_layers=self.model.dims.n_audio_layer)
        if profile is None:
            logging.getLogger("whisper_eas").info("no EAS profile for %s on %s: dense", self.loaded.name, self.device)
        return profile

    def _resolve_eas(self, eas) -> Union[None, EASConfig, EASPolicy]:
        """'auto': the saved search profile for these weights on this device (dense if none)."""
        if isinstance(eas, str) and eas.strip().lower() == AUTO_EAS:
            profile = self.auto_profile()
            return None if profile is None else profile.policy
        return parse_eas(eas) if isinstance(eas, str) else eas

    # -- public API ----------------------------------------------------------------------------

    def transcribe(self, audio: Audio, options: Optional[TranscribeOptions] = None, *,
                   batch_size: int = 8, raw: Optional[RawFormat] = None,
                   progress: Optional[Callable[[float], None]] = None, **overrides):
        """Returns (segments, info); segments is a lazy generator, as in faster-whisper, in the
        order of the audio.

        `options` (default: `TranscribeOptions()`) with any keyword `overrides` replaced onto it:
        `transcribe("a.wav", word_timestamps=True)` and `transcribe("a.wav", EVAL_OPTIONS,
        beam_size=5)` both work. Long audio is cut at silences into chunks that decode
        `batch_size` at a time (`chunking="off"`: one window after another, openai-whisper's
        way). `progress` receives the seconds of audio transcribed so far."""
        options = self.resolve_options(options, **overrides)
        job = Job(0, self.window_source(audio, raw, options, batch_size), options, label=audio)
        runner = Runner(self, batch_size=batch_size)
        runner.start(job)  # reads the first window, detects the language: info is ready
        if job.error:
            raise job.error

        def segments():
            while not job.done:
                runner.round([job])
                if job.error:
                    raise job.error
                while job.pending:
                    yield job.pending.pop(0)
                if progress:
                    progress(min(job.position, job.info.duration))
            while job.pending:
                yield job.pending.pop(0)

        return segments(), job.info

    def transcribe_batch(self, audios: Sequence[Audio], options: Optional[TranscribeOptions] = None,
                         batch_size: int = 8, raw: Optional[RawFormat] = None,
                         progress: Optional[Callable[[float], None]] = None, **overrides) -> Iterator[FileResult]:
        """Transcribe many files, batching their windows; yields one FileResult per file as it
        finishes (in completion order). Unreadable files yield a result with `error` set.
        `progress` receives the seconds of audio advanced since its last call."""
        options = self.resolve_options(options, **overrides)
        queue = [Job(i, self.window_source(a, raw, options, batch_size), options, label=a) for i, a in enumerate(audios)]
        if batch_size > 1 and len(queue) > batch_size:
            # A batch runs at the length of its longest item, and with EAS the tokens kept grow
            # with the speech: files of similar length share batches or most of the work is padding.
            queue.sort(key=lambda job: job.source.length_hint() or 0.0)
        runner = Runner(self, batch_size=batch_size, jobs=queue)
        yield from runner.run_all(progress)

    def resolve_options(self, options: Optional[TranscribeOptions] = None, **overrides) -> TranscribeOptions:
        """The options one run uses: `options` (default `TranscribeOptions()`) with `overrides`
        replaced onto it, the EAS setting resolved ("model": this model's own, "auto": the saved
        profile) and checked against this model (its encoder blocks, its languages)."""
        if options is None:
            options = TranscribeOptions()
        elif not isinstance(options, TranscribeOptions):
            raise OptionsError(f"options must be a TranscribeOptions, got {type(options).__name__} "
                               "(pass keyword arguments for single settings)")
        options = options.replace(**overrides)
        eas = self.eas if options.eas == MODEL_EAS else self._resolve_eas(options.eas)
        if eas is not None:
            eas.check_layers(self.model.dims.n_audio_layer)
        self.tokenizer.with_language(options.language, options.task)  # e.g. French on an English-only model
        return options.replace(eas=eas)

    # -- internals -----------------------------------------------------------------------------

    def window_source(self, audio: Audio, raw: Optional[RawFormat], options: TranscribeOptions,
                      batch_size: int) -> WindowSource:
        """The windows `transcribe` decodes `audio` as: a long file cut at silences into chunks
        decoded side by side (up to `batch_size` at once) unless `options.chunking` is 'off'; one
        sequential stream otherwise. A server or a batch runner builds its jobs here, so that
        they give what `transcribe` gives."""
        if isinstance(audio, WindowSource):
            return audio
        if options.chunking == "vad":
            return ChunkedWindows(audio, raw, self.model.dims.n_mels, options.padding, max_streams=batch_size)
        return FileWindows(audio, raw, self.model.dims.n_mels, options.padding)

    @torch.inference_mode()
    def encode(self, features: torch.Tensor, audio_frames: Sequence[int], eas: Optional[EASConfig]) -> TokenSet:
        mel = features.to(self.device, self.dtype)
        if eas is None or eas.is_dense:
            return self.model.encoder(mel)
        energy = None
        if eas.pause is not None:  # the pause rule reads each token's loudness: its two frames' mean log-mel
            frames = mel.float().mean(dim=1)
            energy = frames[:, : frames.shape[1] // 2 * 2].reshape(frames.shape[0], -1, 2).mean(dim=2)
        reducer = eas.reducer(torch.tensor([audio_tokens(n) for n in audio_frames], device=self.device),
                              self.model.dims.n_audio_layer, energy)
        # windows are padded with one constant column, which lets the stem skip the padding
        return self.model.encoder(mel, reducer, audio_frames=max(audio_frames))
