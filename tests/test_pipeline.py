"""The pipeline's own rules, checked directly: temperature fallback, seeking from window to
window, batching across files, and the window-source seam that a VAD chunker or a server plugs
into. The decoder is scripted where a rule is about what the decoder says (the encoder is the
real tiny.en); batching compares real transcripts."""

from __future__ import annotations

import dataclasses
from typing import List

import numpy as np
import pytest

from whisper_eas import EVAL_OPTIONS, FileWindows, TranscribeOptions, Window, WindowSource
from whisper_eas.errors import JobCancelled, OptionsError
from whisper_eas.io.audio import N_FRAMES, SAMPLE_RATE
from whisper_eas.network.decoding import Decoder, DecodingResult
from whisper_eas.pipeline import runner as runner_module
from whisper_eas.pipeline.runner import Job, Runner


class Recording(WindowSource):
    """A source that passes another one's windows through and records what the runner hands back."""

    def __init__(self, inner: WindowSource):
        self.inner = inner
        self.advanced: List[tuple] = []  # (window start, consumed frames)

    def open(self):
        return self.inner.open()

    def ready(self):
        return self.inner.ready()

    def advance(self, window, consumed_frames):
        self.advanced.append((window.start, consumed_frames))
        self.inner.advance(window, consumed_frames)

    @property
    def done(self):
        return self.inner.done

    @property
    def duration(self):
        return self.inner.duration

    def close(self):
        self.inner.close()


def scripted_decoder(monkeypatch, script):
    """Replace the runner's decoder: `script(temperature, call)` -> a DecodingResult for each
    window of a call; returns the list of temperatures decoded, one entry per window."""
    calls: List[float] = []

    class Scripted(Decoder):
        def run(self, audio, initial, seeds=None):
            out = []
            for _ in initial:
                out.append(script(self.options.temperature, len(calls)))
                calls.append(self.options.temperature)
            return out

    monkeypatch.setattr(runner_module, "Decoder", Scripted)
    return calls


def result(tiny, temperature, *, text=" Hello there.", stamps=(0.0, 2.0), avg_logprob=-0.2,
           compression_ratio=1.2, no_speech_prob=0.01, double_end=False) -> DecodingResult:
    """A decoder result: `text` between timestamp tokens at `stamps` (seconds); `double_end`
    repeats the last timestamp, as a window whose last segment is complete ends."""
    tok = tiny.tokenizer
    ts = [tok.timestamp_begin + round(s / 0.02) for s in stamps]
    tokens = [ts[0], *tok.encode(text), ts[1]] + ([ts[1]] if double_end else [])
    return DecodingResult(tokens=tokens, text=text, avg_logprob=avg_logprob, no_speech_prob=no_speech_prob,
                          temperature=temperature, compression_ratio=compression_ratio)


FALLBACK = dict(temperature=(0.0, 0.2, 0.4), compression_ratio_threshold=2.4, log_prob_threshold=-1.0)


# -- temperature fallback -------------------------------------------------------------------

def test_a_window_that_fails_the_log_prob_threshold_is_decoded_again_at_the_next_temperature(tiny, jfk, monkeypatch):
    calls = scripted_decoder(monkeypatch, lambda t, i: result(tiny, t, avg_logprob=-2.0 if t == 0.0 else -0.3))
    segments, info = tiny.transcribe(jfk, **FALLBACK)
    segments = list(segments)
    assert calls == [0.0, 0.2]  # retried once, then accepted
    assert [s.temperature for s in segments] == [0.2]
    assert info.decoder_steps == 2 * (len(segments[0].tokens) + 1)  # both attempts count


def test_a_looping_result_is_decoded_again_too(tiny, jfk, monkeypatch):
    calls = scripted_decoder(monkeypatch, lambda t, i: result(tiny, t, compression_ratio=3.0 if t < 0.4 else 1.1))
    segments = list(tiny.transcribe(jfk, **FALLBACK)[0])
    assert calls == [0.0, 0.2, 0.4] and segments[0].temperature == 0.4


def test_when_every_temperature_fails_the_most_likely_attempt_that_did_not_loop_is_kept(tiny, jfk, monkeypatch):
    attempts = {0.0: dict(avg_logprob=-0.1, compression_ratio=3.0),  # the most likely, but it loops
                0.2: dict(avg_logprob=-1.6), 0.4: dict(avg_logprob=-1.3, text=" Kept.")}
    calls = scripted_decoder(monkeypatch, lambda t, i: result(tiny, t, **attempts[t]))
    segments = list(tiny.transcribe(jfk, **FALLBACK)[0])
    assert calls == [0.0, 0.2, 0.4]
    assert [(s.text, s.temperature) for s in segments] == [(" Kept.", 0.4)]


