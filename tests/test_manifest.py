"""Tests for whisper_eas.evaluation.manifest: every accepted format and every error message."""

import json
import os
import sys
import types
from pathlib import Path

import pytest

from whisper_eas.errors import ManifestError
from whisper_eas.evaluation.manifest import Utterance, load_dataset, mostly_long


def touch(path: Path, data: bytes = b"RIFF fake audio") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_jsonl(path: Path, records) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


# --- JSONL ------------------------------------------------------------------------------------


def test_jsonl_basic(tmp_path):
    touch(tmp_path / "audio" / "a.wav")
    abs_b = touch(tmp_path / "elsewhere" / "b.flac")
    m = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"audio": "audio/a.wav", "text": "Hello world", "speaker": "x", "duration": 1.0},
            "",
            {"audio": str(abs_b), "text": " second one ", "id": "B1", "start": 0.5, "end": 2},
        ],
    )
    utts = load_dataset(str(m))
    assert utts == [
        Utterance("a", str(tmp_path / "audio" / "a.wav"), "Hello world", None, None),
        Utterance("B1", str(abs_b), "second one", 0.5, 2.0),
    ]
    assert all(os.path.isabs(u.audio) for u in utts)


def test_jsonl_relative_manifest_path(tmp_path, monkeypatch):
    touch(tmp_path / "d" / "a.wav")
    write_jsonl(tmp_path / "d" / "m.jsonl", [{"audio": "a.wav", "text": "x"}])
    monkeypatch.chdir(tmp_path)
    (u,) = load_dataset("d/m.jsonl")
    assert u.audio == str(tmp_path / "d" / "a.wav")


def test_jsonl_default_ids_made_unique(tmp_path):
    touch(tmp_path / "talk.wav")
    touch(tmp_path / "sub" / "talk.mp3")
    m = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"audio": "talk.wav", "text": "one", "start": 0, "end": 5},
            {"audio": "talk.wav", "text": "two", "start": 5, "end": 9},
            {"audio": "sub/talk.mp3", "text": "three"},
            {"audio": "talk.wav", "text": "four", "id": "talk-2"},  # explicit id wins
        ],
    )
    assert [u.id for u in load_dataset(str(m))] == ["talk", "talk-3", "talk-4", "talk-2"]


def test_limit_takes_first_n(tmp_path):
    for i in range(5):
        touch(tmp_path / f"{i}.wav")
    m = write_jsonl(tmp_path / "m.jsonl", [{"audio": f"{i}.wav", "text": str(i)} for i in range(5)])
    assert [u.id for u in load_dataset(str(m), limit=2)] == ["0", "1"]
    assert load_dataset(str(m), limit=0) == []
    assert len(load_dataset(str(m), limit=99)) == 5
    with pytest.raises(ValueError):
        load_dataset(str(m), limit=-1)


def test_limit_only_requires_kept_audio(tmp_path):
    touch(tmp_path / "a.wav")
    m = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav", "text": "x"}, {"audio": "gone.wav", "text": "y"}])
    assert len(load_dataset(str(m), limit=1)) == 1
    with pytest.raises(ManifestError, match="missing"):
        load_dataset(str(m))


def test_ndjson_and_json_extensions(tmp_path):
    touch(tmp_path / "a.wav")
    for name in ("m.ndjson", "m.json", "M.JSONL"):
        m = write_jsonl(tmp_path / name, [{"audio": "a.wav", "text": "x"}])
        assert len(load_dataset(str(m))) == 1


def test_utf8_bom_and_unicode(tmp_path):
    touch(tmp_path / "a.wav")
    m = tmp_path / "m.jsonl"
    m.write_text('{"audio": "a.wav", "text": "Ça va très bien"}\n', encoding="utf-8-sig")
    assert load_dataset(str(m))[0].text == "Ça va très bien"


# --- TSV ----------------------------------------------------------------------------------------


def test_tsv_basic(tmp_path):
    touch(tmp_path / "a.wav")
    touch(tmp_path / "b.ogg")
    m = tmp_path / "m.tsv"
    m.write_text(
        "id\taudio\ttext\tstart\tend\tnotes\n"
        'x1\ta.wav\tHe said "hi", then left\t\t\tfoo\n'
        "\n"
        "\tb.ogg\tsecond\t1.5\t3\t\n",
        encoding="utf-8",
    )
    assert load_dataset(str(m)) == [
        Utterance("x1", str(tmp_path / "a.wav"), 'He said "hi", then left', None, None),
        Utterance("b", str(tmp_path / "b.ogg"), "second", 1.5, 3.0),
    ]


