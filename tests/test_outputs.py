"""Transcript writers (txt, srt, vtt, tsv, json) in openai-whisper's layouts, on hand-made segments."""

from __future__ import annotations

import io
import json

import pytest

from whisper_eas.network.eas import parse_eas
from whisper_eas.io.outputs import FORMATS, WRITERS, format_timestamp, result_dict
from whisper_eas import TranscribeOptions
from whisper_eas.types import Segment, TranscriptionInfo, Word


def _segment(i, start, end, text, words=None):
    return Segment(id=i, seek=0, start=start, end=end, text=text, tokens=[50363, 100 + i, 50413],
                   avg_logprob=-0.25, compression_ratio=1.3, no_speech_prob=0.01, words=words, temperature=0.0)


SEGMENTS = [
    _segment(0, 0.0, 2.5, " And so my fellow Americans,"),
    _segment(1, 2.5, 61.0, " ask not --> what\tyour country can do for you,"),
    _segment(2, 3599.9995, 3661.5, " ask what you can do for your country. "),
]


def _write(fmt, segments=SEGMENTS, **kwargs) -> str:
    buf = io.StringIO()
    WRITERS[fmt](segments, buf, **kwargs)
    return buf.getvalue()


def _info(eas=None):
    return TranscriptionInfo(language="en", language_probability=0.987654, duration=3661.23456,
                             all_language_probs=None, options=TranscribeOptions(eas=eas), windows=3,
                             tokens_kept=[1500, 750, 750], timings={"encode": 0.123456, "decode": 1.0})


@pytest.mark.parametrize("seconds,default,srt", [
    (0, "00:00.000", "00:00:00,000"),
    (0.0004, "00:00.000", "00:00:00,000"),
    (0.0016, "00:00.002", "00:00:00,002"),
    (1.5, "00:01.500", "00:00:01,500"),
    (59.9999, "01:00.000", "00:01:00,000"),  # rounds up across the minute
    (61.25, "01:01.250", "00:01:01,250"),
    (3599.999, "59:59.999", "00:59:59,999"),
    (3599.9995, "01:00:00.000", "01:00:00,000"),  # rounds up across the hour
    (3600, "01:00:00.000", "01:00:00,000"),
    (3661.5, "01:01:01.500", "01:01:01,500"),
    (36000 + 1.001, "10:00:01.001", "10:00:01,001"),
    (-0.5, "00:00.000", "00:00:00,000"),  # never negative
])
def test_format_timestamp(seconds, default, srt):
    assert format_timestamp(seconds) == default
    assert format_timestamp(seconds, always_include_hours=True, decimal_marker=",") == srt


def test_formats_and_writers_agree():
    assert set(FORMATS) == set(WRITERS) == {"txt", "srt", "vtt", "tsv", "json"}


def test_txt():
    assert _write("txt") == (
        "And so my fellow Americans,\n"
        "ask not --> what\tyour country can do for you,\n"
        "ask what you can do for your country.\n"
    )


def test_srt():
    assert _write("srt") == (
        "1\n00:00:00,000 --> 00:00:02,500\nAnd so my fellow Americans,\n\n"
        "2\n00:00:02,500 --> 00:01:01,000\nask not -> what\tyour country can do for you,\n\n"
        "3\n01:00:00,000 --> 01:01:01,500\nask what you can do for your country.\n\n"
    )


def test_vtt():
    text = _write("vtt")
    assert text.startswith("WEBVTT\n\n")
    assert text == (
        "WEBVTT\n\n"
        "00:00.000 --> 00:02.500\nAnd so my fellow Americans,\n\n"
        "00:02.500 --> 01:01.000\nask not -> what\tyour country can do for you,\n\n"
        "01:00:00.000 --> 01:01:01.500\nask what you can do for your country.\n\n"
    )


def test_tsv():
    lines = _write("tsv").splitlines()
    assert lines[0] == "start\tend\ttext"
    assert lines[1] == "0\t2500\tAnd so my fellow Americans,"
    assert lines[2] == "2500\t61000\task not --> what your country can do for you,"  # a tab in the text would split the column
    assert lines[3] == "3600000\t3661500\task what you can do for your country."
    assert all(len(line.split("\t")) == 3 for line in lines)


def test_empty_transcript():
    assert _write("txt", []) == ""
    assert _write("srt", []) == ""
    assert _write("vtt", []) == "WEBVTT\n\n"
    assert _write("tsv", []) == "start\tend\ttext\n"
    assert json.loads(_write("json", [])) == {"text": "", "segments": []}


