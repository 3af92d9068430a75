"""`whisper-eas batch --ray` and `transcribe_dataset` on a local Ray: 2 CPUs, a new instance, no
dashboard, started and shut down by a fixture. Each Ray run starts its actors afresh (a model load
each), so the tests are few and each checks what one run shows. Skipped without the [ray] extra.
The simulated two-node cluster is in test_batch_cluster.py."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest
import soundfile as sf

ray = pytest.importorskip("ray")

import whisper_eas.apps.batch.raydata as raydata  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    # address="local": a new Ray of its own, even where a cluster runs on this machine already (which
    # a bare ray.init() would join, or refuse to join with num_cpus given)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning")
    # Ray Data's info lines, which its threads may log after a test's captured stderr is closed
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def pieces(tmp_path_factory, jfk) -> Path:
    """jfk cut in eight pieces of about 1.4 s (files that transcribe quickly)."""
    folder = tmp_path_factory.mktemp("pieces")
    audio, rate = sf.read(jfk)
    step = len(audio) // 8
    for k in range(8):
        sf.write(folder / f"piece{k}.flac", audio[k * step:(k + 1) * step], rate)
    return folder


def summary(err: str):
    """(transcribed, done before, failed) from the run's summary line."""
    m = re.search(r"(\d+) transcribed, (\d+) done before, (\d+) failed", err)
    assert m, err
    return tuple(int(g) for g in m.groups())


def markers(out: Path):
    done = out / ".whisper-eas" / "done"
    return {p.relative_to(done).as_posix()[:-5]: p.read_bytes() for p in done.rglob("*.json")}


def transcript(path: Path):
    """What a transcript is: the segments' text, times and tokens (not the float statistics,
    which a different thread count may change in the last digits)."""
    data = json.loads(path.read_text())
    return [(s["text"], s["start"], s["end"], s["tokens"]) for s in data["segments"]]


def test_on_ray_the_transcripts_are_transcribes_and_bad_files_are_listed_with_exit_1(cli, corpus, local_ray, tmp_path):
    rows = [json.loads(line) for line in (corpus / "dev.jsonl").read_text().splitlines()]
    good = sorted(rows, key=lambda r: r["duration"])[::60][:4]  # four short ones, of several sources
    (tmp_path / "junk.wav").write_bytes(b"\x00not audio" * 400)
    entries = [{"id": r["id"], "audio": str(corpus / r["audio"])} for r in good]
    entries += [{"id": "junk", "audio": str(tmp_path / "junk.wav")}, {"id": "gone", "audio": str(tmp_path / "gone.wav")}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))

    code, _, err = cli("transcribe", *(e["audio"] for e in entries[:4]), "-o", tmp_path / "transcribe", "-f", "json")
    assert code == 0, err
    code, _, err = cli("batch", manifest, "-o", tmp_path / "out", "--ray", "-f", "json")
    assert code == 1, err
    assert summary(err) == (4, 0, 2)
    assert "2 of 6 files failed (4 transcribed):" in err
    assert str(tmp_path / "junk.wav") in err and str(tmp_path / "gone.wav") in err
    for e in entries[:4]:
        assert transcript(tmp_path / "out" / f"{e['id']}.json") == transcript(tmp_path / "transcribe" / f"{Path(e['audio']).stem}.json")
    table = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in table] == [e["id"] for e in entries]
    assert [bool(r["error"]) for r in table] == [False] * 4 + [True] * 2
    assert all("@" in r["worker"] for r in table[:4])  # host:pid@node of the actor


def test_on_ray_an_interrupted_run_resumes_and_transcribes_each_file_once(cli, pieces, local_ray, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real, seen = raydata.from_columns, []

    def interrupt_at_the_second_row(row):
        seen.append(row["id"])
        if len(seen) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the actors are busy
        return real(row)

    monkeypatch.setattr(raydata, "from_columns", interrupt_at_the_second_row)
    code, _, err = cli("batch", pieces, "-o", out, "--ray", "-f", "txt", "--files-per-call", "1")
    assert code == 130 and "interrupted" in err
    deadline = time.monotonic() + 60  # the actors are stopped, their CPUs free again
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2
    first = markers(out)
    assert 1 <= len(first) < 8  # half-way: some files done, some not

    monkeypatch.setattr(raydata, "from_columns", real)
    code, _, err = cli("batch", pieces, "-o", out, "--ray", "-f", "txt")
    assert code == 0, err
    transcribed, before, failed = summary(err)
    assert (before, failed) == (len(first), 0) and transcribed == 8 - len(first)  # each file once in all
    second = markers(out)
    assert {k: second[k] for k in first} == first  # the files done before were left alone
    assert sorted(second) == [f"piece{k}" for k in range(8)]
    assert sorted(p.stem for p in out.glob("*.txt")) == sorted(second)


def test_transcribe_dataset_maps_a_dataset_of_bytes_to_transcripts(pieces, local_ray):
    from whisper_eas import TranscribeOptions
    from whisper_eas.apps.batch import COLUMNS, transcribe_dataset

    files = ray.data.read_binary_files([str(pieces / f"piece{k}.flac") for k in (0, 1)], include_paths=True)
    rows = transcribe_dataset(files, model="tiny.en", options=TranscribeOptions(without_timestamps=True),
                              concurrency=1).take_all()
    assert sorted(rows[0]) == sorted(COLUMNS)
    rows = {r["id"]: r for r in rows}
    assert sorted(rows) == ["piece0", "piece1"]
    assert rows["piece0"]["path"].endswith("piece0.flac") and rows["piece0"]["error"] is None
    assert rows["piece0"]["text"].lower().startswith(" and so my")
    assert json.loads(rows["piece1"]["segments"])[0]["text"] == rows["piece1"]["text"]
