"""The round-based runner: windows -> encoder (optionally sparsified) -> decoder with temperature
fallback -> timestamped segments.

A job is one input: its options, and a `WindowSource` (sources.py) that says which windows to
decode. Each round takes up to `batch_size` of the windows that are ready, a fair share from
every active job in turn (one window from each, round and round, starting with a different job
each round), so a long file's many chunks do not hold back a short file's one window; the rest
wait for the next round. The round's windows are grouped by options and by similar encoder
length into batches, encoded and decoded; each result becomes segments, and each window goes
back to its source with the frames the decoder consumed - the end of the last complete segment,
or the whole window - so that the source can apply the seek rule. Several files thus run in
lock-step and share encoder and decoder batches, and `submit` adds jobs while the runner runs
(a server's requests).

A server runs `stream_round` instead: the ready windows of its jobs join a decoding stream
(network/decoding.py, `DecodingStream`) that keeps the windows already under way, every round
takes a few decoder steps over all of them, and a window is finished the moment its decoding
ends (or rejoins the stream at its next fallback temperature); requests that arrive mid-flight
thus share the decoder's steps at once instead of waiting for a round's longest window.

A job's segments are handed out (`Job.pending`) in the order of the audio: a stream's segments
wait until every earlier stream of its source is done.

The prompt (the text of earlier windows), where it was last reset, and where speech last ended
are kept per stream of a source (`StreamState`), so a source with several independent streams
gets each its own context.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch

from ..errors import AudioError, JobCancelled, OptionsError
from ..io.audio import FRAMES_PER_SECOND, HOP_LENGTH, SAMPLE_RATE
from ..network.decoding import Decoder, DecodingOptions, DecodingResult, DecodingStream, detect_language
from ..network.eas import EASConfig, config_for
from ..network.model import TokenSet
from ..network.timing import TIME_PRECISION, add_word_timestamps
from ..network.tokenizer import Tokenizer
from ..types import FileResult, Segment, TranscriptionInfo
from .options import TranscribeOptions
from .sources import Window, WindowSource

if TYPE_CHECKING:  # the runner uses the model's encode(), model, tokenizer and device; no import at run time
    from .whisper import WhisperModel


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


@dataclass
class StreamState:
    """The decoding context of one stream of a job's source."""

    all_tokens: List[int] = field(default_factory=list)  # the text tokens so far (the initial prompt first)
    prompt_reset_since: int = 0  # the prompt is all_tokens[prompt_reset_since:]
    last_speech_end: float = 0.0  # seconds: where the last word ended (word timestamps)
    windows: int = 0  # windows decoded


class Job:
    """One input's progress: where its windows come from, its options, the prompt state of each
    of its streams and the segments made so far."""

    def __init__(self, index: int, source: WindowSource, options: TranscribeOptions, label=None):
        self.index, self.source, self.options = index, source, options
        self.label = source if label is None else label  # what results name: the input as given
        self.done = False
        self.error: Optional[Exception] = None
        self.pending: List[Segment] = []  # made, not yet handed out
        self.collected: List[Segment] = []  # handed out (batch mode keeps them for the result)
        self.segments_made = 0
        self.tokenizer: Optional[Tokenizer] = None
        self.info: Optional[TranscriptionInfo] = None
        self.initial_tokens: List[int] = []  # the initial prompt, tokenized: every stream starts with it
        self.streams: Dict[int, StreamState] = {}
        self.held: List[Window] = []  # taken from the source, not decoded yet (the next rounds' share)
        self.parked: Dict[int, List[Segment]] = {}  # stream -> segments waiting for earlier streams
        self.next_stream = 0  # the first stream whose segments have not all been handed out
        self.first_encoded: Optional[Tuple[Window, TokenSet]] = None  # that window's encoding, reused once
        self.position = 0.0  # seconds of the timeline consumed so far (progress)

    def stream(self, index: int) -> StreamState:
        if index not in self.streams:
            self.streams[index] = StreamState(all_tokens=list(self.initial_tokens))
        return self.streams[index]