def test_json_segments_only():
    data = json.loads(_write("json"))
    assert data["text"] == "".join(s.text for s in SEGMENTS)
    assert len(data["segments"]) == 3
    first = data["segments"][0]
    for key in ("id", "seek", "start", "end", "text", "tokens", "avg_logprob", "compression_ratio",
                "no_speech_prob", "temperature"):
        assert key in first, key
    assert first["start"] == 0.0 and first["end"] == 2.5
    assert first["text"] == " And so my fellow Americans,"
    assert first["tokens"] == [50363, 100, 50413]
    assert first["avg_logprob"] == -0.25 and first["no_speech_prob"] == 0.01 and first["compression_ratio"] == 1.3
    assert data["segments"][1]["text"] == " ask not --> what\tyour country can do for you,"  # json keeps text as is
    assert "language" not in data and "settings" not in data


def test_json_with_info_and_settings():
    settings = {"model": "tiny.en", "beam_size": 1, "temperature": (0.0, 0.2)}
    data = json.loads(_write("json", info=_info(), settings=settings))
    assert data["language"] == "en"
    assert data["language_probability"] == 0.9877
    assert data["duration"] == 3661.235
    assert data["windows"] == 3
    assert data["eas"] is None
    assert data["timings"] == {"encode": 0.1235, "decode": 1.0}
    assert data["settings"] == {"model": "tiny.en", "beam_size": 1, "temperature": [0.0, 0.2]}


def test_json_eas_block():
    eas = parse_eas("1:0.5")
    data = json.loads(_write("json", info=_info(eas)))
    assert data["eas"] == {"config": eas.describe(), "tokens_kept": [1500, 750, 750], "window_configs": []}
    assert isinstance(data["eas"]["config"], str) and data["eas"]["config"]


def test_json_words_and_unicode():
    words = [Word(0.0, 0.4, " Grüße", 0.91), Word(0.4, 0.9, " 日本", 0.5)]
    seg = _segment(0, 0.0, 0.9, " Grüße 日本", words=words)
    text = _write("json", [seg])
    assert "Grüße 日本" in text  # written as UTF-8, not \\u escapes
    data = json.loads(text)
    assert data["segments"][0]["words"] == [
        {"start": 0.0, "end": 0.4, "word": " Grüße", "probability": 0.91},
        {"start": 0.4, "end": 0.9, "word": " 日本", "probability": 0.5},
    ]


def test_result_dict_accepts_a_generator():
    out = result_dict(s for s in SEGMENTS)
    assert len(out["segments"]) == 3 and out["text"].startswith(" And so")


def test_writers_ignore_extra_arguments():
    for fmt in ("txt", "srt", "vtt", "tsv"):
        assert _write(fmt, info=_info(), settings={"x": 1}) == _write(fmt)


# -- names in an output folder ----------------------------------------------------------------

@pytest.mark.parametrize("inputs, names", [
    (["talk.wav", "other/notes.mp3"], ["talk", "notes"]),
    (["a/talk.wav", "b/talk.wav", "c.wav"], ["a/talk", "b/talk", "c"]),
    (["x/a/talk.wav", "y/a/talk.flac"], ["x/a/talk", "y/a/talk"]),
    (["a/Talk.wav", "b/talk.wav"], ["a/Talk", "b/talk"]),  # one on a case-insensitive file system
    (["d/talk.wav", "d/talk.mp3"], ["talk.wav", "talk.mp3"]),  # talk.wav.txt, talk.mp3.txt
    (["-", "in/x.wav"], ["stdin", "x"]),
])
def test_output_names_keep_what_tells_inputs_apart(tmp_path, monkeypatch, inputs, names):
    from whisper_eas.io.outputs import output_names

    monkeypatch.chdir(tmp_path)
    assert output_names(inputs) == names


@pytest.mark.parametrize("inputs, message", [(["a.wav", "./a.wav"], "given twice"), (["-", "-"], "given twice"),
                                             (["Talk.wav", "talk.wav"], "differ only in case")])
def test_output_names_refuse_what_cannot_be_told_apart(tmp_path, monkeypatch, inputs, message):
    from whisper_eas.errors import OptionsError
    from whisper_eas.io.outputs import output_names

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionsError, match=message):
        output_names(inputs)


def test_write_file_replaces_the_file_only_once_it_is_complete(tmp_path, monkeypatch):
    from whisper_eas.io import outputs

    target = tmp_path / "talk.txt"
    target.write_text("yesterday\n")

    def failing(segments, fh, **kwargs):
        fh.write("half a")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(outputs.WRITERS, "txt", failing)
    with pytest.raises(OSError):
        outputs.write_file(target, "txt", SEGMENTS)
    assert target.read_text() == "yesterday\n" and [p.name for p in tmp_path.iterdir()] == ["talk.txt"]
    monkeypatch.setitem(outputs.WRITERS, "txt", outputs.write_txt)
    outputs.write_file(target, "txt", SEGMENTS)
    assert target.read_text() == _write("txt")
