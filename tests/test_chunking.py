"""Long audio cut at silences into chunks that decode together (pipeline/sources.py,
ChunkedWindows; io/vad.py): no word is cut in two, timestamps are on the file's timeline and in
order, batching changes nothing, and memory stays bounded however long the file."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_eas.evaluation.metrics import word_errors
from whisper_eas.io.audio import SAMPLE_RATE
from whisper_eas.io.vad import VadOptions, quietest_cut, speech_probabilities
from whisper_eas.pipeline.sources import ChunkedWindows, FileWindows

from conftest import JFK_TEXT


def _pause(seconds: float, seed: int = 0) -> np.ndarray:
    """Room tone at -60 dBFS, not digital silence."""
    return np.random.default_rng(seed).normal(0, 1e-3, int(seconds * SAMPLE_RATE)).astype(np.float32)


@pytest.fixture(scope="module")
def three_jfk(jfk_audio):
    """34.2 s: jfk, a 0.6-s pause, jfk, a 0.6-s pause, jfk. Longer than one window, so it is cut;
    the third jfk runs from 23.2 s to 34.2 s, so a cut at 30 s would fall inside its words."""
    return np.concatenate([jfk_audio, _pause(0.6), jfk_audio, _pause(0.6, 1), jfk_audio])


# The test audio says the same sentence several times, which compresses well: past
# openai-whisper's compression-ratio threshold, the fallback would resample the window at a higher
# temperature. These tests are about where windows are cut, so that check is off.
NO_FALLBACK = dict(compression_ratio_threshold=None)


def _text(segments) -> str:
    return " ".join(s.text.strip() for s in segments)


def test_silero_scores_speech_high_and_room_tone_low(jfk_audio):
    speech = speech_probabilities(jfk_audio[: 3 * SAMPLE_RATE])  # "And so my fellow Americans"
    quiet = speech_probabilities(_pause(3.0))
    assert len(speech) == 3 * SAMPLE_RATE // 512
    assert speech.max() > 0.9 and quiet.max() < 0.2


def test_the_cut_falls_in_a_pause_between_words(three_jfk, jfk_audio):
    cut = quietest_cut(three_jfk, 24 * SAMPLE_RATE, 30 * SAMPLE_RATE)
    assert 24 * SAMPLE_RATE <= cut < 30 * SAMPLE_RATE
    around = three_jfk[cut - 800 : cut + 800]  # 100 ms around the cut: far quieter than the speech
    assert np.sqrt(np.mean(around ** 2)) < 0.1 * np.sqrt(np.mean(jfk_audio ** 2))


def test_speech_across_a_would_be_chunk_boundary_loses_no_words(tiny, three_jfk):
    reference = " ".join([JFK_TEXT] * 3)
    segments, info = tiny.transcribe(three_jfk, **NO_FALLBACK)
    text = _text(segments)  # the generator runs the decoding
    assert info.windows >= 2  # it was cut
    assert word_errors(reference, text).wer == 0.0
    # the same audio cut (almost) blindly at 30 s, inside "can do for you": a word is lost
    blind, _ = tiny.transcribe(ChunkedWindows(three_jfk, vad=VadOptions(search=0.05)), **NO_FALLBACK)
    assert word_errors(reference, _text(blind)).wer > 0.0


def test_timestamps_are_monotonic_and_on_the_file_timeline(tiny, jfk_audio):
    starts = [0.0]
    parts = [jfk_audio]
    for i in range(5):  # six jfk with pauses of 0.4-2.4 s: 77 s, three chunks or more
        parts.append(_pause(0.4 + 0.4 * i, i))
        starts.append(sum(len(p) for p in parts) / SAMPLE_RATE)
        parts.append(jfk_audio)
    audio = np.concatenate(parts)
    segments, info = tiny.transcribe(audio, word_timestamps=True, **NO_FALLBACK)
    segments = list(segments)
    assert info.windows >= 3
    assert [s.id for s in segments] == list(range(len(segments)))
    for a, b in zip(segments, segments[1:]):
        assert a.start <= a.end <= b.start + 1e-6
    assert 0.0 <= segments[0].start and segments[-1].end <= len(audio) / SAMPLE_RATE + 1e-6
    words = [w for s in segments for w in s.words]
    assert all(a.start <= b.start + 1e-6 for a, b in zip(words, words[1:]))
    # each "Americans" is said about 1.3-2.4 s into its jfk, wherever that jfk sits in the file
    americans = [w.start for w in words if "Americans" in w.word]
    assert len(americans) == 6
    for start, heard in zip(starts, americans):
        assert start + 0.8 < heard < start + 3.0, (start, heard)


def test_a_file_decodes_the_same_in_one_batch_as_chunk_by_chunk(tiny, three_jfk):
    audio = np.concatenate([three_jfk, _pause(1.0), three_jfk])  # 69.4 s: three chunks or more
    batched = list(tiny.transcribe(audio, batch_size=8, **NO_FALLBACK)[0])
    alone = list(tiny.transcribe(audio, batch_size=1, **NO_FALLBACK)[0])
    assert [(s.start, s.end, s.text) for s in batched] == [(s.start, s.end, s.text) for s in alone]


def test_audio_shorter_than_a_window_is_one_chunk_as_in_sequential_decoding(tiny, jfk):
    chunked, info = tiny.transcribe(jfk)
    chunked = list(chunked)
    sequential, _ = tiny.transcribe(jfk, chunking="off")
    assert info.windows == 1
    assert [(s.start, s.end, s.tokens) for s in chunked] == [(s.start, s.end, s.tokens) for s in sequential]


def test_chunking_off_runs_openai_whisper_s_sequential_windows(tiny, three_jfk):
    segments, info = tiny.transcribe(three_jfk, chunking="off", **NO_FALLBACK)
    segments = list(segments)
    assert info.windows == 2
    assert isinstance(tiny.window_source(three_jfk, None, tiny.resolve_options(chunking="off"), 8), FileWindows)
    assert [s.seek for s in segments][-1] > 0 and segments[0].text.strip().startswith("And so my fellow Americans")


def test_a_long_file_holds_at_most_a_few_chunks_in_memory(jfk_audio):
    """Drive the source alone (no model): ten minutes of speech and pauses, every window
    consumed whole; the source never holds more than its open chunks and one read-ahead."""
    rng = np.random.default_rng(3)
    parts = []
    while sum(len(p) for p in parts) < 600 * SAMPLE_RATE:
        parts += [jfk_audio, _pause(rng.uniform(0.2, 1.5), len(parts))]
    audio = np.concatenate(parts)
    source = ChunkedWindows(audio, max_streams=2)
    source.open()
    held, covered, windows = 0, 0.0, 0
    while not source.done:
        ready = source.ready()
        held = max(held, len(source._buf) + sum(c.n_samples for c in source._open.values()))
        assert 1 <= len(ready) <= 2
        for window in ready:
            assert window.frames <= 3000 and window.end - window.offset <= 30.0 + 1e-6
            covered += window.frames / 100
            windows += 1
            source.advance(window, window.frames)
    assert abs(covered - len(audio) / SAMPLE_RATE) < 0.01 * windows + 0.01  # every sample, once
    # 60 s read-ahead block + 30 s look-ahead + two 30-s chunks: 150 s, far below the 600 s file
    assert held <= 150 * SAMPLE_RATE
    assert source.duration == pytest.approx(len(audio) / SAMPLE_RATE)


def test_each_window_runs_the_eas_configuration_that_fits_its_content(tiny, three_jfk):
    policy = "-1:0 pad=32 | 0:0.5 score=adjacent pad=32"
    segments, info = tiny.transcribe(three_jfk, eas=policy, **NO_FALLBACK)
    text = _text(segments)
    # a 28-s chunk full of speech first; what follows (the chunk's tail after the decoder's last
    # complete segment, the 6-s rest of the file) is mostly padding
    assert info.eas_windows[0] == "0:0.5 score=adjacent pad=32"
    assert len(info.eas_windows) >= 2 and set(info.eas_windows[1:]) == {"-1:0 pad=32"}
    assert info.tokens_kept[0] < 0.6 * 1406 and word_errors(" ".join([JFK_TEXT] * 3), text).wer < 0.05