def test_silence_is_not_retried_and_gives_no_segments(tiny, jfk, monkeypatch):
    calls = scripted_decoder(monkeypatch, lambda t, i: result(tiny, t, avg_logprob=-1.5, no_speech_prob=0.9))
    segments, info = tiny.transcribe(jfk, **FALLBACK)
    assert list(segments) == [] and calls == [0.0] and info.windows == 1


# -- seeking --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_audio(jfk_audio):
    """About 70 s: three windows' worth of speech and pauses."""
    pause = np.zeros(4 * SAMPLE_RATE, np.float32)
    return np.concatenate([jfk_audio, pause] * 5)[: 70 * SAMPLE_RATE]


def _transcribe_recorded(tiny, audio, **options):
    source = Recording(FileWindows(audio, n_mels=tiny.model.dims.n_mels))
    segments, info = tiny.transcribe(source, **options)
    return list(segments), info, source


def test_the_next_window_starts_where_the_last_complete_segment_ends(tiny, long_audio, monkeypatch):
    # each window: two segments, the second complete (it ends on two timestamps) at 10 s
    def script(t, i):
        r = result(tiny, t, text=" One.", stamps=(0.0, 5.0))
        second = result(tiny, t, text=" Two.", stamps=(5.2, 10.0), double_end=True)
        r.tokens = r.tokens + second.tokens
        return r

    scripted_decoder(monkeypatch, script)
    segments, info, source = _transcribe_recorded(tiny, long_audio)
    starts = [start for start, _ in source.advanced]
    assert starts[:3] == [0, 1000, 2000]  # 10 s = 1000 frames consumed per window
    assert all(consumed == 1000 for _, consumed in source.advanced[:-1])
    assert [(s.seek, s.start, s.end) for s in segments[:4]] == [(0, 0.0, 5.0), (0, 5.2, 10.0),
                                                               (1000, 10.0, 15.0), (1000, 15.2, 20.0)]
    assert info.windows == len(source.advanced) and source.done


def test_a_window_that_ends_on_a_single_timestamp_advances_a_whole_window(tiny, long_audio, monkeypatch):
    scripted_decoder(monkeypatch, lambda t, i: result(tiny, t, stamps=(0.0, 8.0)))  # [ts, text, ts]: open end
    segments, info, source = _transcribe_recorded(tiny, long_audio)
    assert source.advanced == [(0, N_FRAMES), (N_FRAMES, N_FRAMES), (2 * N_FRAMES, 1000)]  # 70 s = 30 + 30 + 10
    assert [s.seek for s in segments] == [0, N_FRAMES, 2 * N_FRAMES]
    assert [s.start for s in segments] == [0.0, 30.0, 60.0]


def test_silent_windows_are_skipped_whole(tiny, long_audio, monkeypatch):
    silent = dict(avg_logprob=-1.5, no_speech_prob=0.95)
    scripted_decoder(monkeypatch, lambda t, i: result(tiny, t, **(silent if i == 1 else {})))
    segments, info, source = _transcribe_recorded(tiny, long_audio, temperature=(0.0,))
    assert [consumed for _, consumed in source.advanced] == [N_FRAMES, N_FRAMES, 1000]
    assert [s.seek for s in segments] == [0, 2 * N_FRAMES]  # nothing from the silent second window


def test_without_previous_text_every_window_starts_without_a_prompt(tiny, long_audio, monkeypatch):
    prompts = []

    class Watching(Decoder):
        def run(self, audio, initial, seeds=None):
            prompts.extend(initial)
            return [result(tiny, self.options.temperature, stamps=(0.0, 8.0)) for _ in initial]

    monkeypatch.setattr(runner_module, "Decoder", Watching)
    # sequential windows (openai-whisper's way): a chunked file's chunks start without a prompt
    list(tiny.transcribe(long_audio, temperature=(0.0,), chunking="off")[0])
    sot_prev = tiny.tokenizer.sot_prev
    assert [p[0] == sot_prev for p in prompts] == [False, True, True]  # the earlier text, from window 2 on
    prompts.clear()
    list(tiny.transcribe(long_audio, temperature=(0.0,), condition_on_previous_text=False, chunking="off")[0])
    assert [p[0] == sot_prev for p in prompts] == [False, False, False]


# -- batching -------------------------------------------------------------------------------