def test_tsv_minimal_columns_any_order(tmp_path):
    touch(tmp_path / "a.wav")
    m = tmp_path / "m.tsv"
    m.write_text("text\taudio\nhello\ta.wav\n", encoding="utf-8")
    assert load_dataset(str(m)) == [Utterance("a", str(tmp_path / "a.wav"), "hello")]


def test_tsv_errors(tmp_path):
    touch(tmp_path / "a.wav")
    m = tmp_path / "m.tsv"
    m.write_text("audio\ttranscript\na.wav\thello\n")
    with pytest.raises(ManifestError, match=r"m\.tsv:1: header has no 'text' column") as e:
        load_dataset(str(m))
    one_line(e)
    m.write_text("audio\ttext\na.wav\thello\textra\n")
    with pytest.raises(ManifestError, match=r"m\.tsv:2: 3 tab-separated fields, header has 2"):
        load_dataset(str(m))
    m.write_text("audio\ttext\n")
    with pytest.raises(ManifestError, match="empty manifest"):
        load_dataset(str(m))
    m.write_text("")
    with pytest.raises(ManifestError, match="empty manifest"):
        load_dataset(str(m))
    m.write_text("audio\ttext\tstart\tend\na.wav\thi\tsoon\t\n")
    with pytest.raises(ManifestError, match=r"m\.tsv:2: 'start' is not a number"):
        load_dataset(str(m))
    m.write_text("audio\ttext\n\thello\n")
    with pytest.raises(ManifestError, match=r"m\.tsv:2: missing 'audio'"):
        load_dataset(str(m))


# --- folder ------------------------------------------------------------------------------------


def test_folder(tmp_path):
    touch(tmp_path / "b.flac")
    (tmp_path / "b.txt").write_text("second\n", encoding="utf-8")
    touch(tmp_path / "a.WAV")
    (tmp_path / "a.txt").write_text("  first line\nand more  \n", encoding="utf-8")
    touch(tmp_path / "spk1" / "c.opus")
    (tmp_path / "spk1" / "c.txt").write_text("third")
    (tmp_path / "README.txt").write_text("not a transcript of anything")
    (tmp_path / "notes.json").write_text("{}")
    touch(tmp_path / ".hidden" / "x.wav")  # hidden folders are ignored
    utts = load_dataset(str(tmp_path))
    assert utts == [
        Utterance("a", str(tmp_path / "a.WAV"), "first line and more"),
        Utterance("b", str(tmp_path / "b.flac"), "second"),
        Utterance("spk1/c", str(tmp_path / "spk1" / "c.opus"), "third"),
    ]
    assert [u.id for u in load_dataset(str(tmp_path), limit=1)] == ["a"]


def test_folder_relative_path(tmp_path, monkeypatch):
    touch(tmp_path / "data" / "a.mp3")
    (tmp_path / "data" / "a.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    (u,) = load_dataset("data")
    assert u.audio == str(tmp_path / "data" / "a.mp3")


def test_folder_audio_without_transcript_is_an_error(tmp_path):
    for name in ("a", "b", "c", "d", "e"):
        touch(tmp_path / f"{name}.wav")
    (tmp_path / "a.txt").write_text("only one")
    with pytest.raises(ManifestError) as e:
        load_dataset(str(tmp_path))
    message = one_line(e)
    assert "4 audio files without a same-stem .txt transcript" in message
    assert "b.wav, c.wav, d.wav, ... (1 more)" in message


def test_folder_without_audio(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ManifestError, match="no audio files"):
        load_dataset(str(tmp_path))


def test_folder_same_stem_twice_is_duplicate(tmp_path):
    touch(tmp_path / "a.wav")
    touch(tmp_path / "a.flac")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ManifestError, match="duplicate id 'a'"):
        load_dataset(str(tmp_path))


# --- errors --------------------------------------------------------------------------------------


def test_missing_spec(tmp_path):
    with pytest.raises(ManifestError, match="no such file or directory") as e:
        load_dataset(str(tmp_path / "nope.jsonl"))
    assert "nope.jsonl" in one_line(e)