class Runner:
    """Runs jobs round by round, at most `batch_size` windows per encoder/decoder batch and at
    most `batch_size` jobs at a time; `submit` queues more, also while `run_all` runs."""

    def __init__(self, owner: "WhisperModel", batch_size: int, jobs: Iterable[Job] = ()):
        if batch_size < 1:
            raise OptionsError("batch size must be >= 1")
        self.owner = owner
        self.queue: Deque[Job] = deque(jobs)
        self.batch_size = batch_size
        self._decoders: Dict[tuple, Decoder] = {}
        self._turn = 0  # which active job takes the first window of the next round
        self._streams: Dict[tuple, DecodingStream] = {}  # decoder key -> the windows decoding in it (stream rounds)
        self._in_flight: Dict[int, int] = {}  # id(job) -> its windows in the streams

    @property
    def rows_in_flight(self) -> int:
        """Rows under way in stream rounds (see `stream_round`): one per window, `best_of` for a
        window at a fallback temperature."""
        return sum(len(stream) for stream in self._streams.values())

    def submit(self, job: Job) -> None:
        """Queue a job: it starts at the next round with a free slot."""
        self.queue.append(job)

    def cancel(self, job: Job) -> None:
        """Stop a job before its end (a server's client went away): it leaves the queue, takes no
        more windows, its source is closed and its error is a JobCancelled. A finished job is left
        as it is."""
        if job in self.queue:
            self.queue.remove(job)
        if not job.done:
            job.held, job.first_encoded = [], None
            self._fail(job, JobCancelled(f"{job.label}: cancelled"))

    def start(self, job: Job) -> None:
        """Open the job's source, detect the language if needed (on its first window, whose
        encoding is then reused) and make its info; an unreadable input becomes the job's error."""
        o = self.owner
        try:
            duration = job.source.open()
            opts = job.options
            tokenizer = o.tokenizer.with_language(opts.language, opts.task)
            language, lang_prob, all_probs = opts.language or "en", 1.0, None
            timings = {}
            if opts.language is None and tokenizer.multilingual:
                job.held = job.source.ready()
                window = job.held[0]
                t0 = self._clock()
                audio = o.encode(window.features[None], [window.frames], config_for(opts.eas, window.frames))
                t1 = self._clock()
                job.first_encoded = (window, audio)
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
                job.initial_tokens = tokenizer.encode(" " + opts.initial_prompt.strip())
        except AudioError as e:
            self._fail(job, e)

    def run_all(self, progress: Optional[Callable[[float], None]] = None) -> Iterator[FileResult]:
        """Run until the queue is empty and every job is done, yielding each job's result as it
        finishes. `progress` receives the seconds of audio advanced since its last call."""
        active: List[Job] = []
        reported: Dict[int, float] = {}  # job index -> seconds already reported to `progress`

        def report(job, upto):
            if progress and upto > reported.get(job.index, 0.0):
                progress(upto - reported.get(job.index, 0.0))
                reported[job.index] = upto

        while self.queue or active:
            while self.queue and len(active) < self.batch_size:
                job = self.queue.popleft()
                self.start(job)
                if job.error:
                    yield FileResult(job.index, job.label, [], None, str(job.error))
                    continue
                active.append(job)
            if not active:
                continue
            self.round(active)
            for job in list(active):
                job.collected.extend(job.pending)
                job.pending = []
                report(job, job.info.duration if job.done else job.position)
                if job.done:
                    active.remove(job)
                    yield FileResult(job.index, job.label, job.collected, job.info,
                                     str(job.error) if job.error else None)

    # -- one round: the ready windows of every active job ----------------------------------------

    @torch.inference_mode()
    def round(self, jobs: List[Job], per_job: Optional[int] = None,
              on_batch: Optional[Callable[[List[Job]], None]] = None) -> None:
        """One round: the ready windows of `jobs` (a fair share of `batch_size`, at most `per_job`
        from any one job), encoded and decoded in batches of one options/EAS configuration and
        similar length. `on_batch` is called with the jobs of each batch as soon as it is done, and
        then the batches run shortest audio first, so that a caller can hand out what a short window
        made without waiting for the round's long windows (a server's short requests). Without it
        they run in the order the windows were taken, so each job's windows (and its JSON's
        per-window lists) stay in the audio's order."""
        self._run_batches(self._take(jobs, per_job), on_batch)

    def _run_batches(self, batches: Dict[tuple, List[Tuple[Job, Window]]],
                     on_batch: Optional[Callable[[List[Job]], None]]) -> None:
        """Encode and decode a round's windows (`_take`) in batches of `batch_size`, handing each
        batch's jobs to `on_batch` (then shortest audio first; see `round`)."""
        runs = []
        for (options, eas), batch in batches.items():
            # A decoder batch takes up to batch_size windows of one configuration whatever their
            # lengths (shorter cross-attention keys are masked, which costs little); the encoder
            # splits it by similar length (_encode). More rows per decoder step is most of what
            # batching gains: a step's cost is mostly reading the weights, whatever the rows.
            order = sorted(range(len(batch)), key=lambda i: batch[i][1].frames) if len(batch) > self.batch_size \
                else list(range(len(batch)))
            for i in range(0, len(order), self.batch_size):
                runs.append(([batch[j] for j in sorted(order[i : i + self.batch_size])], eas))
        if on_batch is not None:  # shortest audio first: decoding time grows with the speech in a window
            runs.sort(key=lambda r: max(w.frames for _, w in r[0]))
        for run, eas in runs:
            self._run(run, eas)
            if on_batch is not None:
                on_batch(_jobs_of(job for job, _ in run))

    def stream_round(self, jobs: List[Job], per_job: Optional[int] = None,
                     on_batch: Optional[Callable[[List[Job]], None]] = None, steps: int = 4) -> None:
        """A round for a server: windows of `jobs` (at most `per_job` in flight per job, and
        `batch_size` in all) start decoding greedily in a stream (`DecodingStream`) that keeps
        the windows already under way, then every stream takes `steps` decoder steps. A window
        whose decoding fails the thresholds rejoins the stream at its next fallback temperature
        (its `best_of` samples drawn as `round` draws them); one that passes, or has no
        temperature left, is finished at once (the result `round` would keep) and its job handed
        to `on_batch`. Windows that do not decode greedily first (beam search, a first
        temperature above 0) run as in `round`.

        So a request that arrives while others decode joins them at the next round instead of
        waiting for the longest of them to end, and the decoder's steps keep as many rows as
        there are windows in flight: sixteen rows cost a step under three times what one row does."""
        room = self.batch_size - self.rows_in_flight
        batches = self._take(jobs, per_job, room) if room > 0 else {}
        classic = {}
        for (options, eas), batch in batches.items():
            if options.temperature[0] > 0 or options.beam_size > 1:
                classic[(options, eas)] = batch
                continue
            audio, encode_cost = self._encode(batch, eas)
            joining: Dict[tuple, List[int]] = {}
            initial = {}
            for i, (job, window) in enumerate(batch):
                decoder = self._decoder(_decoding_options(options, 0.0), job.tokenizer)
                initial[i] = self._initial_tokens(job, window, decoder)
                joining.setdefault(self._decoder_key(decoder), []).append(i)
                _spend(job, "encode", encode_cost[i])
                self._in_flight[id(job)] = self._in_flight.get(id(job), 0) + 1
            for key, rows in joining.items():
                if key not in self._streams:
                    self._streams[key] = self._decoders[key].stream()
                index = torch.tensor(rows, device=audio.x.device)
                tags = [_Row(batch[i][0], batch[i][1], audio.select(index[j : j + 1]), eas, initial[i])
                        for j, i in enumerate(rows)]
                self._streams[key].join(audio.select(index), [initial[i] for i in rows], tags)
        self._run_batches(classic, on_batch)
        for _ in range(steps):
            if not self.rows_in_flight:
                break
            for key, stream in list(self._streams.items()):
                if not len(stream):
                    del self._streams[key]
                    continue
                t0, rows = self._clock(), len(stream)
                ended = stream.step()
                share = (self._clock() - t0) / rows
                for row in stream.tags + [row for row, _ in ended]:
                    _spend(row.job, "decode", share)
                finished = []
                for row, result in ended:
                    if not row.job.done and self._retry(row, result, stream):
                        continue
                    left = self._in_flight.pop(id(row.job), 1) - 1  # gone if the job failed meanwhile
                    if left:
                        self._in_flight[id(row.job)] = left
                    if not row.job.done:
                        self._finish_window(row.job, row.window, _settled(row.tried, row.job.options), row.audio, 0,
                                            _steps(row.tried), row.eas)
                    finished.append(row.job)
                if finished and on_batch is not None:
                    on_batch(_jobs_of(finished))

    def _retry(self, row: "_Row", result: DecodingResult, stream: DecodingStream) -> bool:
        """Record a window's attempt; if it fails the thresholds and a temperature is left, the
        window rejoins `stream` at that temperature (True)."""
        opts = row.job.options
        row.tried.append(result)
        if not _needs_fallback(result, opts) or len(row.tried) >= len(opts.temperature):
            return False
        t = opts.temperature[len(row.tried)]
        decoder = self._decoder(_decoding_options(opts, t), row.job.tokenizer)
        stream.join(row.audio, [row.initial], [row], decoder=decoder, seeds=[window_seed(opts.seed, row.window, t)])
        return True

    def _take(self, jobs: List[Job], per_job: Optional[int] = None,
              room: Optional[int] = None) -> Dict[tuple, List[Tuple[Job, Window]]]:
        """The round's windows (`_fair_share`), by options and EAS configuration (a policy picks
        one per window); digital silence is skipped here, and jobs whose sources are done end."""
        for job in jobs:
            if job.done:
                continue
            try:
                job.held += job.source.ready()
            except AudioError as e:
                self._fail(job, e)
                continue
            if not job.held and job.source.done and not self._in_flight.get(id(job)):
                self._finish(job)
        items = self._fair_share([job for job in jobs if not job.done], per_job, room)
        for job, window in [(j, w) for j, w in items if w.inaudible]:  # digital silence: nothing to decode
            self._advance(job, window, window.frames)
        items = [(j, w) for j, w in items if not w.inaudible and not j.done]
        batches: Dict[tuple, List[Tuple[Job, Window]]] = {}
        for job, window in items:
            key = (job.options, config_for(job.options.eas, window.frames))
            batches.setdefault(key, []).append((job, window))
        return batches

    def _fair_share(self, jobs: List[Job], per_job: Optional[int] = None,
                    room: Optional[int] = None) -> List[Tuple[Job, Window]]:
        """Up to `room` held windows, one from each job in turn (at most `per_job` from one job,
        counting its windows in flight); a job's windows go in the order its source gave them.
        Without `room` (a whole round's `batch_size`) the first turn rotates from round to
        round; with it (a stream round's free rows) the jobs' own order decides: the caller
        lists them oldest first, so no job waits behind newer ones for a free row."""
        items: List[Tuple[Job, Window]] = []
        if not jobs:
            return items
        order = jobs
        if room is None:
            room = self.batch_size
            order = jobs[self._turn % len(jobs):] + jobs[: self._turn % len(jobs)]
            self._turn += 1
        taken = {id(job): self._in_flight.get(id(job), 0) for job in order}
        cap = per_job if per_job is not None else self.batch_size

        def can_take(job):
            return bool(job.held) and taken[id(job)] < cap

        while len(items) < room and any(can_take(job) for job in order):
            for job in order:
                if can_take(job) and len(items) < room:
                    items.append((job, job.held.pop(0)))
                    taken[id(job)] += 1
        return items

    def _run(self, batch: List[Tuple[Job, Window]], eas: Optional[EASConfig]) -> None:
        audio, encode_cost = self._encode(batch, eas)
        t1 = self._clock()
        results, steps = self._decode_with_fallback(batch, audio)
        t2 = self._clock()
        for i, ((job, window), result) in enumerate(zip(batch, results)):
            _spend(job, "encode", encode_cost[i])
            _spend(job, "decode", (t2 - t1) / len(batch))
            self._finish_window(job, window, result, audio, i, steps[i], eas)

    def _finish_window(self, job: Job, window: Window, result: DecodingResult, audio: TokenSet, row: int,
                       steps: int, eas: Optional[EASConfig]) -> None:
        """A decoded window (row `row` of `audio`, encoded with `eas`): its job's counts, then its
        segments."""
        job.info.decoder_steps += steps
        job.info.windows += 1
        job.info.tokens_kept.append(int((audio.size[row] > 0).sum()) if audio.size is not None
                                    else int(audio.x.shape[1]))
        job.info.eas_windows.append("dense" if eas is None else eas.describe())
        self._consume(job, window, result, audio, row)

    def _clock(self) -> float:
        if self.owner.device.type == "cuda":  # kernels run asynchronously: wait for them
            torch.cuda.synchronize(self.owner.device)
        return time.perf_counter()

    def _encode(self, batch: List[Tuple[Job, Window]], eas: Optional[EASConfig]) -> Tuple[TokenSet, List[float]]:
        """Encode the batch's windows in groups of similar encoder length (similar_length_groups:
        with the padding rule a long window among short ones would multiply the encoder's work),
        reusing a first window already encoded for language detection; returns the rows in the
        batch's order (shorter ones padded with masked tokens) and each row's share of the
        encoding time."""
        cached = [job.first_encoded[1] if job.first_encoded and job.first_encoded[0] is window else None
                  for job, window in batch]
        for job, _ in batch:
            job.first_encoded = None
        rows: List[Optional[TokenSet]] = list(cached)
        cost = [0.0] * len(batch)
        todo = [i for i, c in enumerate(cached) if c is None]
        n_ctx = self.owner.model.dims.n_audio_ctx
        groups = [[todo[j] for j in group]
                  for group in similar_length_groups([batch[i][1].frames for i in todo], eas, n_ctx)]
        if len(groups) == 1 and len(todo) == len(batch):  # the usual case: one encoder batch
            t0 = self._clock()
            audio = self.owner.encode(torch.stack([w.features for _, w in batch]), [w.frames for _, w in batch], eas)
            return audio, [(self._clock() - t0) / len(batch)] * len(batch)
        for group in groups:
            t0 = self._clock()
            fresh = self.owner.encode(torch.stack([batch[i][1].features for i in group]),
                                      [batch[i][1].frames for i in group], eas)
            share = (self._clock() - t0) / len(group)
            for j, i in enumerate(group):
                rows[i] = fresh.select(torch.tensor([j], device=fresh.x.device))
                cost[i] = share
        return TokenSet.concat(rows), cost

    def _decoder(self, options: DecodingOptions, tokenizer: Tokenizer) -> Decoder:
        key = (options, tokenizer.language, tokenizer.task)
        if key not in self._decoders:
            self._decoders[key] = Decoder(self.owner.model, tokenizer, options, self.owner.loaded.begin_suppress_tokens)
        return self._decoders[key]

    @staticmethod
    def _decoder_key(decoder: Decoder) -> tuple:
        return decoder.options, decoder.tokenizer.language, decoder.tokenizer.task

    @staticmethod
    def _initial_tokens(job: Job, window: Window, decoder: Decoder) -> List[int]:
        """The window's initial tokens: its stream's prompt (the text so far, unless reset), the
        start of transcript, and the prefix on the first window of the first stream."""
        opts, state = job.options, job.stream(window.stream)
        prompt = (state.all_tokens[state.prompt_reset_since:]
                  if (opts.condition_on_previous_text or state.prompt_reset_since == 0) else [])
        first = window.stream == 0 and state.windows == 0
        prefix = job.tokenizer.encode(" " + opts.prefix.strip()) if opts.prefix and first else None
        return decoder.initial_tokens(prompt, prefix)

    def _decode_with_fallback(self, batch: List[Tuple[Job, Window]], audio: TokenSet):
        """Decode each window at the first temperature whose result passes the thresholds;
        returns the results and the decoder steps each window took."""
        opts = batch[0][0].options  # a batch shares its options (see round)
        results: List[Optional[DecodingResult]] = [None] * len(batch)
        tried: List[List[DecodingResult]] = [[] for _ in batch]
        todo = list(range(len(batch)))
        for t in opts.temperature:
            if not todo:
                break
            dopts = _decoding_options(opts, t)
            # windows with prompts of different lengths go in separate decoder batches
            groups: Dict[int, List[int]] = {}
            initial: Dict[int, List[int]] = {}
            for i in todo:
                job, window = batch[i]
                initial[i] = self._initial_tokens(job, window, self._decoder(dopts, job.tokenizer))
                groups.setdefault(len(initial[i]), []).append(i)
            still = []
            for rows in groups.values():
                index = torch.tensor(rows, device=audio.x.device)
                decoder = self._decoder(dopts, batch[rows[0]][0].tokenizer)
                seeds = [window_seed(opts.seed, batch[i][1], t) for i in rows]
                outs = decoder.run(audio.select(index), [initial[i] for i in rows], seeds=seeds)
                for i, r in zip(rows, outs):
                    tried[i].append(r)
                    if _needs_fallback(r, opts):
                        still.append(i)
                    else:
                        results[i] = r
            todo = sorted(still)
        for i in todo:  # every temperature failed
            results[i] = _settled(tried[i], opts)
        return results, [_steps(attempts) for attempts in tried]

    def _consume(self, job: Job, window: Window, result: DecodingResult, audio: TokenSet, row: int) -> None:
        """Segments from one window's result, and how many of its frames they consumed: up to the
        last complete segment's end (or the last word's, with word timestamps), or the whole
        window when it ends on a single timestamp, has none, or is silence."""
        opts, tok = job.options, job.tokenizer
        state = job.stream(window.stream)
        seek, segment_size, time_offset = window.start, window.frames, window.offset
        if opts.no_speech_threshold is not None and result.no_speech_prob > opts.no_speech_threshold and not (
                opts.log_prob_threshold is not None and result.avg_logprob > opts.log_prob_threshold):
            self._advance(job, window, segment_size)  # silence: skip the window
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
                consumed = segment_size
            else:
                consumed = (tokens[last - 1] - tok.timestamp_begin) * 2  # 2 mel frames per token
        else:
            duration = segment_size * HOP_LENGTH / SAMPLE_RATE
            stamps = [t for t in tokens if t >= tok.timestamp_begin]
            if stamps and stamps[-1] != tok.timestamp_begin:
                duration = (stamps[-1] - tok.timestamp_begin) * TIME_PRECISION
            pieces.append((time_offset, time_offset + duration, tokens))
            consumed = segment_size
        if consumed <= 0:  # always move forward
            consumed = segment_size

        if window.end is not None:  # a chunk's timestamps stay inside the chunk
            pieces = [(min(start, window.end), min(end, window.end), piece) for start, end, piece in pieces]
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
            state.last_speech_end = add_word_timestamps(
                self.owner.model, tok, audio.select(torch.tensor([row], device=audio.x.device)), segments,
                segment_size, time_offset, opts, state.last_speech_end)
            if not single_ending and segments[-1].words:
                # the next window starts after the last word, not at the last timestamp token
                shift = round((segments[-1].words[-1].end - time_offset) * FRAMES_PER_SECOND)
                if shift > 0:
                    consumed = shift
        job.parked.setdefault(window.stream, []).extend(segments)
        state.all_tokens.extend(t for s in segments for t in s.tokens)
        if not opts.condition_on_previous_text or result.temperature > opts.prompt_reset_on_temperature:
            state.prompt_reset_since = len(state.all_tokens)
        self._advance(job, window, consumed)

    def _advance(self, job: Job, window: Window, consumed: int) -> None:
        job.stream(window.stream).windows += 1
        job.position = max(job.position, window.offset + consumed / FRAMES_PER_SECOND)
        try:
            job.source.advance(window, consumed)
        except AudioError as e:  # reading on to the next window found a broken stream
            self._fail(job, e)
            return
        self._release(job)
        if job.source.done and not job.held:
            self._finish(job)

    def _release(self, job: Job, everything: bool = False) -> None:
        """Hand out parked segments in the audio's order: those of the first unfinished stream
        (in order within it) and of every stream before it (all of them when `everything`)."""
        while True:
            stream = job.next_stream
            for segment in job.parked.pop(stream, []):
                segment.id = job.segments_made
                job.segments_made += 1
                job.pending.append(segment)
            if job.source.stream_done(stream) or (everything and job.parked):
                job.next_stream += 1
                job.streams.pop(stream, None)  # its prompt is no longer needed
                continue
            return

    def _finish(self, job: Job) -> None:
        self._release(job, everything=True)
        job.done = True
        if job.source.duration is not None:
            job.info.duration = job.source.duration
        job.info.warnings = job.source.warnings()
        job.source.close()

    def _fail(self, job: Job, error: Exception) -> None:
        job.error, job.done = error, True
        for stream in self._streams.values():  # its windows under way stop decoding
            stream.drop(lambda row: row.job is job)
        self._in_flight.pop(id(job), None)
        job.source.close()