def test_files_batched_together_get_the_transcripts_they_get_alone(tiny, jfk, jfk_audio, tmp_path):
    import soundfile as sf

    short = tmp_path / "short.flac"
    sf.write(short, jfk_audio[: 4 * SAMPLE_RATE], SAMPLE_RATE)
    longer = tmp_path / "longer.flac"
    sf.write(longer, np.concatenate([jfk_audio, np.zeros(3 * SAMPLE_RATE, np.float32), jfk_audio]), SAMPLE_RATE)
    files = [jfk, short, longer, short]
    alone = {str(f): [(s.start, s.end, s.text) for s in tiny.transcribe(f, EVAL_OPTIONS.replace(
        without_timestamps=False))[0]] for f in files}
    results = list(tiny.transcribe_batch(files, EVAL_OPTIONS.replace(without_timestamps=False), batch_size=3))
    assert sorted(r.index for r in results) == [0, 1, 2, 3] and not any(r.error for r in results)
    for r in results:
        assert [(s.start, s.end, s.text) for s in r.segments] == alone[str(r.source)], r.source


def test_an_unreadable_file_in_a_batch_is_its_own_error(tiny, jfk, tmp_path):
    results = {r.index: r for r in tiny.transcribe_batch([jfk, tmp_path / "missing.wav"], batch_size=2)}
    assert results[0].error is None and results[0].segments
    assert results[1].segments == [] and "missing.wav: no such file" in results[1].error


# -- reproducible sampling ------------------------------------------------------------------

# every window decoded by sampling at temperature 1 (the fallback's last resort), one sample each
SAMPLED = EVAL_OPTIONS.replace(temperature=(1.0,), best_of=1, without_timestamps=False)


def _drawn(segments) -> list:
    return [(s.start, s.end, s.text) for s in segments]


def test_sampling_gives_the_same_output_on_every_call(tiny, jfk_audio):
    start = jfk_audio[: 4 * SAMPLE_RATE]
    runs = [_drawn(tiny.transcribe(start, SAMPLED)[0]) for _ in range(3)]
    assert runs[0] and runs[0] == runs[1] == runs[2]


def test_another_seed_draws_otherwise(tiny, jfk_audio):
    start = jfk_audio[: 4 * SAMPLE_RATE]
    runs = {tuple(_drawn(tiny.transcribe(start, SAMPLED, seed=seed)[0])) for seed in (0, 1, 2)}
    assert len(runs) > 1


def test_a_window_draws_the_same_in_a_batch_as_alone(tiny, jfk, jfk_audio, tmp_path):
    import soundfile as sf

    short = tmp_path / "short.flac"
    sf.write(short, jfk_audio[: 4 * SAMPLE_RATE], SAMPLE_RATE)
    alone = {str(f): _drawn(tiny.transcribe(f, SAMPLED)[0]) for f in (jfk, short)}
    for r in tiny.transcribe_batch([jfk, short], SAMPLED, batch_size=2):
        assert _drawn(r.segments) == alone[str(r.source)], r.source


def test_the_seed_is_an_integer():
    with pytest.raises(OptionsError, match="seed"):
        TranscribeOptions(seed="fixed")


# -- the seam -------------------------------------------------------------------------------

class TwoStreams(WindowSource):
    """Two independent streams (e.g. two speakers' channels), each one window of the same clip."""

    def __init__(self, features, frames):
        self.features, self.frames = features, frames
        self.waiting, self.finished = set(), set()

    def open(self):
        return self.frames / 100

    def ready(self):
        out = [Window(self.features, self.frames, 0, 0.0, stream=s) for s in (0, 1)
               if s not in self.waiting and s not in self.finished]
        self.waiting.update(w.stream for w in out)
        return out

    def advance(self, window, consumed_frames):
        self.waiting.discard(window.stream)
        self.finished.add(window.stream)

    @property
    def done(self):
        return self.finished == {0, 1}