def test_unsupported_extension(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("audio,text\n")
    with pytest.raises(ManifestError, match=r"m\.csv: unsupported manifest extension '\.csv'") as e:
        load_dataset(str(m))
    one_line(e)


def test_empty_jsonl(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text("\n  \n")
    with pytest.raises(ManifestError, match=r"m\.jsonl: empty manifest"):
        load_dataset(str(m))


def test_invalid_json_names_line(tmp_path):
    touch(tmp_path / "a.wav")
    m = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav", "text": "x"}, '{"audio": "a.wav", "text": }'])
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: invalid JSON") as e:
        load_dataset(str(m))
    one_line(e)
    write_jsonl(m, ['["a.wav", "x"]'])
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: expected a JSON object, got list"):
        load_dataset(str(m))


@pytest.mark.parametrize("key", ["audio", "text"])
def test_missing_key_names_line(tmp_path, key):
    touch(tmp_path / "a.wav")
    record = {"audio": "a.wav", "text": "x"}
    del record[key]
    records = [{"audio": "a.wav", "text": "ok"}, {"audio": "a.wav", "text": "ok", "id": "z"}, record]
    m = write_jsonl(tmp_path / "m.jsonl", records)
    with pytest.raises(ManifestError, match=rf"m\.jsonl:3: missing '{key}'"):
        load_dataset(str(m))


def test_bad_field_types(tmp_path):
    m = tmp_path / "m.jsonl"
    for record, pattern in [
        ({"audio": 3, "text": "x"}, "'audio' must be a non-empty string"),
        ({"audio": "", "text": "x"}, "'audio' must be a non-empty string"),
        ({"audio": "a.wav", "text": 5}, "'text' must be a string"),
        ({"audio": "a.wav", "text": "x", "id": ""}, "'id' must be a non-empty string"),
        ({"audio": "a.wav", "text": "x", "start": "soon"}, "'start' is not a number"),
        ({"audio": "a.wav", "text": "x", "end": True}, "'end' is not a number"),
        ({"audio": "a.wav", "text": "x", "start": -1}, "'start' must be a finite number"),
    ]:
        write_jsonl(m, [record])
        with pytest.raises(ManifestError, match=rf"m\.jsonl:1: {pattern}"):
            load_dataset(str(m))


def test_missing_audio_lists_three_and_count(tmp_path):
    touch(tmp_path / "ok.wav")
    records = [{"audio": "ok.wav", "text": "x"}] + [{"audio": f"gone{i}.wav", "text": "x"} for i in range(5)]
    m = write_jsonl(tmp_path / "m.jsonl", records)
    with pytest.raises(ManifestError) as e:
        load_dataset(str(m))
    message = one_line(e)
    assert message.startswith(f"{m}: 5 referenced audio files missing: ")
    assert f"{tmp_path / 'gone0.wav'} (line 2)" in message
    assert "gone2.wav (line 4), ... (2 more)" in message
    assert "gone3" not in message


def test_start_not_before_end(tmp_path):
    touch(tmp_path / "a.wav")
    m = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav", "text": "x", "start": 3.0, "end": 3.0}])
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: start \(3\) must be before end \(3\)"):
        load_dataset(str(m))


def test_duplicate_ids(tmp_path):
    touch(tmp_path / "a.wav")
    m = write_jsonl(
        tmp_path / "m.jsonl",
        [{"audio": "a.wav", "text": "x", "id": "u1"}, {"audio": "a.wav", "text": "y", "id": "u2"},
         {"audio": "a.wav", "text": "z", "id": "u1"}],
    )
    with pytest.raises(ManifestError, match=r"m\.jsonl:3: duplicate id 'u1' \(first on line 1\)") as e:
        load_dataset(str(m))
    one_line(e)


# --- Hugging Face ----------------------------------------------------------------------------------


def test_hf_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ManifestError, match=r"hf:librispeech_asr:clean:test: .*pip install datasets") as e:
        load_dataset("hf:librispeech_asr:clean:test")
    one_line(e)


@pytest.mark.parametrize("spec", ["hf:", "hf:librispeech_asr", "hf:a:b:c:d", "hf:a::test"])
def test_hf_bad_spec(spec):
    with pytest.raises(ManifestError, match="expected hf:<dataset>"):
        load_dataset(spec)


class _FakeSplit(list):
    """Just enough of datasets.Dataset / IterableDataset for the loader."""

    def cast_column(self, column, feature):
        assert column == "audio" and feature.decode is False
        return self

    def take(self, n):
        return _FakeSplit(self[:n])


def _fake_datasets(examples=None, error=None, calls=None):
    module = types.ModuleType("datasets")

    class Audio:
        def __init__(self, decode=True):
            self.decode = decode

    def fake_load_dataset(name, config=None, split=None, streaming=False):
        if calls is not None:
            calls.append((name, config, split, streaming))
        if error is not None:
            raise error
        return _FakeSplit(examples)

    module.Audio = Audio
    module.load_dataset = fake_load_dataset
    return module


def test_hf_writes_audio_bytes_to_cache(tmp_path, monkeypatch):
    local = touch(tmp_path / "local.wav")
    examples = [
        {"id": "1272-128104-0000", "audio": {"bytes": b"fLaC....", "path": "x/1272-128104-0000.flac"}, "text": "HELLO"},
        {"id": "1272-128104-0001", "audio": {"bytes": None, "path": str(local)}, "text": "WORLD"},
        {"audio": {"bytes": b"RIFF....", "path": None}, "text": "THIRD"},
    ]
    calls = []
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(examples, calls=calls))
    utts = load_dataset("hf:openslr/librispeech_asr:clean:test", cache_dir=str(tmp_path / "cache"))
    assert calls == [("openslr/librispeech_asr", "clean", "test", False)]
    out = tmp_path / "cache" / "hf" / "openslr__librispeech_asr" / "clean" / "test"
    assert utts == [
        Utterance("1272-128104-0000", str(out / "1272-128104-0000.flac"), "HELLO"),
        Utterance("1272-128104-0001", str(local), "WORLD"),
        Utterance("test-000002", str(out / "test-000002.wav"), "THIRD"),
    ]
    assert Path(utts[0].audio).read_bytes() == b"fLaC...."

    # a limit streams and takes the first N; the config is optional; other text columns work
    calls.clear()
    monkeypatch.setitem(
        sys.modules, "datasets",
        _fake_datasets([{"audio": {"bytes": b"x", "path": "a.mp3"}, "sentence": "hi"}] * 3, calls=calls),
    )
    monkeypatch.setenv("WHISPER_EAS_CACHE", str(tmp_path / "envcache"))
    utts = load_dataset("hf:common_voice:validation", limit=2)
    assert calls == [("common_voice", None, "validation", True)]
    assert [u.text for u in utts] == ["hi", "hi"]
    out = tmp_path / "envcache" / "hf" / "common_voice" / "default" / "validation"
    assert utts[0].audio == str(out / "validation-000000.mp3")


