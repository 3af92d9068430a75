"""The transcription pipeline: audio windows -> encoder (optionally sparsified) -> decoder with
temperature fallback -> timestamped segments.

Long files are read as a stream and transcribed window by window, each window starting where the
previous one's last complete segment ended (openai-whisper's seek rule). Several files can run in
lock-step so that their windows share encoder and decoder batches.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import AudioError, OptionsError
from ..io.audio import (FRAMES_PER_SECOND, HOP_LENGTH, SAMPLE_RATE, AudioSource, AudioWindows,
                    RawFormat, probe_duration)
from ..network.decoding import Decoder, DecodingOptions, DecodingResult, detect_language
from ..network.eas import EASConfig, parse_eas
from ..io.loading import DEFAULT_MODEL, LoadedModel, load_model
from ..network.model import TokenSet
from ..network.timing import TIME_PRECISION
from ..network.tokenizer import Tokenizer
from ..types import FileResult, Segment, TranscriptionInfo, Word  # noqa: F401




@dataclass(frozen=True)
class TranscribeOptions:
    language: Optional[str] = None
    task: str = "transcribe"
    beam_size: int = 1
    best_of: int = 5
    patience: Optional[float] = None
    length_penalty: Optional[float] = None
    temperature: Tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: Optional[float] = 2.4
    log_prob_threshold: Optional[float] = -1.0
    no_speech_threshold: Optional[float] = 0.6
    condition_on_previous_text: bool = True
    prompt_reset_on_temperature: float = 0.5
    initial_prompt: Optional[str] = None
    prefix: Optional[str] = None
    suppress_blank: bool = True
    suppress_tokens: Tuple[int, ...] = (-1,)
    without_timestamps: bool = False
    max_initial_timestamp: Optional[float] = 1.0
    word_timestamps: bool = False
    prepend_punctuations: str = "\"'“¿([{-"
    append_punctuations: str = "\"'.。,，!！?？:：”)]}、"
    eas: Optional[EASConfig] = None
    padding: str = "silence"  # how a window past the end of the audio is filled (see audio.py)

    def __post_init__(self):
        temps = self.temperature
        if isinstance(temps, (int, float)):
            temps = (float(temps),)
        object.__setattr__(self, "temperature", tuple(float(t) for t in temps))
        if not self.temperature or any(t < 0 for t in self.temperature):
            raise OptionsError("temperatures must be a non-empty list of values >= 0")
        if self.beam_size < 1 or self.best_of < 1:
            raise OptionsError("beam size and best_of must be >= 1")
        if self.task not in ("transcribe", "translate"):
            raise OptionsError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        object.__setattr__(self, "suppress_tokens", tuple(self.suppress_tokens or ()))
        if isinstance(self.eas, str):
            object.__setattr__(self, "eas", parse_eas(self.eas))



class WhisperModel:
    """`WhisperModel("tiny.en").transcribe("talk.mp3")` -> (segments generator, info), as in
    faster-whisper.

    `eas`: "auto" (default) runs the saved search profile for these weights, device and compute
    type, or dense when there is none; None or "off" runs dense; "1:0.5", "-1:0 pad=32" or an
    EASConfig runs that configuration. `transcribe(..., eas=...)` overrides it per call."""

    def __init__(self, model_size_or_path: str = DEFAULT_MODEL, device: str = "cpu",
                 compute_type: str = "default", cpu_threads: int = 0,
                 eas: Union[None, str, EASConfig] = "auto", loaded: Optional[LoadedModel] = None):
        if cpu_threads > 0:
            torch.set_num_threads(cpu_threads)
        self.loaded = loaded or load_model(model_size_or_path, device=device, compute_type=compute_type)
        self.model = self.loaded.model
        self.tokenizer = self.loaded.tokenizer
        self.device = torch.device(device)
        self.dtype = next(self.model.parameters()).dtype
        self.compute_type = self.model.compute_type
        self.eas = self._resolve_eas(eas, device)

    def _resolve_eas(self, eas, device) -> Optional[EASConfig]:
        """'auto': the saved search profile for these weights on this device (dense if none)."""
        if isinstance(eas, str) and eas.strip().lower() == "auto":
            from ..io.profiles import find_profile

            profile = find_profile(self.loaded.name, self.loaded.fingerprint, device, self.compute_type)
            if profile is None:
                logging.getLogger("whisper_eas").info("no EAS profile for %s on %s: dense", self.loaded.name, device)
                return None
            return profile.eas
        return parse_eas(eas) if isinstance(eas, str) else eas

    # -- public API ----------------------------------------------------------------------------

    def transcribe(self, audio: AudioSource, raw: Optional[RawFormat] = None,
                   progress: Optional[Callable[[float], None]] = None, **kwargs):
        """Returns (segments, info); segments is a lazy generator, as in faster-whisper."""
        options = self._options(kwargs)
        job = _Job(0, audio, raw, options, self)
        runner = _Runner(self, [job], batch_size=1)
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
                    progress(min(job.seek / FRAMES_PER_SECOND, job.info.duration))
            while job.pending:
                yield job.pending.pop(0)

        return segments(), job.info

    def transcribe_batch(self, audios: Sequence[AudioSource], batch_size: int = 8,
                         raw: Optional[RawFormat] = None,
                         progress: Optional[Callable[[float], None]] = None, **kwargs) -> Iterator["FileResult"]:
        """Transcribe many files, batching their windows; yields one FileResult per file as it
        finishes (in completion order). Unreadable files yield a result with `error` set.
        `progress` receives the seconds of audio advanced since its last call."""
        options = self._options(kwargs)
        queue = [_Job(i, a, raw, options, self) for i, a in enumerate(audios)]
        if batch_size > 1 and len(queue) > batch_size:
            # A batch runs at the length of its longest item, and with EAS the tokens kept grow
            # with the speech: files of similar length share batches or most of the work is padding.
            queue.sort(key=lambda job: job.header_duration or 0.0)
        runner = _Runner(self, queue, batch_size=batch_size)
        yield from runner.run_all(progress)

    # -- internals -----------------------------------------------------------------------------

    def _options(self, kwargs) -> TranscribeOptions:
        kwargs["eas"] = self._resolve_eas(kwargs["eas"], self.device) if "eas" in kwargs else self.eas
        try:
            return TranscribeOptions(**kwargs)
        except TypeError as e:
            raise OptionsError(str(e).replace("__init__()", "transcribe()")) from None

    @torch.inference_mode()
    def encode(self, features: torch.Tensor, audio_frames: Sequence[int], eas: Optional[EASConfig]) -> TokenSet:
        mel = features.to(self.device, self.dtype)
        if eas is None or eas.is_dense:
            return self.model.encoder(mel)
        reducer = eas.reducer(torch.tensor([audio_tokens(n) for n in audio_frames], device=self.device),
                              self.model.dims.n_audio_layer)
        # windows are padded with one constant column, which lets the stem skip the padding
        return self.model.encoder(mel, reducer, audio_frames=max(audio_frames))



def audio_tokens(frames: int) -> int:
    """Encoder tokens that hold audio in a window of `frames` mel frames (the stem halves time)."""
    return (frames + 1) // 2


def similar_length_groups(frames: Sequence[int], eas: Optional[EASConfig], n_ctx: int,
                          waste: float = 1.25) -> List[List[int]]:
    """Split a round's windows into batches of similar encoder length. A batch runs at the
    length of its longest item (the encoder, and the decoder's cross-attention K/V); with the
    padding rule the tokens kept grow with the speech, so a 25-s window among 1-s ones would
    multiply the work. A group grows while padding costs at most `waste` times the real work."""
    if eas is None or eas.pad_stride is None or len(frames) < 2:
        return [list(range(len(frames)))] if frames else []
    audio = [audio_tokens(n) for n in frames]
    tokens = [a + math.ceil((n_ctx - a) / eas.pad_stride) for a in audio]  # kept by the padding rule
    groups: List[List[int]] = [[]]
    for i in sorted(range(len(frames)), key=tokens.__getitem__):
        group = groups[-1]
        if group and (len(group) + 1) * tokens[i] > waste * (sum(tokens[j] for j in group) + tokens[i]):
            groups.append(group := [])
        group.append(i)
    return groups


class _Job:
    """One file's progress through the windows."""

    def __init__(self, index: int, source: AudioSource, raw: Optional[RawFormat], options: TranscribeOptions,
                 owner: WhisperModel):
        self.index, self.source, self.raw, self.options, self.owner = index, source, raw, options, owner
        self.seek = 0
        self.done = False
        self.error: Optional[Exception] = None
        self.pending: List[Segment] = []  # made, not yet handed out
        self.collected: List[Segment] = []  # handed out (batch mode keeps them for the result)
        self.segments_made = 0
        self.windows: Optional[AudioWindows] = None
        self.tokenizer: Optional[Tokenizer] = None
        self.info: Optional[TranscriptionInfo] = None
        self.all_tokens: List[int] = []
        self.prompt_reset_since = 0
        self.last_speech_end = 0.0
        self.first_window: Optional[TokenSet] = None  # encoded for language detection, reused once

    @cached_property
    def header_duration(self) -> Optional[float]:
        """The duration in the container's header (None: unknown), read once: batching sorts by
        it before the job starts, and the start needs it again."""
        return probe_duration(self.source, self.raw)


class _Runner:
    """Runs jobs window by window, `batch_size` windows per encoder/decoder batch."""

    def __init__(self, owner: WhisperModel, jobs: List[_Job], batch_size: int):
        if batch_size < 1:
            raise OptionsError("batch size must be >= 1")
        self.owner = owner
        self.queue = list(jobs)
        self.batch_size = batch_size
        self._decoders: Dict[tuple, Decoder] = {}

    def start(self, job: _Job) -> None:
        o = self.owner
        try:
            job.windows = AudioWindows(job.source, job.raw, o.model.dims.n_mels, job.options.padding)
            duration = job.header_duration
            first = job.windows.available_frames(0)  # decodes the first window's samples
            if job.windows.n_samples is not None:
                duration = job.windows.n_samples / SAMPLE_RATE
            if first == 0:
                raise AudioError(f"{_name(job.source)}: too short to transcribe (under 10 ms of audio)")
            opts = job.options
            tokenizer = o.tokenizer.with_language(opts.language, opts.task)
            language, lang_prob, all_probs = opts.language or "en", 1.0, None
            timings = {}
            if opts.language is None and tokenizer.multilingual:
                features, n = job.windows.window(0)
                t0 = self._clock()
                audio = o.encode(features[None], [n], opts.eas)
                t1 = self._clock()
                job.first_window = audio
                probs = detect_language(o.model, audio, tokenizer)[0]
                # the encoding is the first window's, reused for its transcription
                timings = {"encode": t1 - t0, "language": self._clock() - t1}
                all_probs = sorted(probs.items(), key=lambda kv: -kv[1])
                language, lang_prob = all_probs[0]
                tokenizer = tokenizer.with_language(language, opts.task)
            elif opts.language is not None:
                language = tokenizer.language
            job.tokenizer = tokenizer
            job.info = TranscriptionInfo(language=language, language_probability=lang_prob,
                                         duration=duration or 0.0, all_language_probs=all_probs, options=opts,
                                         timings=timings)
            if opts.initial_prompt:
                job.all_tokens = tokenizer.encode(" " + opts.initial_prompt.strip())
        except (AudioError, ValueError) as e:
            job.error = e if isinstance(e, AudioError) else AudioError(f"{_name(job.source)}: {e}")
            job.done = True

    def run_all(self, progress) -> Iterator[FileResult]:
        active: List[_Job] = []
        reported: Dict[int, float] = {}  # job index -> seconds already reported to `progress`

        def report(job, upto):
            if progress and upto > reported.get(job.index, 0.0):
                progress(upto - reported.get(job.index, 0.0))
                reported[job.index] = upto

        while self.queue or active:
            while self.queue and len(active) < self.batch_size:
                job = self.queue.pop(0)
                self.start(job)
                if job.error:
                    yield FileResult(job.index, job.source, [], None, str(job.error))
                    continue
                active.append(job)
            if not active:
                continue
            self.round(active)
            for job in list(active):
                job.collected.extend(job.pending)
                job.pending = []
                report(job, job.info.duration if job.done else job.seek / FRAMES_PER_SECOND)
                if job.done:
                    active.remove(job)
                    yield FileResult(job.index, job.source, job.collected, job.info,
                                     str(job.error) if job.error else None)

    # -- one round: the next window of every active job ----------------------------------------

    @torch.inference_mode()
    def round(self, jobs: List[_Job]) -> None:
        batch, feats, frames = [], [], []
        for job in jobs:
            if job.done:
                continue
            try:
                n = job.windows.available_frames(job.seek)
                if n <= 0:
                    self._finish(job)
                    continue
                f, n = job.windows.window(job.seek)
            except AudioError as e:
                job.error, job.done = e, True
                continue
            batch.append(job)
            feats.append(f)
            frames.append(n)
        eas = batch[0].options.eas if batch else None
        n_ctx = self.owner.model.dims.n_audio_ctx
        for group in similar_length_groups(frames, eas, n_ctx):
            self._run([batch[i] for i in group], [feats[i] for i in group], [frames[i] for i in group], eas)

    def _run(self, batch: List[_Job], feats, frames: List[int], eas: Optional[EASConfig]) -> None:
        t0 = self._clock()
        audio = self._encode(batch, feats, frames, eas)
        t1 = self._clock()
        results, steps = self._decode_with_fallback(batch, audio)
        t2 = self._clock()
        for i, (job, result, n) in enumerate(zip(batch, results, frames)):
            job.info.decoder_steps += steps[i]
            job.info.timings["encode"] = job.info.timings.get("encode", 0.0) + (t1 - t0) / len(batch)
            job.info.timings["decode"] = job.info.timings.get("decode", 0.0) + (t2 - t1) / len(batch)
            job.info.windows += 1
            job.info.tokens_kept.append(int((audio.size[i] > 0).sum()) if audio.size is not None
                                        else int(audio.x.shape[1]))
            self._consume(job, result, n, audio, i)

    def _clock(self) -> float:
        if self.owner.device.type == "cuda":  # kernels run asynchronously: wait for them
            torch.cuda.synchronize(self.owner.device)
        return time.perf_counter()

    def _encode(self, batch: List[_Job], feats, frames, eas) -> TokenSet:
        """Encode the batch's windows, reusing a first window already encoded for language
        detection."""
        cached = [job.first_window if job.seek == 0 else None for job in batch]
        for job in batch:
            job.first_window = None
        todo = [i for i, c in enumerate(cached) if c is None]
        if len(todo) == len(batch):
            return self.owner.encode(torch.stack(feats), frames, eas)
        if todo:
            fresh = self.owner.encode(torch.stack([feats[i] for i in todo]), [frames[i] for i in todo], eas)
            for j, i in enumerate(todo):
                cached[i] = fresh.select(torch.tensor([j], device=fresh.x.device))
        return TokenSet.concat(cached)

    def _decoder(self, options: DecodingOptions, tokenizer: Tokenizer) -> Decoder:
        key = (options, tokenizer.language, tokenizer.task)
        if key not in self._decoders:
            self._decoders[key] = Decoder(self.owner.model, tokenizer, options, self.owner.loaded.begin_suppress_tokens)
        return self._decoders[key]

    def _decode_with_fallback(self, batch: List[_Job], audio: TokenSet):
        """Decode each window at the first temperature whose result passes the thresholds;
        returns the results and the decoder steps each window took."""
        opts = batch[0].options
        results: List[Optional[DecodingResult]] = [None] * len(batch)
        tried: List[List[DecodingResult]] = [[] for _ in batch]
        todo = list(range(len(batch)))
        for t in opts.temperature:
            if not todo:
                break
            dopts = DecodingOptions(
                temperature=t,
                best_of=opts.best_of if t > 0 else None,
                beam_size=opts.beam_size if t == 0 and opts.beam_size > 1 else None,
                patience=opts.patience if t == 0 and opts.beam_size > 1 else None,
                length_penalty=opts.length_penalty, suppress_tokens=opts.suppress_tokens,
                suppress_blank=opts.suppress_blank, without_timestamps=opts.without_timestamps,
                max_initial_timestamp=opts.max_initial_timestamp,
            )
            # windows with prompts of different lengths go in separate decoder batches
            groups: Dict[int, List[int]] = {}
            initial: Dict[int, List[int]] = {}
            for i in todo:
                job = batch[i]
                decoder = self._decoder(dopts, job.tokenizer)
                prompt = job.all_tokens[job.prompt_reset_since:] if (opts.condition_on_previous_text or job.prompt_reset_since == 0) else []
                prefix = job.tokenizer.encode(" " + opts.prefix.strip()) if opts.prefix and job.seek == 0 else None
                initial[i] = decoder.initial_tokens(prompt, prefix)
                groups.setdefault(len(initial[i]), []).append(i)
            still = []
            for rows in groups.values():
                index = torch.tensor(rows, device=audio.x.device)
                decoder = self._decoder(dopts, batch[rows[0]].tokenizer)
                outs = decoder.run(audio.select(index), [initial[i] for i in rows])
                for i, r in zip(rows, outs):
                    tried[i].append(r)
                    if _needs_fallback(r, opts):
                        still.append(i)
                    else:
                        results[i] = r
            todo = sorted(still)
        for i in todo:  # every temperature failed: the most likely attempt that did not loop
            ok = [r for r in tried[i] if opts.compression_ratio_threshold is None
                  or r.compression_ratio <= opts.compression_ratio_threshold]
            results[i] = max(ok or tried[i], key=lambda r: r.avg_logprob)
        steps = [sum(len(r.tokens) + 1 for r in attempts) for attempts in tried]
        return results, steps

    def _consume(self, job: _Job, result: DecodingResult, n_frames: int, audio: TokenSet, row: int) -> None:
        opts, tok = job.options, job.tokenizer
        seek, segment_size = job.seek, n_frames
        time_offset = seek * HOP_LENGTH / SAMPLE_RATE
        if opts.no_speech_threshold is not None and result.no_speech_prob > opts.no_speech_threshold and not (
                opts.log_prob_threshold is not None and result.avg_logprob > opts.log_prob_threshold):
            job.seek += segment_size  # silence: skip the window
            self._after_window(job)
            return
        tokens = result.tokens
        is_ts = [t >= tok.timestamp_begin for t in tokens]
        single_ending = len(tokens) >= 2 and is_ts[-2:] == [False, True]
        cuts = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
        pieces: List[Tuple[float, float, List[int]]] = []
        if cuts:
            if single_ending:
                cuts.append(len(tokens))
            last = 0
            for cut in cuts:
                piece = tokens[last:cut]
                start = (piece[0] - tok.timestamp_begin) * TIME_PRECISION
                end = (piece[-1] - tok.timestamp_begin) * TIME_PRECISION
                pieces.append((time_offset + start, time_offset + end, piece))
                last = cut
            if single_ending:
                new_seek = seek + segment_size
            else:
                new_seek = seek + (tokens[last - 1] - tok.timestamp_begin) * 2  # 2 mel frames per token
        else:
            duration = segment_size * HOP_LENGTH / SAMPLE_RATE
            stamps = [t for t in tokens if t >= tok.timestamp_begin]
            if stamps and stamps[-1] != tok.timestamp_begin:
                duration = (stamps[-1] - tok.timestamp_begin) * TIME_PRECISION
            pieces.append((time_offset, time_offset + duration, tokens))
            new_seek = seek + segment_size
        job.seek = new_seek if new_seek > seek else seek + segment_size  # always move forward

        segments = []
        for start, end, piece in pieces:
            text = tok.decode(piece)
            if start == end or not text.strip():
                continue
            segments.append(Segment(
                id=0, seek=seek, start=round(start, 3), end=round(end, 3), text=text, tokens=list(piece),
                avg_logprob=result.avg_logprob, compression_ratio=result.compression_ratio,
                no_speech_prob=result.no_speech_prob, words=None, temperature=result.temperature,
            ))
        if opts.word_timestamps and segments:
            from ..network.timing import add_word_timestamps

            job.last_speech_end = add_word_timestamps(
                self.owner.model, tok, audio.select(torch.tensor([row], device=audio.x.device)), segments, n_frames,
                time_offset, opts, job.last_speech_end)
            if not single_ending and segments[-1].words:
                # the next window starts after the last word, not at the last timestamp token
                shift = round((segments[-1].words[-1].end - time_offset) * FRAMES_PER_SECOND)
                if shift > 0:
                    job.seek = seek + shift
        for s in segments:
            s.id = job.segments_made
            job.segments_made += 1
        job.pending.extend(segments)
        job.all_tokens.extend(t for s in segments for t in s.tokens)
        if not opts.condition_on_previous_text or result.temperature > opts.prompt_reset_on_temperature:
            job.prompt_reset_since = len(job.all_tokens)
        self._after_window(job)

    def _after_window(self, job: _Job) -> None:
        job.windows.release_before(job.seek * HOP_LENGTH)
        if job.windows.available_frames(job.seek) <= 0:
            self._finish(job)

    def _finish(self, job: _Job) -> None:
        job.done = True
        if job.windows is not None and job.windows.n_samples is not None:
            job.info.duration = job.windows.n_samples / SAMPLE_RATE


def _needs_fallback(r: DecodingResult, opts: TranscribeOptions) -> bool:
    needs = False
    if opts.compression_ratio_threshold is not None and r.compression_ratio > opts.compression_ratio_threshold:
        needs = True
    if opts.log_prob_threshold is not None and r.avg_logprob < opts.log_prob_threshold:
        needs = True
    if (opts.no_speech_threshold is not None and r.no_speech_prob > opts.no_speech_threshold
            and opts.log_prob_threshold is not None and r.avg_logprob < opts.log_prob_threshold):
        needs = False  # silence: it will be skipped, no point in retrying
    return needs


def _name(source: AudioSource) -> str:
    return "<array>" if isinstance(source, np.ndarray) else os.fspath(source)