@dataclass
class _Row:
    """A window decoding in a stream round, and what finishing it needs."""

    job: Job
    window: Window
    audio: TokenSet  # its encoder tokens (one row): fallbacks and word timestamps read them
    eas: Optional[EASConfig]  # how it was encoded, for the job's info
    initial: List[int]  # its initial tokens (every temperature starts from them)
    tried: List[DecodingResult] = field(default_factory=list)  # its attempts so far, one per temperature


def _spend(job: Job, part: str, seconds: float) -> None:
    """Add `seconds` to the compute time `job` spent on `part` (encode, decode)."""
    job.info.timings[part] = job.info.timings.get(part, 0.0) + seconds


def _jobs_of(jobs: Iterable[Job]) -> List[Job]:
    """`jobs` once each, in order (what `on_batch` receives)."""
    return list({id(job): job for job in jobs}.values())


def _decoding_options(opts: TranscribeOptions, t: float) -> DecodingOptions:
    """The decoder's options for one temperature of a window's fallback schedule."""
    return DecodingOptions(
        temperature=t,
        best_of=opts.best_of if t > 0 else None,
        beam_size=opts.beam_size if t == 0 and opts.beam_size > 1 else None,
        patience=opts.patience if t == 0 and opts.beam_size > 1 else None,
        length_penalty=opts.length_penalty, suppress_tokens=opts.suppress_tokens,
        suppress_blank=opts.suppress_blank, without_timestamps=opts.without_timestamps,
        max_initial_timestamp=opts.max_initial_timestamp,
    )


def window_seed(seed: int, window: Window, temperature: float) -> int:
    """The seed of one window's draws at one temperature: from the run's seed, the window's stream
    and its first frame, so that a window draws the same whatever shares its batch or ran before."""
    key = f"{seed}:{window.stream}:{window.start}:{temperature}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def _settled(tried: List[DecodingResult], opts: TranscribeOptions) -> DecodingResult:
    """The result a window keeps from its attempts (one per temperature, in order): the last
    one if it passes the thresholds (trying stops there); when every temperature failed, the
    most likely attempt that did not loop."""
    if not _needs_fallback(tried[-1], opts):
        return tried[-1]
    ok = [r for r in tried if opts.compression_ratio_threshold is None
          or r.compression_ratio <= opts.compression_ratio_threshold]
    return max(ok or tried, key=lambda r: r.avg_logprob)


def _steps(tried: List[DecodingResult]) -> int:
    """Decoder steps a window's attempts took (each token, and its end)."""
    return sum(len(r.tokens) + 1 for r in tried)


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