def test_a_source_with_two_streams_gets_each_transcribed_with_its_own_prompt(tiny, jfk):
    from whisper_eas.io.audio import AudioWindows

    features, frames = AudioWindows(jfk).window(0)
    source = TwoStreams(features, frames)
    options = tiny.resolve_options(initial_prompt="Kennedy.")
    job = Job(0, source, options)

    class Kept(dict):  # the runner drops a finished stream's state: keep it to look at
        def pop(self, key, default=None):
            return self.get(key, default)

    job.streams = Kept()
    results = list(Runner(tiny, batch_size=4, jobs=[job]).run_all())
    texts = [s.text for s in results[0].segments]
    assert len(texts) >= 2 and texts[: len(texts) // 2] == texts[len(texts) // 2:]  # the same clip, twice
    assert set(job.streams) == {0, 1}
    prompt = tiny.tokenizer.encode(" Kennedy.")
    assert all(s.all_tokens[: len(prompt)] == prompt for s in job.streams.values())


def test_a_job_submitted_while_the_runner_runs_is_transcribed_too(tiny, jfk):
    options = tiny.resolve_options(EVAL_OPTIONS)
    runner = Runner(tiny, batch_size=2, jobs=[Job(0, FileWindows(jfk), options, label="first")])
    late = Job(1, FileWindows(jfk), options, label="late")
    submitted = []

    def progress(seconds):  # called between rounds, while run_all is running
        if not submitted:
            runner.submit(late)
            submitted.append(True)

    results = list(runner.run_all(progress))
    assert [r.source for r in results] == ["first", "late"]
    assert results[0].segments[0].text == results[1].segments[0].text



def test_a_cancelled_job_takes_no_more_windows_and_its_source_is_closed(tiny, jfk_audio):
    class Closing(Recording):
        closed = False

        def close(self):
            self.closed = True
            super().close()

    long_audio = np.concatenate([jfk_audio] * 4)  # 44 s: two windows at least
    source = Closing(FileWindows(long_audio))
    job = Job(0, source, tiny.resolve_options(EVAL_OPTIONS))
    queued = Job(1, FileWindows(jfk_audio), tiny.resolve_options(EVAL_OPTIONS))
    runner = Runner(tiny, batch_size=2, jobs=[queued])
    runner.start(job)
    runner.round([job])
    assert len(source.advanced) == 1 and not job.done
    runner.cancel(job)
    runner.cancel(queued)
    assert job.done and isinstance(job.error, JobCancelled) and source.closed
    runner.round([job])
    assert len(source.advanced) == 1  # nothing more was decoded
    assert list(runner.run_all()) == []  # the queued job left the queue

# -- options --------------------------------------------------------------------------------

def test_options_and_keyword_overrides_combine(tiny, jfk):
    options = tiny.resolve_options(EVAL_OPTIONS, beam_size=2)
    assert options.beam_size == 2 and options.temperature == (0.0,) and options.without_timestamps
    assert options.eas is None  # tiny is dense: "model" resolved to the model's own setting


@pytest.mark.parametrize("kwargs, message", [
    (dict(beam_sise=5), "unknown transcribe option 'beam_sise'"),
    (dict(temperature=-1), "temperature"),
    (dict(language="klingon"), "unknown language 'klingon'"),
    (dict(language="fr"), "English-only"),
    (dict(eas="7:0.5"), "out of range"),
    (dict(padding="noise"), "padding"),
    (dict(patience=0), "patience"),
])
def test_a_bad_option_is_one_clear_options_error_before_any_audio_is_read(tiny, kwargs, message):
    with pytest.raises(OptionsError, match=message):
        tiny.transcribe("/no/such/file.wav", **kwargs)


def test_options_are_frozen_and_validated_once_at_construction():
    options = TranscribeOptions(temperature=0.3, eas="1:0.5")
    assert options.temperature == (0.3,) and options.eas.describe() == "1:0.5"
    with pytest.raises(OptionsError, match="beam size"):
        options.replace(beam_size=0)
    with pytest.raises(Exception):
        options.beam_size = 3  # frozen


def test_a_job_takes_at_most_per_job_windows_of_a_shared_round_and_batches_are_handed_out_shortest_first(
        tiny, jfk_audio):
    from whisper_eas.pipeline.sources import ChunkedWindows

    long_audio = np.concatenate([jfk_audio, np.zeros(8000, np.float32)] * 8)  # 92 s: four chunks side by side
    options = tiny.resolve_options(EVAL_OPTIONS, eas="-1:0 pad=32 | 0:0.3 score=adjacent pad=32")  # two batches
    long = Job(0, ChunkedWindows(long_audio, max_streams=4), options, label="long")
    short = Job(1, FileWindows(jfk_audio[: 16000 * 3]), options, label="short")
    runner = Runner(tiny, batch_size=8)
    for job in (long, short):
        runner.start(job)
    handed = []
    runner.round([long, short], per_job=1, on_batch=lambda jobs: handed.append([j.label for j in jobs]))
    assert long.info.windows == 1 and short.info.windows == 1
    assert handed[0] == ["short"] and short.done  # the 3-s clip's batch ran, and was handed out, first
    runner.round([long], on_batch=lambda jobs: None)
    assert long.info.windows == 1 + 3  # alone, it fills the free slots with its other chunks


# -- stream rounds (the server's) ---------------------------------------------------------------

def test_jobs_that_join_stream_rounds_mid_flight_get_what_transcribe_gives_them(tiny, jfk_audio):
    """Stream rounds with a 33-s file (cut into chunks as `transcribe` cuts it),
    a clip that joins while the file's first window decodes, and one with word timestamps that
    joins later: each gets the segments `transcribe` gives it alone, in order, and the runner
    ends with nothing in flight."""
    options = tiny.resolve_options(eas="-1:0 pad=32")
    inputs = {"long": np.concatenate([jfk_audio] * 3), "short": jfk_audio[: 4 * SAMPLE_RATE],
              "words": jfk_audio[2 * SAMPLE_RATE :]}
    opts = {"long": options, "short": options, "words": options.replace(word_timestamps=True)}
    alone, windows = {}, {}
    for name, audio in inputs.items():
        segments, info = tiny.transcribe(audio, opts[name], batch_size=4)
        alone[name] = list(segments)
        windows[name] = info.windows
    runner = Runner(tiny, batch_size=4)
    jobs = {name: Job(i, tiny.window_source(audio, None, opts[name], 4), opts[name], label=name)
            for i, (name, audio) in enumerate(inputs.items())}
    for job in jobs.values():
        runner.start(job)
    handed, joined, rounds = [], ["long"], 0
    while not all(job.done for job in jobs.values()):
        if rounds == 1:
            joined.append("short")
            assert runner.rows_in_flight == 1  # the long file's first window is under way
        if rounds == 3:
            joined.append("words")
        runner.stream_round([jobs[n] for n in joined], per_job=1, steps=2,
                            on_batch=lambda done: handed.extend(j.label for j in done))
        rounds += 1
        assert rounds < 500
    assert runner.rows_in_flight == 0 and set(handed) == set(inputs)
    for name, job in jobs.items():
        assert job.error is None, name
        got = job.pending
        assert [s.text for s in got] == [s.text for s in alone[name]], name
        assert [(s.start, s.end) for s in got] == [(s.start, s.end) for s in alone[name]], name
    assert [job.info.windows for job in jobs.values()] == list(windows.values()) and windows["long"] >= 2
    words = [w.word for s in jobs["words"].pending for w in s.words]
    assert words == [w.word for s in alone["words"] for w in s.words]


def test_a_cancelled_job_leaves_the_stream_and_the_others_go_on(tiny, jfk_audio):
    options = tiny.resolve_options(EVAL_OPTIONS)
    runner = Runner(tiny, batch_size=4)
    keep, gone = Job(0, FileWindows(jfk_audio), options), Job(1, FileWindows(jfk_audio), options)
    for job in (keep, gone):
        runner.start(job)
    runner.stream_round([keep, gone], per_job=1, steps=1)
    assert runner.rows_in_flight == 2
    runner.cancel(gone)
    assert runner.rows_in_flight == 1 and isinstance(gone.error, JobCancelled)
    while not keep.done:
        runner.stream_round([keep], per_job=1, steps=4)
    alone = list(tiny.transcribe(jfk_audio, options)[0])
    assert [s.text for s in keep.pending] == [s.text for s in alone]


def test_a_window_that_fails_the_thresholds_in_a_stream_falls_back_in_the_stream_as_in_a_round(tiny, jfk_audio,
                                                                                               monkeypatch):
    """The greedy result fails; the window rejoins the stream at the next temperature, draws its
    samples as `round` draws them (the same seeds), and keeps what `transcribe` keeps."""
    from whisper_eas.network import decoding

    real_best = Decoder._best

    def best(self, candidates):  # the greedy attempt scores too low, the sampled ones pass
        r = real_best(self, candidates)
        return r if r.temperature > 0 else dataclasses.replace(r, avg_logprob=-5.0)

    monkeypatch.setattr(decoding.Decoder, "_best", best)
    options = tiny.resolve_options(temperature=(0.0, 0.2), best_of=2, log_prob_threshold=-1.0)
    runner = Runner(tiny, batch_size=2)
    job = Job(0, FileWindows(jfk_audio), options)
    runner.start(job)
    rejoined = []
    while not job.done:
        runner.stream_round([job], per_job=1, steps=8)
        rejoined.append(runner.rows_in_flight)
    assert 2 in rejoined  # the window's best_of=2 samples decoded in the stream
    assert job.error is None and job.pending
    assert all(s.temperature == 0.2 for s in job.pending)
    segments, info = tiny.transcribe(jfk_audio, options)
    alone = list(segments)
    assert [(s.text, s.tokens, s.avg_logprob) for s in job.pending] == \
        [(s.text, s.tokens, pytest.approx(s.avg_logprob, abs=1e-4)) for s in alone]
    assert job.info.decoder_steps == info.decoder_steps
