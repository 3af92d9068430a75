"""Dense parity with faster-whisper on real speech: same CTranslate2 weights, greedy, no timestamps.

Acceptance: identical transcripts on >= 95% of utterances and WERs within 0.3 points. The full
287-utterance run and base are in benchmarks/parity.py (docs/parity.md)."""

from __future__ import annotations

import pytest

from whisper_eas import EVAL_OPTIONS
from whisper_eas.evaluation.manifest import load_dataset
from whisper_eas.evaluation.metrics import corpus_wer, word_errors

pytestmark = pytest.mark.slow


def test_dense_tiny_en_matches_faster_whisper_on_dev_short(tiny, corpus):
    faster_whisper = pytest.importorskip("faster_whisper")
    from whisper_eas.evaluation.bench import ct2_directory

    utterances = load_dataset(str(corpus / "dev-short.jsonl"))
    fw = faster_whisper.WhisperModel(ct2_directory("tiny.en"), device="cpu", compute_type="float32", cpu_threads=2)
    ours, theirs = [], []
    for u in utterances:
        segments, _ = tiny.transcribe(u.audio, EVAL_OPTIONS, padding="zeros")
        ours.append("".join(s.text for s in segments).strip())
        segments, _ = fw.transcribe(u.audio, beam_size=1, temperature=0.0, without_timestamps=True,
                                    condition_on_previous_text=False)
        theirs.append("".join(s.text for s in segments).strip())
    identical = sum(a == b for a, b in zip(ours, theirs)) / len(utterances)
    wer = lambda texts: corpus_wer([word_errors(u.text, t) for u, t in zip(utterances, texts)])  # noqa: E731
    assert identical >= 0.95, [(a, b) for a, b in zip(ours, theirs) if a != b][:5]
    assert abs(wer(ours) - wer(theirs)) <= 0.003