def test_hf_load_failure_is_one_line(monkeypatch, tmp_path):
    error = ConnectionError("Couldn't reach 'librispeech_asr' on the Hub (LocalEntryNotFoundError)\nmore details")
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(error=error))
    expected = r"hf:librispeech_asr:clean:test: cannot load Hugging Face dataset \(ConnectionError: Couldn't reach"
    with pytest.raises(ManifestError, match=expected) as e:
        load_dataset("hf:librispeech_asr:clean:test", cache_dir=str(tmp_path))
    one_line(e)


def test_hf_without_transcript_column(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets([{"audio": {"bytes": b"x", "path": None}, "label": 3}]))
    with pytest.raises(ManifestError, match="no transcript column"):
        load_dataset("hf:some_ds:train", cache_dir=str(tmp_path))


def test_hf_empty_split(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets([]))
    with pytest.raises(ManifestError, match=r"hf:some_ds:cfg:train: empty dataset split"):
        load_dataset("hf:some_ds:cfg:train", cache_dir=str(tmp_path))


def test_utterances_are_mostly_long_when_their_spans_average_over_one_window(tmp_path):
    """bench's user mode and search's speech role: a span cut with start/end counts as its
    span, a whole file as its length."""
    import numpy as np
    import soundfile as sf

    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(40 * 16000, np.float32), 16000)
    whole = Utterance("a", str(path), "")
    assert mostly_long([whole])
    assert not mostly_long([Utterance("b", str(path), "", start=0.0, end=5.0)])
    assert not mostly_long([Utterance("c", str(path), "", start=15.0)])  # 25 s from 15 s on
    assert mostly_long([whole, Utterance("d", str(path), "", start=2.0, end=26.0)])  # 40 + 24 s over two
