"""Shared fixtures: the bundled tiny.en model (loaded once) and the sample clips."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

import whisper_eas.pipeline.whisper
from whisper_eas.apps.cli import main

ROOT = Path(__file__).resolve().parents[1]
JFK = ROOT / "samples" / "jfk.flac"
CORPUS = ROOT / "data" / "corpus"
JFK_TEXT = "And so my fellow Americans ask not what your country can do for you ask what you can do for your country"

torch.set_num_threads(2)
# converted weights are cached for the run only, never in the user's ~/.cache (io/model_cache.py),
# and removed when the run ends (a few hundred MB each)
_CACHE = tempfile.mkdtemp(prefix="whisper-eas-test-cache-")
os.environ["WHISPER_EAS_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny():
    from whisper_eas import WhisperModel

    # float32 and dense unless a test asks otherwise: the references (faster-whisper float32, the
    # stored transcripts) are float32 ones; the default compute type has its own tests
    return WhisperModel("tiny.en", compute_type="float32", eas=None)


@pytest.fixture(scope="session")
def jfk() -> Path:
    return JFK


@pytest.fixture(scope="module")
def jfk_audio(jfk):
    """The sample's samples, 16 kHz mono float32 (a fresh array per test module)."""
    from whisper_eas.io.audio import load_audio

    return load_audio(jfk)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The dev corpus built by benchmarks/corpus.py (CI builds it; locally tests skip without)."""
    if not (CORPUS / "dev-short.jsonl").is_file():
        pytest.skip("dev corpus not built: python benchmarks/corpus.py")
    return CORPUS


@pytest.fixture
def cli(tiny, monkeypatch, capsys, tmp_path):
    """Run `whisper-eas ARGS...` in-process -> (exit code, stdout, stderr); tiny.en is the session's
    model instead of a fresh load (any other model is loaded for real). Installed profiles live in
    a fresh directory (WHISPER_EAS_HOME), so only the shipped ones count unless a test installs one."""
    real = whisper_eas.pipeline.whisper.WhisperModel

    def model(name="tiny.en", device="cpu", compute_type="default", cpu_threads=0, **kwargs):
        if (name, device, compute_type, kwargs) == ("tiny.en", "cpu", "default", {}):
            return tiny
        return real(name, device=device, compute_type=compute_type, cpu_threads=cpu_threads, **kwargs)

    monkeypatch.setattr(whisper_eas.pipeline.whisper, "WhisperModel", model)
    monkeypatch.delenv("WHISPER_EAS_DEBUG", raising=False)
    monkeypatch.setenv("WHISPER_EAS_HOME", str(tmp_path / "whisper-eas-home"))

    def run(*args):
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own usage errors
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
