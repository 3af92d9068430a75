"""`whisper-eas bench`'s table: WER, per-file and per-token times, ratios against the baseline."""

from __future__ import annotations

import pytest
import torch

from whisper_eas.errors import OptionsError
from whisper_eas.evaluation.bench import (WORKERS, EngineRun, engine_kind, openai_whisper_options, render_table,
                                         split_variants)
from whisper_eas.apps.cli import main


def _rows(table: str):
    return {line.split(" | ")[0].strip("| "): [c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines()[2:]}


def test_table_wer_times_and_ratios():
    runs = [EngineRun("ours:int8:auto", seconds=2.0, tokens=100, peak_rss_mb=700.4, texts=["a b c", "d e"],
                      decode_seconds=0.5, encode_seconds=0.2, windows=2, note="auto: -1:0 pad=32",
                      load_seconds=0.75, audio_seconds=40.0),
            EngineRun("faster-whisper:int8", seconds=6.0, tokens=120, peak_rss_mb=450, texts=["a b x", "d e"]),
            EngineRun("openai-whisper", seconds=0, tokens=0, peak_rss_mb=0, texts=[], note="not installed")]
    rows = _rows(render_table(runs, ["a b c", "d e"], 2, "faster-whisper:int8"))
    ours, peer, missing = rows["ours:int8:auto"], rows["faster-whisper:int8"], rows["openai-whisper"]
    assert ours[1:11] == ["0.00%", "2.00", "0.0500", "1000", "20.00", "5.00", "100", "0.75", "700", "3.00x"]
    assert ours[11] == "auto: -1:0 pad=32"
    assert peer[1] == "20.00%" and peer[3] == "-" and peer[6:9] == ["-", "-", "-"]  # 1 of 5 words wrong
    assert peer[10] == "1.00x"
    assert missing[1:11] == ["-"] * 10 and missing[11] == "not installed"


def test_engine_variants_are_read_off_the_spec():
    assert split_variants("faster-whisper:int8+vad+batched8") == ("faster-whisper:int8", {"vad": None, "batched": 8})
    assert split_variants("ours:float32:-1:0 pad=16+sequential") == ("ours:float32:-1:0 pad=16", {"sequential": None})
    assert split_variants("ours") == ("ours", {})


def test_the_driver_and_the_worker_read_the_same_engine_kind_off_a_spec_with_a_variant_and_no_type():
    assert [engine_kind(s) for s in ("faster-whisper+vad", "faster-whisper:int8+vad", "ours+files", "transformers")] \
        == ["faster-whisper", "faster-whisper", "ours", "transformers"]


def test_peer_workers_run_the_mode_asked_for_or_refuse_it_in_one_line():
    user, eval_ = openai_whisper_options("user", "cpu"), openai_whisper_options("eval", "cpu")
    assert eval_["without_timestamps"] and eval_["temperature"] == 0.0 and not eval_["condition_on_previous_text"]
    # user mode: its own defaults (timestamps, fallback temperatures, the previous text as prompt)
    assert not {"without_timestamps", "temperature", "condition_on_previous_text"} & set(user)
    assert user["beam_size"] is None  # greedy in both, as every engine in a bench table
    with pytest.raises(OptionsError, match="eval mode only"):  # before any import or load
        WORKERS["transformers"]("transformers", "tiny.en", ["x.wav"], 1, "cpu", "user")


def test_a_bare_audio_file_has_no_wer():
    runs = [EngineRun("ours:float32", seconds=1.0, tokens=10, peak_rss_mb=500, texts=["hello there"])]
    assert _rows(render_table(runs, [""], 1, "ours:float32"))["ours:float32"][1] == "-"


def test_cuda_without_a_gpu_is_one_line(capsys, jfk):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["bench", str(jfk), "--device", "cuda"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["whisper-eas: error: --device cuda: no CUDA device is available"]


def test_a_failing_engine_is_listed_and_the_exit_is_nonzero(capsys, jfk):
    assert main(["bench", str(jfk), "--engines", "ours:float99"]) == 1
    captured = capsys.readouterr()
    assert "| ours:float99 | - |" in captured.out  # the table is still written
    failures = captured.err.strip().splitlines()[-2:]
    assert failures[0] == "whisper-eas: 1 of 1 engines failed:"
    # the worker reports a user error as its one line, as the command line would (no class name)
    assert failures[1].startswith("  ours:float99: unknown compute type 'float99'")


def test_all_files_in_one_call_transcribe_as_one_file_at_a_time_does(jfk):
    from whisper_eas.evaluation.bench import _ours

    files = [str(jfk), str(jfk)]
    apart = _ours("ours:default:off", "tiny.en", files, 2, "cpu", "user")
    together = _ours("ours:default:off+files", "tiny.en", files, 2, "cpu", "user")
    assert together["texts"] == apart["texts"] and together["tokens"] == apart["tokens"]
    assert together["windows"] == apart["windows"] == 2
