"""The `whisper-eas transcribe` command: output on stdout and in files, batches with bad files,
raw PCM, word timestamps, and a battery of bad inputs and flags that must each end in one line on
stderr and a non-zero exit - never a traceback.

Most runs call `whisper_eas.apps.cli.main` in-process with the session's tiny.en model; a few run the
real console script to check what a user's terminal sees."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


JFK_SENTENCE = ("And so my fellow Americans, ask not what your country can do for you, "
                "ask what you can do for your country.")


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def assert_one_error_line(code, err, expect_code=None):
    assert code != 0
    if expect_code is not None:
        assert code == expect_code
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("whisper-eas: "), err
    return lines[0]


# -- bad input files ------------------------------------------------------------------------

def _write_flac_without_samples(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as c:
        stream = c.add_stream("flac", rate=16000, layout="mono")
        c.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, jfk):
    d = tmp_path_factory.mktemp("bad")
    (d / "folder.wav").mkdir()
    (d / "junk.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (d / "notes.wav").write_text("minutes of the meeting, not audio\n" * 30)
    (d / "cut.flac").write_bytes(Path(jfk).read_bytes()[:100])
    (d / "empty.mp3").write_bytes(b"")
    sf.write(d / "nothing.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")
    _write_flac_without_samples(d / "nothing.flac")
    sf.write(d / "blip.wav", np.zeros(100, np.float32), 16000, subtype="PCM_16")  # under one 10-ms frame
    return d


BAD_FILES = {
    "missing": ("missing.wav", "no such file"),
    "directory": ("folder.wav", "directory"),
    "random-bytes": ("junk.wav", "not a readable audio file"),
    "text-renamed": ("notes.wav", "not a readable audio file"),
    "truncated": ("cut.flac", ""),
    "zero-length": ("empty.mp3", "empty"),
    "wav-without-samples": ("nothing.wav", "no audio samples"),
    "flac-without-samples": ("nothing.flac", "no audio samples"),
    "too-short": ("blip.wav", "too short"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_one_line_and_nonzero(cli, bad_files, kind):
    name, reason = BAD_FILES[kind]
    path = bad_files / name
    code, out, err = cli("transcribe", path)
    line = assert_one_error_line(code, err)
    assert str(path) in line
    assert reason in line
    assert out == ""


def test_cut_off_file_transcribes_what_is_there(cli, jfk, tmp_path):
    """A download that stopped half way: the audio up to the cut is transcribed, exit 0."""
    data = Path(jfk).read_bytes()
    path = tmp_path / "jfk_half.flac"
    path.write_bytes(data[: len(data) // 2])
    code, out, err = cli("transcribe", path)
    assert code == 0, err
    assert norm(out).startswith("and so my fellow americans")
    assert not norm(out).endswith("for your country")


def test_a_cut_off_file_warns_on_stderr_and_in_the_json(cli, jfk, tmp_path):
    data = Path(jfk).read_bytes()
    path = tmp_path / "jfk_half.flac"
    path.write_bytes(data[: len(data) // 2])
    warning = f"{path}: the audio stream is truncated or corrupt after 5.3 s; transcribed what could be decoded"
    code, out, err = cli("transcribe", path, "-f", "json", "--quiet")
    assert code == 0 and err.splitlines() == [f"whisper-eas: warning: {warning}"]
    assert json.loads(out)["warnings"] == [warning]
    code, out, err = cli("transcribe", jfk, "-f", "json")  # a whole file: no warning
    assert code == 0 and err == "" and json.loads(out)["warnings"] == []


def _stdin(monkeypatch, data: bytes) -> None:
    import io

    buffer = io.BytesIO(data)
    buffer.name = "<stdin>"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(buffer))


def test_dash_reads_the_audio_from_stdin(cli, jfk, tmp_path, monkeypatch):
    _stdin(monkeypatch, Path(jfk).read_bytes())
    code, out, err = cli("transcribe", "-")
    assert code == 0 and err == "" and norm(out) == norm(JFK_SENTENCE)
    _stdin(monkeypatch, Path(jfk).read_bytes())
    code, out, err = cli("transcribe", "-", "-o", tmp_path / "out", "-f", "txt")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["stdin.txt"]
    assert norm((tmp_path / "out" / "stdin.txt").read_text()) == norm(JFK_SENTENCE)


def test_stdin_that_is_not_audio_is_one_line_naming_stdin(cli, monkeypatch):
    _stdin(monkeypatch, b"minutes of the meeting, not audio\n" * 30)
    code, out, err = cli("transcribe", "-")
    line = assert_one_error_line(code, err)
    assert line.startswith("whisper-eas: error: <stdin>: not a readable audio file")


def test_stdin_can_be_read_only_once(cli, jfk):
    code, out, err = cli("transcribe", "-", jfk, "-")
    assert "stdin" in assert_one_error_line(code, err, expect_code=2)


def test_silence_succeeds_with_no_text(cli, tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(2 * 16000, np.float32), 16000, subtype="PCM_16")
    code, out, err = cli("transcribe", path)
    assert code == 0, err
    assert err == ""
    assert len(norm(out).split()) <= 2  # nothing, or at most a stray word


# -- bad flags ------------------------------------------------------------------------------

BAD_FLAGS = [
    (["--beam-size", "0"], "--beam-size"),
    (["--best-of", "0"], "--best-of"),
    (["--batch-size", "0"], "--batch-size"),
    (["--eas", "9:0.5"], "out of range"),  # tiny.en has 4 encoder blocks
    (["--eas", "4:0.5"], "out of range"),
    (["--eas", "1:1.5"], "sparsity"),
    (["--eas", "1:-0.1"], "sparsity"),
    (["--eas", "1:x"], "1:x"),
    (["--eas", "-1:0.5"], "needs a block's attention"),  # the attention score before block 0
    (["--eas-score", "nosuch", "--eas", "1:0.5"], "nosuch"),
    (["--eas-score", "attention"], "--eas"),
    (["--eas", "1:0.5", "--profile", "p.json"], "either"),
    (["--profile", "missing.json"], "missing.json"),
    (["--language", "klingon"], "klingon"),
    (["--task", "translate"], "multilingual"),
    (["--language", "fr"], "English-only"),
    (["--output-format", "all"], "--output-dir"),
    (["--threads", "-1"], "--threads"),
    (["--compute-type", "nosuch"], "compute type"),
    (["--suppress-tokens", "1,x"], "--suppress-tokens"),
    (["--temperature", "-1"], "temperature"),
    (["--temperature-increment-on-fallback", "0"], "temperature"),
    (["--raw", "--sample-rate", "0"], "sample rate"),
    (["--raw", "--channels", "9"], "channels"),
]


@pytest.mark.parametrize("flags,needle", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_is_one_line_exit_2(cli, jfk, flags, needle):
    code, out, err = cli("transcribe", jfk, *flags)
    line = assert_one_error_line(code, err, expect_code=2)
    assert line.startswith("whisper-eas: error: ")
    assert needle in line
    assert out == ""


def test_seed_makes_sampling_repeatable_and_is_recorded(cli, jfk_start):
    sampled = ["--temperature", "1", "--temperature-increment-on-fallback", "none", "--best-of", "1", "-f", "json"]
    runs = []
    for seed in (None, None, 7, 7):
        code, out, err = cli("transcribe", jfk_start, *sampled, *(["--seed", seed] if seed is not None else []))
        assert code == 0, err
        runs.append(json.loads(out))
    assert [r["settings"]["seed"] for r in runs] == [0, 0, 7, 7]
    assert runs[0]["segments"] == runs[1]["segments"] and runs[2]["segments"] == runs[3]["segments"]


# -- the EAS flags: combined first, validated once ---------------------------------------------

def eas_setting(cli, jfk, *flags) -> str:
    code, out, err = cli("transcribe", jfk, *flags, "-f", "json")
    assert code == 0, err
    assert "Traceback" not in err
    return json.loads(out)["settings"]["eas"]


@pytest.mark.parametrize("flags, spec", [
    (["--eas", "-1:0", "--eas-pad", "16"], "-1:0 pad=16"),  # the README's own example
    (["--eas", "-1:0,2:0.5", "--eas-pad", "8"], "-1:0,2:0.5 pad=8"),
    (["--eas", "-1:0 pad=32"], "-1:0 pad=32"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_an_eas_spec_that_starts_with_a_minus_is_the_value_of_eas(cli, jfk, flags, spec):
    assert eas_setting(cli, jfk, *flags) == spec


def test_a_value_that_starts_with_a_minus_is_joined_to_its_flag():
    from whisper_eas.apps.cli import join_dash_values

    argv = ["transcribe", "-", "--eas", "-1:0", "--suppress-tokens", "-1,50362", "--eas", "-q", "--temperature", "-1"]
    assert join_dash_values(argv) == ["transcribe", "-", "--eas=-1:0", "--suppress-tokens=-1,50362", "--eas", "-q",
                                      "--temperature", "-1"]


@pytest.mark.parametrize("flags", [["--eas=-1:0.5", "--eas-score", "stride"],
                                   ["--eas", "-1:0.5", "--eas-score", "stride"],
                                   ["--eas-score", "stride", "--eas", "-1:0.5"],
                                   ["--eas", "-1:0.5 score=stride"]], ids=" ".join)
def test_eas_score_is_applied_before_the_spec_is_validated(cli, jfk, flags):
    """A score that needs no attention may prune before block 0; the separate flags mean what
    the one-string form means."""
    assert eas_setting(cli, jfk, *flags) == "-1:0.5 score=stride"


def test_every_eas_flag_combines_with_the_spec(cli, jfk):
    flags = ["--eas", "1:0", "--eas-score", "keynorm", "--eas-adaptive", "0.9", "--eas-reduce", "drop"]
    assert eas_setting(cli, jfk, *flags) == "1:0 score=keynorm drop adaptive=0.9"


def test_cuda_without_a_gpu(cli, jfk):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    code, out, err = cli("transcribe", jfk, "--device", "cuda")
    assert "no CUDA device" in assert_one_error_line(code, err, expect_code=2)


def test_output_dir_that_is_a_file(cli, jfk, tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    code, out, err = cli("transcribe", jfk, "-o", target)
    assert "not a directory" in assert_one_error_line(code, err, expect_code=2)


def test_unknown_model_fails_fast(cli, jfk):
    t0 = time.monotonic()
    code, out, err = cli("transcribe", jfk, "--model", "nosuchmodel")
    line = assert_one_error_line(code, err, expect_code=2)
    assert "nosuchmodel" in line
    assert time.monotonic() - t0 < 10


def test_missing_model_path_fails(cli, jfk, tmp_path):
    code, out, err = cli("transcribe", jfk, "--model", tmp_path / "no-such-model-dir")
    line = assert_one_error_line(code, err)
    assert "no-such-model-dir" in line


# argparse rejects these itself: a usage message (which may wrap over several lines), then one
# "whisper-eas transcribe: error: ..." line, exit 2
ARGPARSE_ERRORS = [
    ["--task", "summarize"],
    ["--output-format", "docx"],
    ["--eas-reduce", "keep"],
    ["--beam-size", "two"],
    ["--word-timestamps", "maybe"],
    ["--no-such-flag"],
]


@pytest.mark.parametrize("flags", ARGPARSE_ERRORS, ids=[" ".join(f) for f in ARGPARSE_ERRORS])
def test_argparse_usage_errors(cli, jfk, flags):
    code, out, err = cli("transcribe", jfk, *flags)
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("usage: whisper-eas")  # an unknown flag is the top-level parser's error
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0]
    assert re.match(r"whisper-eas( transcribe)?: error: ", errors[0])


def test_no_files_is_a_usage_error(cli):
    code, out, err = cli("transcribe")
    assert code == 2 and "Traceback" not in err and "error:" in err.splitlines()[-1]


def test_no_command_prints_help(cli):
    code, out, err = cli()
    assert code == 2 and "usage: whisper-eas" in err


# -- transcription --------------------------------------------------------------------------

def test_transcribe_jfk_to_stdout(cli, jfk):
    code, out, err = cli("transcribe", jfk)
    assert code == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    assert norm(out) == norm(JFK_SENTENCE)


def test_output_dir_all_formats(cli, jfk, tmp_path):
    out_dir = tmp_path / "out" / "nested"  # created on demand
    code, out, err = cli("transcribe", jfk, "--output-format", "all", "--output-dir", out_dir,
                         "--language", "English")
    assert code == 0, err
    assert out == "" and err == ""
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["jfk.json", "jfk.srt", "jfk.tsv", "jfk.txt", "jfk.vtt"]
    assert norm((out_dir / "jfk.txt").read_text()) == norm(JFK_SENTENCE)

    data = json.loads((out_dir / "jfk.json").read_text(encoding="utf-8"))
    assert norm(data["text"]) == norm(JFK_SENTENCE)
    assert data["language"] == "en"
    assert data["segments"] and all({"start", "end", "text", "tokens"} <= set(s) for s in data["segments"])
    assert 0 <= data["segments"][0]["start"] < data["segments"][-1]["end"] <= data["duration"] + 0.5
    assert data["settings"]["model"] == "tiny.en"
    assert data["settings"]["language"] == "English" and data["settings"]["beam_size"] == 1

    srt = (out_dir / "jfk.srt").read_text()
    assert srt.startswith("1\n00:00:0")
    assert re.search(r"^\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}$", srt, re.M)
    vtt = (out_dir / "jfk.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    assert re.search(r"^\d\d:\d\d\.\d{3} --> \d\d:\d\d\.\d{3}$", vtt, re.M)
    tsv = (out_dir / "jfk.tsv").read_text().splitlines()
    assert tsv[0] == "start\tend\ttext"
    assert all(re.fullmatch(r"\d+\t\d+\t.+", line) for line in tsv[1:])


def test_word_timestamps_json(cli, jfk):
    code, out, err = cli("transcribe", jfk, "--word-timestamps", "--output-format", "json")
    assert code == 0, err
    data = json.loads(out)
    words = [w for s in data["segments"] for w in s["words"]]
    assert norm(" ".join(w["word"] for w in words)) == norm(JFK_SENTENCE)
    for w in words:
        assert {"start", "end", "word", "probability"} <= set(w)
        assert 0 <= w["start"] <= w["end"] <= 11.1
        assert 0 <= w["probability"] <= 1
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert words[-1]["end"] > 8  # "country" is said near the end of the 11-s clip


def _jfk_as_raw(jfk, path: Path, rate: int, channels: int) -> Path:
    import av

    layout = {1: "mono", 2: "stereo"}[channels]
    resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
    chunks = []
    with av.open(str(jfk)) as c:
        for frame in c.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    path.write_bytes(np.concatenate(chunks).astype("<i2").tobytes())
    return path


def test_raw_pcm_input(cli, jfk, tmp_path):
    raw = _jfk_as_raw(jfk, tmp_path / "jfk.raw", 8000, 2)
    assert abs(raw.stat().st_size - 11 * 8000 * 2 * 2) < 8000 * 4  # about 11 s of 8 kHz stereo
    code, out, err = cli("transcribe", raw, "--raw", "--sample-rate", 8000, "--channels", 2)
    assert code == 0, err
    words = norm(out).split()
    expected = norm(JFK_SENTENCE).split()
    assert len(set(words) & set(expected)) >= len(set(expected)) - 1, out  # 8 kHz: allow one slip


def _assert_failures_listed(err, *names):
    assert "Traceback" not in err
    lines = err.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("whisper-eas: ") and "failed" in line]
    assert len(header) == 1, err
    assert f"{len(names)} of 4 files failed (2 transcribed)" in lines[header[0]]
    listed = lines[header[0] + 1 :]  # the failures come last
    assert len(listed) == len(names), err
    for name in names:
        assert sum(name in line for line in listed) == 1, (name, err)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_batch_with_good_and_bad_files(cli, jfk, bad_files, tmp_path, batch_size):
    copy = tmp_path / "jfk_copy.flac"
    shutil.copy(jfk, copy)
    out_dir = tmp_path / "out"
    code, out, err = cli("transcribe", jfk, tmp_path / "missing.wav", bad_files / "junk.wav", copy,
                         "-o", out_dir, "--batch-size", batch_size)
    assert code == 1
    _assert_failures_listed(err, "missing.wav", "junk.wav")
    for stem in ("jfk", "jfk_copy"):
        for ext in ("txt", "srt", "vtt", "tsv", "json"):
            assert (out_dir / f"{stem}.{ext}").is_file(), (stem, ext)
        assert norm((out_dir / f"{stem}.txt").read_text()) == norm(JFK_SENTENCE)
    assert not list(out_dir.glob("missing*")) and not list(out_dir.glob("junk*"))


# -- output files: distinct names, checked folder, atomic writes -----------------------------

@pytest.fixture(scope="module")
def jfk_start(jfk, tmp_path_factory) -> Path:
    """The first 3 s of JFK ("... fellow Americans"): another transcript than the whole."""
    from whisper_eas.io.audio import SAMPLE_RATE, load_audio

    path = tmp_path_factory.mktemp("start") / "start.flac"
    sf.write(path, load_audio(jfk)[: 3 * SAMPLE_RATE], SAMPLE_RATE)
    return path


def test_the_same_file_name_in_two_folders_gets_two_sets_of_outputs(cli, jfk, jfk_start, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(jfk, tmp_path / "a" / "talk.flac")
    shutil.copy(jfk_start, tmp_path / "b" / "talk.flac")
    out_dir = tmp_path / "out"
    code, out, err = cli("transcribe", tmp_path / "a" / "talk.flac", tmp_path / "b" / "talk.flac", "-o", out_dir,
                         "-f", "txt")
    assert code == 0 and err == "", err
    assert sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.txt")) == ["a/talk.txt", "b/talk.txt"]
    assert norm((out_dir / "a" / "talk.txt").read_text()) == norm(JFK_SENTENCE)
    start = norm((out_dir / "b" / "talk.txt").read_text())
    assert "fellow americans" in start and "country" not in start


def test_one_file_given_twice_with_an_output_dir_is_refused_before_any_work(cli, jfk, tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(tiny, "transcribe_batch", lambda *a, **k: pytest.fail("transcribed"))
    code, out, err = cli("transcribe", jfk, Path(jfk).parent / ".." / Path(jfk).parent.name / "jfk.flac",
                         "-o", tmp_path / "out")
    assert "given twice" in assert_one_error_line(code, err, expect_code=2)


def _read_only_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").write_text("")
    except OSError:
        return folder
    pytest.skip("permissions do not stop writes here (running as root)")


@pytest.mark.parametrize("where", ["read-only", "under a file"])
def test_an_output_dir_that_cannot_be_written_is_an_error_before_the_model_loads(cli, jfk, tmp_path, monkeypatch,
                                                                                 where):
    from whisper_eas.apps import flags

    if where == "read-only":
        out_dir = _read_only_dir(tmp_path)
    else:
        (tmp_path / "notes.txt").write_text("a file, not a folder")
        out_dir = tmp_path / "notes.txt" / "out"
    monkeypatch.setattr(flags, "load_whisper", lambda args: pytest.fail("the model was loaded"))
    code, out, err = cli("transcribe", jfk, jfk, "-o", out_dir)
    line = assert_one_error_line(code, err, expect_code=2)
    assert line.startswith(f"whisper-eas: error: --output-dir {out_dir}: cannot write there (")


def test_a_full_disk_leaves_no_partial_file_and_the_rest_of_the_batch_is_written(cli, jfk, jfk_start, tmp_path,
                                                                                monkeypatch):
    """The first file's JSON hits ENOSPC half way: no empty or partial jfk.json (an older one
    stays whole), no temporary file left, the failure listed, and the second file still written."""
    import errno

    from whisper_eas.io.outputs import WRITERS

    real_json = WRITERS["json"]

    def disk_full_for_jfk(segments, fh, **kwargs):
        if "jfk" in Path(fh.name).name:
            fh.write('{"text": "')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_json(segments, fh, **kwargs)

    monkeypatch.setitem(WRITERS, "json", disk_full_for_jfk)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "jfk.json").write_text('{"text": "yesterday"}\n')
    code, out, err = cli("transcribe", jfk, jfk_start, "-o", out_dir)
    assert code == 1 and "Traceback" not in err
    lines = err.splitlines()
    assert lines == ["whisper-eas: 1 of 2 files failed (1 transcribed):",
                     f"  {jfk}: transcribed, but {out_dir / 'jfk.json'} cannot be written (No space left on device)"]
    assert (out_dir / "jfk.json").read_text() == '{"text": "yesterday"}\n'
    assert sorted(p.name for p in out_dir.iterdir()) == ["jfk.json", "jfk.srt", "jfk.tsv", "jfk.txt", "jfk.vtt",
                                                         "start.json", "start.srt", "start.tsv", "start.txt",
                                                         "start.vtt"]
    start = norm(json.loads((out_dir / "start.json").read_text())["text"])
    assert "fellow americans" in start and "country" not in start


# -- the README's commands ------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(after: str = "") -> list:
    """The `whisper-eas ...` commands in the README's bash blocks (those after the heading
    `after`, or all), each split as a shell would, comments dropped, without `whisper-eas`."""
    text = README.read_text(encoding="utf-8")
    if after:
        text = text.split(after, 1)[1]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():  # a line continued with a backslash
            for part in re.split(r"&&|\|", line):
                words = shlex.split(part, comments=True)
                if words[:1] == ["whisper-eas"]:
                    commands.append(words[1:])
        if after:
            break  # the first block after the heading
    return commands


def test_every_whisper_eas_command_in_the_readme_parses():
    from whisper_eas.apps.cli import build_parser, join_dash_values

    commands = readme_commands()
    assert len(commands) >= 20
    for argv in commands:
        args = build_parser().parse_args(join_dash_values(argv))  # a usage error exits
        assert args.handler, argv


@pytest.mark.slow
def test_every_command_in_the_readme_usage_block_runs(cli, jfk, tmp_path, monkeypatch):
    """The README's 'Using it' block, each command run as shown on stand-in files: JFK as
    talk.mp3, a.wav, b.flac, a/talk.wav, b/talk.wav, stdin and the *.wav files, as 8-kHz
    stereo raw.pcm."""
    from whisper_eas.io.audio import load_audio

    monkeypatch.chdir(tmp_path)
    audio = load_audio(jfk)
    for name in ("talk.wav", "a.wav", "a/talk.wav", "b/talk.wav"):
        Path(name).parent.mkdir(exist_ok=True)
        sf.write(name, audio, 16000, subtype="PCM_16")
    shutil.copy(jfk, "b.flac")
    _jfk_as_raw(jfk, tmp_path / "raw.pcm", 8000, 2)
    stand_in = {"talk.mp3": ["talk.wav"], "*.wav": sorted(str(p) for p in Path().glob("*.wav"))}
    commands = readme_commands("## Using it")
    assert len(commands) >= 10 and ["transcribe", "-"] in commands
    for argv in commands:
        argv = [w for word in argv for w in stand_in.get(word, [word])]
        _stdin(monkeypatch, Path("talk.wav").read_bytes())
        code, out, err = cli(*argv)
        assert code == 0 and "error" not in err, (argv, err)
        assert out or Path("out").is_dir(), argv
    assert sorted(p.name for p in Path("out").glob("*.json")) == ["a.json", "b.json", "talk.json"]
    assert sorted(str(p) for p in Path("out").glob("*/*.json")) == ["out/a/talk.json", "out/b/talk.json"]


# -- the real console script ----------------------------------------------------------------

def _console(*args, timeout=180, input=None):
    """The installed `whisper-eas ARGS...` -> CompletedProcess; `input` (bytes) is piped to its
    stdin, else stdin is empty and the output is text."""
    exe = shutil.which("whisper-eas")
    cmd = [exe] if exe else [sys.executable, "-m", "whisper_eas"]
    env = {k: v for k, v in os.environ.items() if k != "WHISPER_EAS_DEBUG"}
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=input is None, timeout=timeout,
                          env=env, input=input, stdin=subprocess.DEVNULL if input is None else None)


def test_console_batch_stdout_no_progress_bar_and_failures_listed(jfk, bad_files, tmp_path):
    """Pipes, not a terminal: the transcript on stdout under a header per file, no tqdm output on
    stderr, and the failures listed at the end with exit status 1."""
    copy = tmp_path / "jfk_copy.flac"
    shutil.copy(jfk, copy)
    p = _console("transcribe", jfk, tmp_path / "missing.wav", bad_files / "junk.wav", copy)
    assert p.returncode == 1, p.stderr
    _assert_failures_listed(p.stderr, "missing.wav", "junk.wav")
    assert "%|" not in p.stderr and "s audio" not in p.stderr and "\r" not in p.stderr
    assert len(p.stderr.splitlines()) == 3
    chunks = re.split(r"^==> (.+) <==$", p.stdout, flags=re.M)
    assert chunks[0] == ""
    got = dict(zip(chunks[1::2], chunks[2::2]))
    assert set(got) == {str(jfk), str(copy)}
    assert all(norm(text) == norm(JFK_SENTENCE) for text in got.values())


@pytest.mark.parametrize("raw", [False, True], ids=["flac", "raw"])
def test_console_reads_audio_piped_to_stdin(jfk, tmp_path, raw):
    """A real pipe (not seekable): `cat talk.flac | whisper-eas transcribe -`, and raw PCM."""
    data = _jfk_as_raw(jfk, tmp_path / "jfk.raw", 8000, 2).read_bytes() if raw else Path(jfk).read_bytes()
    flags = ["--raw", "--sample-rate", "8000", "--channels", "2"] if raw else []
    p = _console("transcribe", "-", *flags, input=data, timeout=300)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    words = set(norm(p.stdout.decode()).split())
    assert len(words & set(norm(JFK_SENTENCE).split())) >= len(set(norm(JFK_SENTENCE).split())) - 1


def test_console_missing_file(tmp_path):
    p = _console("transcribe", tmp_path / "missing.wav")
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr.splitlines() == [f"whisper-eas: error: {tmp_path / 'missing.wav'}: no such file"]


def test_console_unknown_model_fails_fast(jfk):
    t0 = time.monotonic()
    p = _console("transcribe", jfk, "--model", "nosuchmodel", timeout=60)
    assert time.monotonic() - t0 < 60
    assert p.returncode == 2 and p.stdout == ""
    assert "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("whisper-eas: error: unknown model 'nosuchmodel'")


def test_batch_to_stdout_keeps_the_input_order(cli, jfk, tmp_path):
    """Batches are formed shortest first, so the 11-s file finishes last; stdout still lists
    the files in the order given."""
    import soundfile

    from whisper_eas.io.audio import SAMPLE_RATE, load_audio

    short = tmp_path / "short.flac"
    soundfile.write(short, load_audio(jfk)[: 3 * SAMPLE_RATE], SAMPLE_RATE)
    code, out, err = cli("transcribe", jfk, short, short, "--batch-size", 2)
    assert code == 0, err
    headers = [line for line in out.splitlines() if line.startswith("==> ")]
    assert headers == [f"==> {jfk} <==", f"==> {short} <==", f"==> {short} <=="]


# -- our bugs are not the user's mistakes -----------------------------------------------------

def _break_transcription(monkeypatch, tiny):
    def broken(*args, **kwargs):
        raise ValueError("Expected input batch_size (2) to match target batch_size (3).")  # as torch words it

    monkeypatch.setattr(tiny, "transcribe_batch", broken)


def test_a_valueerror_from_inside_is_a_bug_exit_1_not_a_usage_error(cli, jfk, tiny, monkeypatch):
    _break_transcription(monkeypatch, tiny)
    code, out, err = cli("transcribe", jfk)
    line = assert_one_error_line(code, err, expect_code=1)
    assert line == "whisper-eas: error: ValueError: Expected input batch_size (2) to match target batch_size (3)."


def test_verbose_shows_the_traceback_of_a_bug(cli, jfk, tiny, monkeypatch):
    _break_transcription(monkeypatch, tiny)
    code, out, err = cli("transcribe", jfk, "--verbose")
    assert code == 1 and "Traceback (most recent call last):" in err and 'raise ValueError("Expected' in err
    assert err.splitlines()[-1] == ("whisper-eas: error: ValueError: Expected input batch_size (2) to match "
                                    "target batch_size (3).")


def test_python_dash_m_whisper_eas_is_the_command(tmp_path):
    p = subprocess.run([sys.executable, "-m", "whisper_eas", "--version"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("whisper-eas ")
