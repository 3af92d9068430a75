"""`whisper-eas batch` in-process: what INPUT lists, outputs equal to `transcribe`'s, bad files as
rows and a non-zero exit, resuming after an interruption with every file transcribed once, the
results table, URIs in and out. The Ray runs are in test_batch_ray.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from whisper_eas.apps.batch.inputs import Item, list_inputs
from whisper_eas.apps.batch.storage import LocalStorage
from whisper_eas.errors import ManifestError
from whisper_eas.io.outputs import FORMATS

# seconds of jfk; each transcribes greedily in one pass (cut at 2.6-5.6 s, the second one falls back to
# sampling, which on 2 busy cores took 30 s instead of 3 each time a test transcribed it)
CLIPS = {"first": (0.0, 2.6), "second": (2.4, 5.8), "third": (5.6, 8.2), "fourth": (8.2, 11.0)}


@pytest.fixture(scope="module")
def clips(tmp_path_factory, jfk) -> Path:
    """jfk cut in four short clips (a quick corpus of real speech) in one folder."""
    folder = tmp_path_factory.mktemp("clips")
    audio, rate = sf.read(jfk)
    for name, (start, end) in CLIPS.items():
        sf.write(folder / f"{name}.flac", audio[int(start * rate):int(end * rate)], rate)
    return folder


def write_manifest(path: Path, entries) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def table(out: Path):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def markers(out: Path):
    done = out / ".whisper-eas" / "done"
    return {p.relative_to(done).as_posix()[:-5]: p.read_bytes() for p in done.rglob("*.json")}


# -- what INPUT lists -----------------------------------------------------------------------

def test_a_folder_lists_its_audio_files_by_path_without_extension(tmp_path):
    for name in ("b/one.wav", "a.flac", "b/two.mp3", "notes.txt", ".hidden/x.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_inputs(str(tmp_path)) == [Item("a", str(tmp_path / "a.flac")), Item("b/one", str(tmp_path / "b/one.wav")),
                                          Item("b/two", str(tmp_path / "b/two.mp3"))]


def test_a_glob_lists_what_it_matches_relative_to_its_fixed_part(tmp_path):
    for name in ("x/a.wav", "x/b.wav", "x/deep/c.wav", "x/d.flac"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [i.id for i in list_inputs(str(tmp_path / "x" / "*.wav"))] == ["a", "b"]
    assert [i.id for i in list_inputs(str(tmp_path / "x" / "**" / "*.wav"))] == ["a", "b", "deep/c"]


def test_a_manifest_resolves_audio_against_its_folder_and_needs_no_text(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", [{"audio": "audio/a.flac"}, {"audio": "/abs/b.wav", "id": "bee"},
                                              {"audio": "audio/a.flac", "text": "again"}])
    assert list_inputs(str(m)) == [Item("audio/a", str(tmp_path / "audio/a.flac")), Item("bee", "/abs/b.wav"),
                                   Item("audio/a-2", str(tmp_path / "audio/a.flac"))]


def test_a_folder_with_equal_stems_numbers_them(tmp_path):
    for name in ("talk.wav", "talk.flac"):
        (tmp_path / name).write_bytes(b"x")
    assert [i.id for i in list_inputs(str(tmp_path))] == ["talk", "talk-2"]


@pytest.mark.parametrize("entry,needle", [
    ({"audio": "a.wav", "start": 1.0}, "whole files"),
    ({"audio": "a.wav", "id": "../escape"}, "cannot name an output file"),
    ({"audio": "a.wav", "id": "/etc/passwd"}, "cannot name an output file"),
    ({"audio": "a.wav", "id": ".whisper-eas/run"}, "cannot name an output file"),
    ({"text": "no audio"}, "missing 'audio'"),
])
def test_a_manifest_the_batch_cannot_use_is_one_error_naming_the_line(tmp_path, entry, needle):
    m = write_manifest(tmp_path / "m.jsonl", [{"audio": "ok.wav"}, entry])
    with pytest.raises(ManifestError, match=needle) as e:
        list_inputs(str(m))
    assert f"{m}:2" in str(e.value)


def test_nothing_to_transcribe_is_an_error(tmp_path):
    with pytest.raises(ManifestError, match="no audio files"):
        list_inputs(str(tmp_path))
    with pytest.raises(ManifestError, match="no such file"):
        list_inputs(str(tmp_path / "missing"))


def test_a_file_uri_lists_as_its_path_does(clips, tmp_path):
    pytest.importorskip("pyarrow")
    uri = f"file://{clips}"
    assert [(i.id, i.audio) for i in list_inputs(uri)] == [(i.id, f"file://{i.audio}") for i in list_inputs(str(clips))]
    assert [i.id for i in list_inputs(f"{uri}/f*.flac")] == ["first", "fourth"]
    m = write_manifest(clips.parent / "uri-manifest.jsonl", [{"audio": f"{clips.name}/first.flac"}])
    assert list_inputs(f"file://{m}") == [Item(f"{clips.name}/first", f"file://{clips}/first.flac")]


# -- a run ----------------------------------------------------------------------------------

def test_batch_writes_what_transcribe_writes(cli, clips, tmp_path):
    code, _, err = cli("transcribe", *sorted(clips.glob("*.flac")), "-o", tmp_path / "transcribe", "-f", "all")
    assert code == 0, err
    code, _, err = cli("batch", clips, "-o", tmp_path / "batch", "-q")
    assert code == 0, err
    for name in CLIPS:
        for fmt in FORMATS:
            ours, theirs = (tmp_path / d / f"{name}.{fmt}" for d in ("batch", "transcribe"))
            if fmt == "json":  # the same but for the time each stage took
                ours, theirs = ({k: v for k, v in json.loads(p.read_text()).items() if k != "timings"} for p in (ours, theirs))
                assert ours == theirs
            else:
                assert ours.read_text() == theirs.read_text(), (name, fmt)
    rows = table(tmp_path / "batch")
    assert [r["id"] for r in rows] == sorted(CLIPS)
    assert all(r["error"] is None and r["language"] == "en" and r["segments"] for r in rows)
    assert {r["id"]: r["text"].strip() for r in rows}["second"].lower().startswith("ask not")


def test_bad_files_are_rows_with_their_error_listed_at_the_end_exit_1(cli, clips, tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"\x00not audio" * 400)
    (tmp_path / "empty.mp3").write_bytes(b"")
    m = write_manifest(tmp_path / "m.jsonl", [{"audio": str(clips / "first.flac")}, {"audio": "junk.wav"},
                                              {"audio": "missing.flac"}, {"audio": "empty.mp3"},
                                              {"audio": str(clips / "second.flac")}])
    out = tmp_path / "out"
    code, _, err = cli("batch", m, "-o", out, "-f", "txt")
    assert code == 1
    assert "Traceback" not in err
    assert "5 files: 2 transcribed, 0 done before, 3 failed" in err
    assert "3 of 5 files failed (2 transcribed):" in err
    for name in ("junk.wav", "missing.flac", "empty.mp3"):
        assert str(tmp_path / name) in err
    rows = {r["id"]: r for r in table(out)}
    assert [k for k, r in rows.items() if r["error"]] == ["junk", "missing", "empty"]
    assert set(markers(out)) == {"first", "second"}
    assert sorted(p.name for p in out.glob("*.txt")) == ["first.txt", "second.txt"]

    code, _, err = cli("batch", m, "-o", out, "-f", "txt")  # a rerun tries the failed ones again, only
    assert code == 1
    assert "5 files: 0 transcribed, 2 done before, 3 failed" in err
    assert len(table(out)) == 5


def test_an_interrupted_run_resumes_and_transcribes_each_file_once(cli, tiny, clips, tmp_path, monkeypatch):
    transcribed = Counter()
    real = type(tiny).transcribe_batch

    def interrupted_after(n):
        def transcribe_batch(audios, *args, **kwargs):
            for result in real(tiny, audios, *args, **kwargs):
                transcribed[Path(result.source).name] += 1
                yield result
                if n is not None and sum(transcribed.values()) == n:
                    raise KeyboardInterrupt  # Ctrl-C, between two files
        return transcribe_batch

    out = tmp_path / "out"
    monkeypatch.setattr(tiny, "transcribe_batch", interrupted_after(2))
    code, _, err = cli("batch", clips, "-o", out, "-f", "txt", "--files-per-call", "1")
    assert code == 130 and "interrupted" in err
    assert len(markers(out)) == 2
    monkeypatch.setattr(tiny, "transcribe_batch", interrupted_after(None))
    code, _, err = cli("batch", clips, "-o", out, "-f", "txt")
    assert code == 0, err
    assert "4 files: 2 transcribed, 2 done before, 0 failed" in err
    assert transcribed == {f"{name}.flac": 1 for name in CLIPS}
    assert [r["id"] for r in table(out)] == sorted(CLIPS)


def test_a_rerun_with_other_settings_is_refused(cli, clips, tmp_path):
    out = tmp_path / "out"
    assert cli("batch", clips / "first.flac", "-o", out, "-f", "txt")[0] == 0
    code, _, err = cli("batch", clips / "first.flac", "-o", out, "-f", "srt")
    assert code == 2
    assert "other settings (formats: ['txt'] -> ['srt'])" in err
    code, _, err = cli("batch", clips / "first.flac", "-o", out, "-f", "txt", "--beam-size", "2")
    assert code == 2 and "beam_size: 1 -> 2" in err


def test_the_results_table_can_be_parquet(cli, clips, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    code, _, err = cli("batch", clips / "first.flac", "-o", tmp_path, "-f", "none", "--results", "parquet")
    assert code == 0, err
    rows = pq.read_table(tmp_path / "results.parquet").to_pylist()
    assert [r["id"] for r in rows] == ["first"]
    assert json.loads(rows[0]["segments"])[0]["text"].strip().lower().startswith("and so my fellow americans")
    assert not list(tmp_path.glob("first.*"))  # -f none: the table only


def test_uris_in_and_out(cli, clips, tmp_path):
    pytest.importorskip("pyarrow")
    m = write_manifest(clips.parent / "uri-run.jsonl", [{"audio": f"{clips.name}/second.flac", "id": "two"}])
    code, _, err = cli("batch", f"file://{m}", "-o", f"file://{tmp_path}/out", "-f", "txt")
    assert code == 0, err
    assert (tmp_path / "out" / "two.txt").read_text().lower().startswith("ask not")
    assert [r["path"] for r in table(tmp_path / "out")] == [f"file://{clips}/second.flac"]
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".part")]


def test_batch_needs_an_output_dir(cli, clips):
    code, _, err = cli("batch", clips)
    assert code == 2 and "--output-dir" in err


@pytest.mark.parametrize("value", ["0", "3-2", "x"])
def test_bad_actor_counts_are_usage_errors(cli, clips, tmp_path, value):
    code, _, err = cli("batch", clips, "-o", tmp_path, "--ray", "--actors", value)
    assert code == 2 and "--actors" in err


def test_an_atomic_write_that_fails_leaves_no_file(tmp_path):
    store = LocalStorage(str(tmp_path))
    with pytest.raises(RuntimeError):
        with store.open_atomic("a/b.txt") as out:
            out.write(b"half")
            raise RuntimeError("killed")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []
    store.write_text("a/b.txt", "whole")
    assert store.files("a") == {"b.txt"} and store.read_text("a/b.txt") == "whole"


def test_a_dataset_without_path_or_bytes_is_refused_with_its_columns():
    pa = pytest.importorskip("pyarrow")
    from whisper_eas.apps.batch.raydata import inputs_of

    with pytest.raises(ValueError, match="'path' column .* it has audio, name"):
        inputs_of(pa.table({"audio": ["a"], "name": ["b"]}))
    inputs = inputs_of(pa.table({"bytes": [b"RIFF"], "path": ["s3://b/x/call.wav"]}))
    assert [(i.id, i.source, i.path) for i in inputs] == [("call", b"RIFF", "s3://b/x/call.wav")]


# -- reproducible sampling: what makes a worker's transcript equal to transcribe's -----------

def test_a_file_that_falls_back_to_sampling_transcribes_the_same_in_every_run_and_company(tiny, clips):
    import torch

    from whisper_eas import TranscribeOptions

    options = TranscribeOptions(temperature=(0.5, 1.0))  # no greedy attempt: every window samples
    alone = [next(tiny.transcribe_batch([clips / "second.flac"], options, batch_size=1)).segments for _ in range(2)]
    before = torch.get_rng_state()
    with_others = {Path(r.source).name: r.segments
                   for r in tiny.transcribe_batch([clips / "first.flac", clips / "second.flac"], options, batch_size=1)}
    assert torch.equal(torch.get_rng_state(), before)  # the caller's generator is left alone
    assert alone[0] == alone[1] == with_others["second.flac"]
